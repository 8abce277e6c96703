import { constants, type Stats } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { FetchError } from './fetch-error.ts';
import { isSafeManifestPath, TEMP_DIR_NAME } from './manifest.ts';

/*
 * Everything `fetch` writes lies inside DEST, and nothing it writes may be
 * redirected out of DEST by a symlink. DEST is often a volume shared with
 * other containers of the Pod (the model server, sidecars), and `fetch` runs
 * as the Pod's user: a symlink planted in DEST — at `.modelgate-tmp`, at a
 * partial or final file, at a folder of a nested path, at the release
 * record — would otherwise make us create, truncate or overwrite a file
 * elsewhere. So:
 *   - DEST itself is resolved once (the operator chose it; it may be a link);
 *   - every folder inside DEST that we use is created one component at a
 *     time and checked with lstat: a symlink is refused, never followed;
 *   - files are opened with O_NOFOLLOW (and O_EXCL where we create them), so
 *     a symlink as the last component fails the open itself;
 *   - a rename happens only between paths whose folders were just checked,
 *     from a regular file, onto a name that is not a symlink.
 *
 * rename(2) on a destination that is a symlink replaces the link itself and
 * does not follow it, so a symlink at a *final* name cannot carry bytes out —
 * but a symlinked *parent folder* of the final name can (the rename lands in
 * the folder the link points to), which is why every parent is checked. A
 * symlink at a final name is refused anyway: it means someone else writes
 * into DEST, and the model server would be handed that link.
 *
 * Node has no openat(2), so a folder swapped for a symlink between our lstat
 * and our open/rename (a race of microseconds by a process that can already
 * write into DEST) is not excluded; O_NOFOLLOW still protects the last
 * component of every open.
 */

/** Where a file of the release lives in DEST, and where it is written until verified. */
export interface FilePlacement {
  final: string;
  partial: string;
}

function unsafePath(path: string, detail: string): FetchError {
  return new FetchError('integrity', 'FETCH_UNSAFE_PATH', `${JSON.stringify(path)} ${detail}`);
}

/** The error for something planted in DEST: names the path, exits with FETCH_EXIT.unsafeDestination. */
export function unsafeDestination(path: string, detail: string): FetchError {
  return new FetchError(
    'unsafe_destination',
    'FETCH_UNSAFE_DESTINATION',
    `${path} ${detail}; refusing to write through it (remove it, or give an unshared --dest)`,
  );
}

function localIo(what: string, error: unknown): FetchError {
  const code = (error as { code?: string }).code;
  return new FetchError('local', 'FETCH_LOCAL_IO', `${what}${code ? ` (${code})` : ''}`, { cause: error });
}

function errno(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

function isInside(root: string, candidate: string): boolean {
  const inside = relative(root, candidate);
  return inside !== '' && inside !== '..' && !inside.startsWith(`..${sep}`) && !isAbsolute(inside);
}

/**
 * Maps a manifest path to its final and temporary names under DEST (already
 * a real path). The path was checked at manifest parse; it is checked again
 * here, where the disk is touched.
 */
export function placeFile(dest: string, path: string): FilePlacement {
  if (!isSafeManifestPath(path)) throw unsafePath(path, 'is not a safe relative path');
  const segments = path.split('/');
  const final = join(dest, ...segments);
  const partial = `${join(dest, TEMP_DIR_NAME, ...segments)}.partial`;
  if (!isInside(dest, final) || !isInside(dest, partial))
    throw unsafePath(path, 'would leave the destination');
  return { final, partial };
}

/** lstat that answers undefined for a missing path. */
async function lstatOrNone(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    if (errno(error) === 'ENOENT') return undefined;
    throw localIo(`cannot inspect ${path}`, error);
  }
}

/**
 * Creates `folder` (DEST itself or a folder inside it) one component at a
 * time from DEST, refusing any component that is a symlink. Returns once
 * every component is a real folder.
 */
export async function ensureFolder(dest: string, folder: string): Promise<void> {
  if (folder === dest) return;
  if (!isInside(dest, folder)) throw unsafePath(folder, 'would leave the destination');
  let current = dest;
  for (const segment of relative(dest, folder).split(sep)) {
    current = join(current, segment);
    try {
      // mkdir never follows a symlink as its last component: it fails with EEXIST.
      await mkdir(current, { mode: 0o755 });
    } catch (error) {
      if (errno(error) !== 'EEXIST') throw localIo(`cannot create folder ${current}`, error);
    }
    const stats = await lstatOrNone(current);
    if (stats?.isSymbolicLink()) throw unsafeDestination(current, 'is a symlink');
    if (stats === undefined || !stats.isDirectory()) {
      throw localIo(`cannot use ${current} as a folder`, new Error('not a folder'));
    }
  }
}

/** Refuses `path` when it is a symlink; a missing path or any other type is the caller's business. */
export async function refuseSymlink(path: string): Promise<Stats | undefined> {
  const stats = await lstatOrNone(path);
  if (stats?.isSymbolicLink()) throw unsafeDestination(path, 'is a symlink');
  return stats;
}

/** Maps the errno of an O_NOFOLLOW / O_EXCL open to the unsafe-destination error where it is one. */
function openError(path: string, error: unknown): FetchError {
  // ELOOP: O_NOFOLLOW met a symlink. EMLINK: the same on FreeBSD. EEXIST: O_EXCL met anything.
  const code = errno(error);
  if (code === 'ELOOP' || code === 'EMLINK') return unsafeDestination(path, 'is a symlink');
  if (code === 'EEXIST') return unsafeDestination(path, 'appeared while it was being created');
  return localIo(`cannot open ${path}`, error);
}

/**
 * Opens (creating when missing) the partial file of a download for reading
 * and writing at explicit positions, never through a symlink.
 */
export async function openPartial(dest: string, partial: string): Promise<FileHandle> {
  await ensureFolder(dest, dirname(partial));
  try {
    // O_RDWR without O_APPEND: bytes are written at explicit positions.
    return await open(partial, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  } catch (error) {
    throw openError(partial, error);
  }
}

/**
 * Creates `path` inside DEST as a new, empty file: a leftover regular file
 * from an earlier run is removed first; a symlink there is refused.
 */
export async function createNewFile(dest: string, path: string): Promise<FileHandle> {
  await ensureFolder(dest, dirname(path));
  const stats = await refuseSymlink(path);
  if (stats !== undefined) {
    try {
      // unlink removes the name itself; it never follows a link (and this is no link).
      await unlink(path);
    } catch (error) {
      throw localIo(`cannot remove the leftover ${path}`, error);
    }
  }
  try {
    return await open(
      path,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o644,
    );
  } catch (error) {
    throw openError(path, error);
  }
}

/**
 * Renames a verified file from the temporary folder to its final name,
 * after checking both folders (no symlinked component), that `from` is a
 * regular file, and that `to` is not a symlink.
 */
export async function moveIntoPlace(dest: string, from: string, to: string): Promise<void> {
  await ensureFolder(dest, dirname(from));
  await ensureFolder(dest, dirname(to));
  const source = await refuseSymlink(from);
  if (source === undefined || !source.isFile()) {
    throw localIo(`cannot move ${from}: not a regular file`, new Error('not a regular file'));
  }
  await refuseSymlink(to);
  try {
    await rename(from, to);
  } catch (error) {
    throw localIo(`cannot move ${from} to ${to}`, error);
  }
}

/**
 * Bytes held by partial files in DEST/.modelgate-tmp (0 when there is none,
 * or when it is not a real folder): what a rerun would resume from. Never
 * follows a symlink; any error counts as nothing kept.
 */
export async function measureKeptPartials(dest: string): Promise<number> {
  const temp = join(dest, TEMP_DIR_NAME);
  try {
    if (!(await lstat(temp)).isDirectory()) return 0;
    let bytes = 0;
    // readdir lists a symlink as a symlink and does not descend into it.
    for (const entry of await readdir(temp, { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith('.partial')) {
        bytes += (await lstat(join(entry.parentPath, entry.name))).size;
      }
    }
    return bytes;
  } catch {
    return 0;
  }
}
