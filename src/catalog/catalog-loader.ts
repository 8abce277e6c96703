import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CatalogRejection } from './catalog.types.ts';
import type { Release } from './release.types.ts';
import { ReleaseRejectedError } from './signature.ts';

/**
 * A manifest lists a few hundred bytes per file (plus 65 per chunk); 64 MiB is
 * far beyond any real release and keeps one hostile file from exhausting memory.
 */
const MAX_CATALOG_FILE_BYTES = 64 * 1024 * 1024;

/** Catalog files read and verified at once: enough to hide disk latency, few enough to bound memory. */
const LOAD_CONCURRENCY = 8;

/** What one catalog file produced, remembered so an unchanged file is not read or verified again. */
export interface FileState {
  /** Identity of the file's content generation on disk (inode, size, mtime, ctime). */
  stamp: string;
  /** SHA-256 of the bytes read; keys rejection counting so an unchanged bad file counts once. */
  contentHash: string;
  /** Trust generation the file was verified against; new keys or signers re-verify everything. */
  trustGeneration: number;
  release: Release | null;
  rejection: CatalogRejection | null;
}

/** Turns one catalog file's bytes into a release, or throws ReleaseRejectedError. */
export type ReleaseVerifier = (path: string, bytes: Buffer) => Promise<Release>;

/** Which directory entries are release files: signed (`.jws`, `.sigstore.json`) or unsigned (`.json`). */
export function isReleaseFileName(name: string): boolean {
  return !name.startsWith('.') && (name.endsWith('.jws') || name.endsWith('.json'));
}

/** Release files directly in `dir`, sorted; throws the readdir error (the caller keeps its last catalog). */
export async function listReleaseFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir);
  return names
    .filter(isReleaseFileName)
    .sort()
    .map((name) => join(dir, name));
}

function rejectedState(
  path: string,
  stamp: string,
  contentHash: string,
  trustGeneration: number,
  error: unknown,
): FileState {
  const rejection: CatalogRejection =
    error instanceof ReleaseRejectedError
      ? { file: path, reason: error.reason, message: error.message }
      : { file: path, reason: 'unreadable', message: error instanceof Error ? error.message : String(error) };
  return { stamp, contentHash, trustGeneration, release: null, rejection };
}

function errnoOf(error: unknown): string {
  return (error as NodeJS.ErrnoException | undefined)?.code ?? String(error);
}

/**
 * Reads and verifies catalog files, reusing the previous result for a file
 * whose content (stamp, then hash) and trust generation did not change.
 */
export function createCatalogLoader(verify: ReleaseVerifier) {
  let previous = new Map<string, FileState>();

  async function loadFile(path: string, generation: number): Promise<FileState | null> {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      // O_NONBLOCK: a FIFO dropped into the folder must not hang the scan (no effect on regular files).
      handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      const code = errnoOf(error);
      if (code === 'ENOENT') return null; // removed since readdir
      return rejectedState(
        path,
        `error:${code}`,
        `error:${code}`,
        generation,
        new Error(`cannot open: ${code}`),
      );
    }
    try {
      return await readOpened(path, handle, generation);
    } finally {
      await handle.close().catch(() => {});
    }
  }

  async function readOpened(
    path: string,
    handle: Awaited<ReturnType<typeof open>>,
    generation: number,
  ): Promise<FileState | null> {
    const info = await handle.stat({ bigint: true });
    if (!info.isFile()) return null;
    const stamp = `${info.dev}-${info.ino}-${info.size}-${info.mtimeNs}-${info.ctimeNs}`;
    const before = previous.get(path);
    if (before && before.stamp === stamp && before.trustGeneration === generation) return before;
    if (info.size > BigInt(MAX_CATALOG_FILE_BYTES)) {
      const error = new ReleaseRejectedError(
        'invalid_manifest',
        `expected at most ${MAX_CATALOG_FILE_BYTES} bytes, got ${info.size}`,
      );
      return rejectedState(path, stamp, `size:${stamp}`, generation, error);
    }
    let bytes: Buffer;
    try {
      bytes = await handle.readFile();
    } catch (error) {
      const code = errnoOf(error);
      return rejectedState(path, stamp, `error:${code}`, generation, new Error(`cannot read: ${code}`));
    }
    const contentHash = createHash('sha256').update(bytes).digest('hex');
    if (before && before.contentHash === contentHash && before.trustGeneration === generation) {
      return { ...before, stamp };
    }
    try {
      const release = await verify(path, bytes);
      return { stamp, contentHash, trustGeneration: generation, release, rejection: null };
    } catch (error) {
      return rejectedState(path, stamp, contentHash, generation, error);
    }
  }

  return {
    /** Loads `paths` (at most LOAD_CONCURRENCY at once); files that vanished or are not regular are left out. */
    async loadAll(paths: readonly string[], generation: number): Promise<FileState[]> {
      const loaded = await mapLimit(paths, LOAD_CONCURRENCY, (path) => loadFile(path, generation));
      const next = new Map<string, FileState>();
      const states: FileState[] = [];
      paths.forEach((path, i) => {
        const state = loaded[i];
        if (state === null || state === undefined) return;
        next.set(path, state);
        states.push(state);
      });
      previous = next;
      return states;
    },
  };
}

/** Maps over `items` with at most `limit` calls in flight, keeping the order of results. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  async function work(): Promise<void> {
    for (let i = next++; i < items.length; i = next++) {
      results[i] = await fn(items[i] as T);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, work));
  return results;
}
