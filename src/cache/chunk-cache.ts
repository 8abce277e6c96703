import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, rename, stat, unlink, utimes } from 'node:fs/promises';
import type { Logger } from '../telemetry/logger.ts';
import type { CacheResult, Metrics } from '../telemetry/metrics.ts';
import { createCoalescer } from '../util/single-flight.ts';
import { ByteLru } from './byte-lru.ts';
import { type Claim, createClaims } from './claims.ts';
import { entryFolder, entryPath, isHexDigest, tempPath } from './layout.ts';
import { scanCache } from './scan.ts';

export type { Claim } from './claims.ts';

/**
 * The verified disk cache (docs/scaling.md): chunks addressed by their SHA-256,
 * shared by the processes of one `serve` and kept across restarts.
 *
 * - A cache is a store, not a trust root: `get` hashes every entry before
 *   returning it; a wrong size or hash deletes the entry, counts `corrupt` and
 *   answers a miss, so the caller reads the source instead (never a failed or
 *   short response).
 * - An entry becomes visible only complete: written to a temp file in its own
 *   folder, fsynced, renamed into place. Temp files of crashed writers are
 *   swept by the scan at start.
 * - LRU by bytes under `maxBytes`. Use order is the entry file's mtime (a hit
 *   touches it), so it is shared across processes and restarts; each process
 *   keeps its view in memory (ByteLru), rebuilt from a directory scan at start
 *   and again after it has written `maxBytes / 16` bytes, and before deleting
 *   a victim it checks the file was not used since (another process's hit).
 *   Other processes' writes since the last scan are unseen, so with P writers
 *   the directory may transiently exceed `maxBytes` by up to P × maxBytes/16.
 * - `claim` makes one process read a chunk from the source while others wait.
 */
export interface ChunkCache {
  /**
   * The verified bytes of `hex` (a lowercase SHA-256), or undefined on a miss
   * (also after a corrupt entry was deleted). `target`, when given, receives
   * the bytes (at least `size` long) and the result is its first `size` bytes.
   * A `CacheTarget` (memory the caller owns outright, e.g. a chunk lease) may
   * be hashed on another thread by transfer: it gets its memory back through
   * `adopt` before `get` settles, hit or miss.
   */
  get(
    hex: string,
    size: number,
    signal: AbortSignal,
    target?: Uint8Array | CacheTarget,
  ): Promise<Uint8Array | undefined>;
  /**
   * Stores bytes whose SHA-256 the caller has verified to be `hex`. Best
   * effort: a full disk or any other failure is logged, never thrown.
   */
  put(hex: string, bytes: Uint8Array): Promise<void>;
  /**
   * Whole-file mode (files without `chunks`): caches the file at `path`,
   * whose SHA-256 the caller has verified to be `hex` (copied in, fsynced,
   * renamed into place; best effort like `put`).
   */
  putFile(hex: string, path: string): Promise<void>;
  /**
   * The path of a cached whole file after hashing all of it (a whole-file
   * entry cannot be checked piecewise, and a mismatch found while sending
   * would fail the response), or undefined on a miss or a corrupt entry
   * (deleted and counted). Stream it through the engine's whole-file
   * verification as from any store: the entry may change after this check.
   */
  getFile(hex: string, size: number, signal: AbortSignal): Promise<string | undefined>;
  /**
   * Whole-file mode without a local copy (cloud sources): a writer that
   * receives the file's bytes in order while they are hashed for the
   * response, into a temp file in the entry's folder. `commit` only after the
   * whole-file digest matched: it fsyncs and renames the file into place (no
   * second copy); `abort` deletes it. Undefined when the file cannot be
   * cached (not a digest, or over `maxBytes`). Best effort like `put`: a
   * failing write is logged, the writer goes quiet and `commit` stores nothing.
   */
  openFile(hex: string, size: number): Promise<CacheFileWriter | undefined>;
  /** One source read per chunk across processes: see claims.ts. */
  claim(hex: string, signal: AbortSignal): Promise<Claim>;
  /** Bytes in the cache as this process last counted them. */
  bytes(): number;
  /** Releases this process's claims; the files stay for the next start. */
  close(): Promise<void>;
}

/** A whole file being written to the cache (`openFile`). */
export interface CacheFileWriter {
  write(bytes: Uint8Array): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** Memory lent to `get` that a hash worker may take by transfer and hand back through `adopt`. */
export interface CacheTarget {
  readonly buffer: Uint8Array;
  adopt(buffer: ArrayBuffer): void;
}

/** A SHA-256 as lowercase hex, and the bytes to use from then on (a new view after a transfer). */
export interface CacheHash {
  hex: string;
  bytes: Uint8Array;
}

export interface ChunkCacheOptions {
  dir: string;
  maxBytes: number;
  metrics?: Pick<Metrics, 'cacheBytes' | 'cacheRequests'>;
  logger?: Logger;
  /**
   * SHA-256 of `bytes` (default: node:crypto on this thread; the engine passes
   * its hash workers). `owned`: no other view of `bytes.buffer` is in use, so
   * it may be transferred to a worker; the answer then holds the new view.
   */
  hash?: (bytes: Uint8Array, options: { owned: boolean }) => Promise<CacheHash> | CacheHash;
  /** A claim or temp file untouched this long is abandoned (default 30 s). */
  staleMs?: number;
  /** First poll interval of a waiting claim (default 10 ms). */
  pollMs?: number;
}

function hashInline(bytes: Uint8Array): CacheHash {
  return { hex: createHash('sha256').update(bytes).digest('hex'), bytes };
}

function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

/** Reads exactly `size` bytes of `path` into `target`; undefined when the file is missing or not `size` long. */
async function readExactly(
  path: string,
  size: number,
  target: Uint8Array,
): Promise<'missing' | 'wrong-size' | 'ok'> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return 'missing';
    throw error;
  }
  try {
    if ((await handle.stat()).size !== size) return 'wrong-size';
    let done = 0;
    while (done < size) {
      const { bytesRead } = await handle.read(target, done, size - done, done);
      if (bytesRead === 0) return 'wrong-size';
      done += bytesRead;
    }
    return 'ok';
  } finally {
    await handle.close();
  }
}

/** SHA-256 of a file, read in 1 MiB pieces. */
async function hashFile(path: string, signal: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(path, { highWaterMark: 1024 * 1024, signal })) {
    hash.update(piece as Buffer);
  }
  return hash.digest('hex');
}

async function fileExists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

async function copyDurably(from: string, to: string): Promise<void> {
  await copyFile(from, to);
  const handle = await open(to, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeDurably(path: string, bytes: Uint8Array): Promise<void> {
  const handle = await open(path, 'wx', 0o644);
  try {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, done);
      done += bytesWritten;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The spool is a temp file in the entry's folder, so a crash leaves only what the next scan sweeps. */
function createFileWriter(spec: {
  hex: string;
  size: number;
  spool: string;
  handle: Awaited<ReturnType<typeof open>>;
  /** The cache's publish step: `write` moves the finished spool to the temp path it is given. */
  publish(hex: string, size: number, write: (temp: string) => Promise<void>): Promise<void>;
  logger: Logger | undefined;
}): CacheFileWriter {
  const { hex, size, spool, handle, publish, logger } = spec;
  let written = 0;
  let failed = false;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await handle.close().catch(() => undefined);
  };
  return {
    async write(bytes) {
      if (failed || closed) return;
      try {
        let done = 0;
        while (done < bytes.length) {
          const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, written + done);
          done += bytesWritten;
        }
        written += bytes.length;
      } catch (error) {
        failed = true;
        logger?.warn({ digest: hex, err: error }, 'cache: whole-file write failed; served without caching');
      }
    },
    async commit() {
      try {
        if (failed || closed || written !== size) return;
        await handle.sync();
        await close();
        await publish(hex, size, (temp) => rename(spool, temp));
      } catch (error) {
        logger?.warn({ digest: hex, err: error }, 'cache: whole-file write failed; served without caching');
      } finally {
        await close();
        await unlink(spool).catch(() => undefined);
      }
    },
    async abort() {
      await close();
      await unlink(spool).catch(() => undefined);
    },
  };
}

/** A writer over a fresh spool file in the entry's folder; undefined (logged) when it cannot be created. */
async function openFileWriter(spec: {
  dir: string;
  hex: string;
  size: number;
  maxBytes: number;
  publish: Parameters<typeof createFileWriter>[0]['publish'];
  logger: Logger | undefined;
}): Promise<CacheFileWriter | undefined> {
  const { dir, hex, logger } = spec;
  if (!isHexDigest(hex) || spec.size > spec.maxBytes) return undefined;
  const spool = tempPath(dir, hex, randomBytes(6).toString('hex'));
  try {
    await mkdir(entryFolder(dir, hex), { recursive: true });
    const handle = await open(spool, 'wx', 0o644);
    return createFileWriter({ ...spec, spool, handle });
  } catch (error) {
    logger?.warn({ digest: hex, err: error }, 'cache: whole-file write failed; served without caching');
    return undefined;
  }
}

export async function createChunkCache(options: ChunkCacheOptions): Promise<ChunkCache> {
  const { dir, maxBytes, metrics, logger } = options;
  const staleMs = options.staleMs ?? 30_000;
  const hash = options.hash ?? hashInline;
  const rescanAfterBytes = Math.max(1, Math.floor(maxBytes / 16));
  const lru = new ByteLru();
  /** Entries being written by this process (counted, not yet visible): never evicted, never dropped as missing. */
  const pending = new Map<string, number>();
  const claims = createClaims({ dir, staleMs, pollMs: options.pollMs ?? 10 });
  let writtenSinceScan = 0;

  const count = (result: CacheResult) => metrics?.cacheRequests.inc({ result });
  const report = () => metrics?.cacheBytes.set(lru.total);

  /** Deletes least-recently-used entries until this process's view is within maxBytes. */
  async function evict(): Promise<void> {
    for (const [hex, entry] of lru.victims(maxBytes)) {
      if (pending.has(hex)) continue;
      const path = entryPath(dir, hex);
      const info = await stat(path).catch(() => undefined);
      if (info !== undefined && info.mtimeMs > entry.usedAt + 1) {
        lru.touch(hex, info.mtimeMs); // another process used it since we looked: keep it
        continue;
      }
      await unlink(path).catch(() => undefined);
      lru.delete(hex);
    }
    report();
  }

  const rescan = createCoalescer(async () => {
    writtenSinceScan = 0;
    const { entries, sweptTemps } = await scanCache(dir, staleMs, Date.now());
    lru.reset(entries);
    for (const [hex, size] of pending) lru.set(hex, size, Date.now());
    if (sweptTemps > 0) logger?.info({ dir, sweptTemps }, 'cache: removed temp files of interrupted writes');
    await evict();
  });

  async function discard(hex: string, why: string): Promise<void> {
    count('corrupt');
    logger?.warn({ digest: hex, why }, 'cache: corrupt entry deleted');
    await unlink(entryPath(dir, hex)).catch(() => undefined);
    lru.delete(hex);
    report();
  }

  /** A hit: the entry's mtime is the use order other processes and the next start see. */
  function markUsed(hex: string, size: number, path: string): void {
    const now = Date.now();
    const when = new Date(now);
    utimes(path, when, when).catch(() => undefined);
    if (!lru.touch(hex, now)) lru.set(hex, size, now);
    report();
  }

  /** Writes an entry through a temp file in its folder (`write` fills the temp), then renames it into place. */
  async function publish(hex: string, size: number, write: (temp: string) => Promise<void>): Promise<void> {
    if (lru.touch(hex, Date.now())) return;
    const temp = tempPath(dir, hex, randomBytes(6).toString('hex'));
    const entry = entryPath(dir, hex);
    try {
      await mkdir(entryFolder(dir, hex), { recursive: true });
      await write(temp);
      // Counted and room made before it becomes visible: concurrent writes make room for each other,
      // so the directory does not go over maxBytes while they land (as this process sees it).
      pending.set(hex, size);
      lru.set(hex, size, Date.now());
      await evict().catch((error: unknown) => logger?.warn({ dir, err: error }, 'cache: eviction failed'));
      await rename(temp, entry);
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      if (pending.delete(hex) && lru.delete(hex)) report();
      logger?.warn({ digest: hex, err: error }, 'cache: write failed; served without caching');
      return;
    } finally {
      pending.delete(hex);
    }
    writtenSinceScan += size;
    if (writtenSinceScan >= rescanAfterBytes) {
      await rescan().catch((error: unknown) => logger?.warn({ dir, err: error }, 'cache: eviction failed'));
    }
  }

  await mkdir(dir, { recursive: true });
  await rescan();

  return {
    async get(hex, size, signal, target) {
      if (!isHexDigest(hex)) return undefined;
      signal.throwIfAborted();
      const lent = target instanceof Uint8Array ? undefined : target;
      // Its own ArrayBuffer (not Node's shared pool), so a hash worker may take it by transfer.
      const buffer = target instanceof Uint8Array ? target : (lent?.buffer ?? Buffer.allocUnsafeSlow(size));
      if (buffer.length < size) throw new RangeError('cache target is smaller than the chunk');
      const path = entryPath(dir, hex);
      const read = await readExactly(path, size, buffer.subarray(0, size));
      if (read === 'missing') {
        if (!pending.has(hex) && lru.delete(hex)) report();
        count('miss');
        return undefined;
      }
      if (read === 'wrong-size') {
        await discard(hex, 'size');
        return undefined;
      }
      signal.throwIfAborted();
      const hashed = await hash(buffer.subarray(0, size), { owned: !(target instanceof Uint8Array) });
      lent?.adopt(hashed.bytes.buffer as ArrayBuffer);
      if (hashed.hex !== hex) {
        await discard(hex, 'sha256');
        return undefined;
      }
      markUsed(hex, size, path);
      count('hit');
      return hashed.bytes;
    },

    put(hex, bytes) {
      if (!isHexDigest(hex) || bytes.length > maxBytes) return Promise.resolve();
      return publish(hex, bytes.length, (temp) => writeDurably(temp, bytes));
    },

    async putFile(hex, path) {
      if (!isHexDigest(hex)) return;
      const size = (await stat(path).catch(() => undefined))?.size;
      if (size === undefined || size > maxBytes) return;
      await publish(hex, size, (temp) => copyDurably(path, temp));
    },

    async getFile(hex, size, signal) {
      if (!isHexDigest(hex)) return undefined;
      signal.throwIfAborted();
      const path = entryPath(dir, hex);
      const info = await stat(path).catch(() => undefined);
      if (info === undefined) {
        if (!pending.has(hex) && lru.delete(hex)) report();
        count('miss');
        return undefined;
      }
      if (info.size !== size) {
        await discard(hex, 'size');
        return undefined;
      }
      if ((await hashFile(path, signal)) !== hex) {
        await discard(hex, 'sha256');
        return undefined;
      }
      markUsed(hex, size, path);
      count('hit');
      return path;
    },

    openFile: (hex, size) => openFileWriter({ dir, hex, size, maxBytes, publish, logger }),

    claim(hex, signal) {
      if (!isHexDigest(hex))
        return Promise.reject(new TypeError('cache claim needs a lowercase SHA-256 hex digest'));
      return claims.claim(hex, signal, () => fileExists(entryPath(dir, hex)));
    },

    bytes: () => lru.total,

    close: () => claims.releaseAll(),
  };
}
