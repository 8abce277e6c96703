import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { LruEntry } from './byte-lru.ts';
import { entriesRoot, isHexDigest, isOwnerGone, tempOwner } from './layout.ts';

export interface ScanResult {
  /** Entries on disk, oldest mtime first (the LRU order across processes and restarts). */
  entries: Array<[string, LruEntry]>;
  /** Temp files of dead writers (or older than `staleMs`) deleted by this scan. */
  sweptTemps: number;
}

async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/**
 * Reads the cache directory: every entry with its size and mtime, and deletes
 * the temp files a crashed writer left (its pid on this host is gone, or the
 * file has not changed for `staleMs`: a pid can be reused after a restart,
 * and another pod's pids cannot be checked). A live writer's
 * temp file is left alone. Entries vanishing during the scan (another
 * process evicting) are skipped.
 */
export async function scanCache(dir: string, staleMs: number, now: number): Promise<ScanResult> {
  const root = entriesRoot(dir);
  const entries: Array<[string, LruEntry]> = [];
  let sweptTemps = 0;
  for (const first of await listDir(root)) {
    for (const second of await listDir(join(root, first))) {
      const folder = join(root, first, second);
      for (const name of await listDir(folder)) {
        const path = join(folder, name);
        const info = await stat(path).catch(() => undefined);
        if (info === undefined || !info.isFile()) continue;
        if (isHexDigest(name)) {
          entries.push([name, { size: info.size, usedAt: info.mtimeMs }]);
          continue;
        }
        const owner = tempOwner(name);
        if (owner === undefined) continue;
        const crashed = isOwnerGone(owner) || now - info.mtimeMs > staleMs;
        if (
          crashed &&
          (await unlink(path).then(
            () => true,
            () => false,
          ))
        )
          sweptTemps += 1;
      }
    }
  }
  entries.sort((a, b) => a[1].usedAt - b[1].usedAt);
  return { entries, sweptTemps };
}
