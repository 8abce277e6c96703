import { join } from 'node:path';

/**
 * Where things live in a cache directory (shared by the workers of one
 * `serve`, and by every restart):
 *
 *   dir/sha256/ab/cd/<64 hex>      an entry: exactly the bytes whose SHA-256 is its name
 *   dir/sha256/ab/cd/.tmp.<pid>.<random>   a write in progress (renamed into place when complete)
 *   dir/claims/<64 hex>            "process <pid> is reading this chunk from the source"
 *
 * Temp files sit in the entry's own folder so the rename that publishes an
 * entry never crosses a file system, and so it is atomic.
 */

const hexDigest = /^[0-9a-f]{64}$/;
const tempName = /^\.tmp\.(\d+)\.[0-9a-f]+$/;

export function isHexDigest(value: string): boolean {
  return hexDigest.test(value);
}

export function entriesRoot(dir: string): string {
  return join(dir, 'sha256');
}

export function claimsRoot(dir: string): string {
  return join(dir, 'claims');
}

export function entryFolder(dir: string, hex: string): string {
  return join(entriesRoot(dir), hex.slice(0, 2), hex.slice(2, 4));
}

export function entryPath(dir: string, hex: string): string {
  return join(entryFolder(dir, hex), hex);
}

export function claimPath(dir: string, hex: string): string {
  return join(claimsRoot(dir), hex);
}

export function tempPath(dir: string, hex: string, pid: number, random: string): string {
  return join(entryFolder(dir, hex), `.tmp.${pid}.${random}`);
}

/** The writer's pid of a temp file name, or undefined when the name is not a temp file's. */
export function tempOwner(name: string): number | undefined {
  const match = tempName.exec(name);
  return match === null ? undefined : Number(match[1]);
}

/** Whether a process with this pid exists (EPERM: it exists, owned by someone else). */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
