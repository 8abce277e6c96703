import { mkdir, open, readFile, stat, unlink, utimes } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { claimPath, claimsRoot, isOwnerGone, ownerLine, parseOwnerLine } from './layout.ts';

/**
 * "One source read per chunk across processes": before reading a chunk from
 * the source, a process creates `claims/<hex>` with O_EXCL. The one that
 * succeeds owns the read; the others wait until the claim file is gone (the
 * owner published the entry or gave up), then look in the cache again.
 *
 * A claim whose owner died (its pid on this host is gone) or that the owner stopped
 * refreshing for `staleMs` (a pid reused after a restart, a hung process) is
 * broken by the next waiter. The owner touches its claim every `staleMs / 3`.
 */
export type Claim = OwnedClaim | WaitedClaim;

export interface OwnedClaim extends AsyncDisposable {
  /** This process reads the source, `put`s the chunk, then releases. */
  readonly owner: true;
  /** Removes the claim file (idempotent); waiters then look in the cache. */
  release(): Promise<void>;
}

export interface WaitedClaim extends AsyncDisposable {
  /** Another process held the claim and has let go: look in the cache again (and claim again on a miss). */
  readonly owner: false;
}

export interface ClaimOptions {
  dir: string;
  staleMs: number;
  /** First poll interval while waiting; doubles up to 8× this. */
  pollMs: number;
}

const waited: WaitedClaim = { owner: false, [Symbol.asyncDispose]: async () => undefined };

function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

async function tryCreate(path: string): Promise<boolean> {
  try {
    const handle = await open(path, 'wx', 0o644);
    try {
      await handle.writeFile(ownerLine());
    } finally {
      await handle.close();
    }
    return true;
  } catch (error) {
    if (errnoOf(error) === 'EEXIST') return false;
    throw error;
  }
}

/** Whether the claim at `path` is abandoned; undefined when it no longer exists. */
async function isStale(path: string, staleMs: number): Promise<boolean | undefined> {
  const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]).catch((error: unknown) => {
    if (errnoOf(error) === 'ENOENT') return [undefined, undefined] as const;
    throw error;
  });
  if (text === undefined || info === undefined) return undefined;
  // An empty file is a claim being written this instant, another host's claim cannot be checked: age decides.
  const owner = parseOwnerLine(text);
  const gone = owner !== undefined && isOwnerGone(owner);
  return gone || Date.now() - info.mtimeMs > staleMs;
}

export function createClaims(options: ClaimOptions) {
  const held = new Set<OwnedClaim>();

  function own(path: string): OwnedClaim {
    const refresh = setInterval(
      () => {
        const now = new Date();
        utimes(path, now, now).catch(() => undefined);
      },
      Math.max(1, Math.floor(options.staleMs / 3)),
    );
    refresh.unref();
    let released: Promise<void> | undefined;
    const claim: OwnedClaim = {
      owner: true,
      release() {
        released ??= (async () => {
          clearInterval(refresh);
          held.delete(claim);
          await unlink(path).catch(() => undefined);
        })();
        return released;
      },
      [Symbol.asyncDispose]: () => claim.release(),
    };
    held.add(claim);
    return claim;
  }

  /**
   * Owns the source read of `hex`, or waits for the process that does.
   * `isPublished` is asked while waiting so a waiter returns as soon as the
   * entry exists, even before the owner removed its claim.
   */
  async function claim(
    hex: string,
    signal: AbortSignal,
    isPublished: () => Promise<boolean>,
  ): Promise<Claim> {
    const path = claimPath(options.dir, hex);
    await mkdir(claimsRoot(options.dir), { recursive: true });
    let pause = options.pollMs;
    for (;;) {
      signal.throwIfAborted();
      if (await tryCreate(path)) {
        const owned = own(path);
        // Published between the caller's miss and this claim (the owner before us just let go): nothing to read.
        if (!(await isPublished())) return owned;
        await owned.release();
        return waited;
      }
      if (await isPublished()) return waited;
      const stale = await isStale(path, options.staleMs);
      if (stale === undefined) return waited;
      if (stale) {
        // Two waiters may both break one stale claim; the worst case is a second source read, never a wrong byte.
        await unlink(path).catch(() => undefined);
        continue;
      }
      // Aborted while waiting: reject with the caller's reason, not the timer's AbortError.
      await sleep(pause, undefined, { signal }).catch(() => signal.throwIfAborted());
      pause = Math.min(pause * 2, options.pollMs * 8);
      // The claim may be gone by now: the loop's next create answers that.
      if ((await stat(path).catch(() => undefined)) === undefined) return waited;
    }
  }

  async function releaseAll(): Promise<void> {
    await Promise.all([...held].map((owned) => owned.release()));
  }

  return { claim, releaseAll };
}
