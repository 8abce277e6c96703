import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';

/**
 * Where things live in a cache directory (shared by the workers of one
 * `serve`, and by every restart):
 *
 *   dir/sha256/ab/cd/<64 hex>      an entry: exactly the bytes whose SHA-256 is its name
 *   dir/sha256/ab/cd/.tmp.<host>.<pid>.<random>   a write in progress (renamed into place when complete)
 *   dir/claims/<64 hex>            "<host> <pid>": that process is reading this chunk from the source
 *
 * `<host>` is a short hash of the host name (the pod name in Kubernetes): two
 * pods of a node-local DaemonSet share the directory during a rolling update
 * but not a pid namespace, so a pid is only judged alive or dead by a process
 * on the same host; anything else is judged by its age. *
 * Temp files sit in the entry's own folder so the rename that publishes an
 * entry never crosses a file system, and so it is atomic.
 */

const hexDigest = /^[0-9a-f]{64}$/;
const tempName = /^\.tmp\.([0-9a-f]{8})\.(\d+)\.[0-9a-f]+$/;

/** This host's tag in temp and claim file names. */
export const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

/** Who wrote a temp or claim file. */
export interface Owner {
  host: string;
  pid: number;
}

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

export function tempPath(dir: string, hex: string, random: string): string {
  return join(entryFolder(dir, hex), `.tmp.${HOST_TAG}.${process.pid}.${random}`);
}

/** The writer of a temp file name, or undefined when the name is not a temp file's. */
export function tempOwner(name: string): Owner | undefined {
  const match = tempName.exec(name);
  return match === null ? undefined : { host: match[1] ?? '', pid: Number(match[2]) };
}

/** The owner line of a claim file. */
export function ownerLine(): string {
  return `${HOST_TAG} ${process.pid}\n`;
}

/** The owner a claim file names, or undefined for a file still being written (or garbage). */
export function parseOwnerLine(text: string): Owner | undefined {
  const match = /^([0-9a-f]{8}) (\d+)\n?$/.exec(text);
  return match === null ? undefined : { host: match[1] ?? '', pid: Number(match[2]) };
}

/**
 * Whether the owner is known to be gone: a process of this host whose pid no
 * longer exists. Another host's process cannot be checked (false: let age decide).
 */
export function isOwnerGone(owner: Owner): boolean {
  if (owner.host !== HOST_TAG) return false;
  return owner.pid !== process.pid && !isProcessAlive(owner.pid);
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
