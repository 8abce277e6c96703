import { mkdir, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { FetchError } from './fetch-error.ts';
import { isSafeManifestPath, TEMP_DIR_NAME } from './manifest.ts';

/** Where a file of the release lives in DEST, and where it is written until verified. */
export interface FilePlacement {
  final: string;
  partial: string;
}

function unsafe(path: string, detail: string): FetchError {
  return new FetchError('integrity', 'FETCH_UNSAFE_PATH', `${JSON.stringify(path)} ${detail}`);
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
  if (!isSafeManifestPath(path)) throw unsafe(path, 'is not a safe relative path');
  const segments = path.split('/');
  const final = join(dest, ...segments);
  const partial = `${join(dest, TEMP_DIR_NAME, ...segments)}.partial`;
  if (!isInside(dest, final) || !isInside(dest, partial)) throw unsafe(path, 'would leave the destination');
  return { final, partial };
}

/**
 * Creates the parent folders of `file` and checks that, with symlinks
 * resolved, they still lie inside DEST: a folder in DEST that is a symlink
 * (left by anything else that writes there) must not carry our writes out.
 */
export async function prepareParent(dest: string, file: string, manifestPath: string): Promise<void> {
  const parent = dirname(file);
  try {
    await mkdir(parent, { recursive: true });
  } catch (error) {
    throw new FetchError('local', 'FETCH_LOCAL_IO', `cannot create folder ${parent}`, { cause: error });
  }
  const real = await realpath(parent);
  if (real !== dest && !isInside(dest, real)) {
    throw unsafe(manifestPath, `would be written through a symlink to ${real}, outside the destination`);
  }
}
