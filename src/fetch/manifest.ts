import { createHash } from 'node:crypto';
import { isSha256Hex, isValidChunkSize, isValidDigest, isValidFilePath, isValidModelName } from '../rules.ts';
import { FetchError } from './fetch-error.ts';

// The naming and digest rules are the proxy's own (src/rules.ts): client and server cannot disagree.
export { sameDigest } from '../rules.ts';

/**
 * Names the client keeps for itself inside DEST. A manifest may not claim
 * them: a file called `.modelgate-release.json` would overwrite our record.
 */
export const RELEASE_RECORD_NAME = '.modelgate-release.json';
export const TEMP_DIR_NAME = '.modelgate-tmp';

/** One file of the manifest, as far as the client needs it. */
export interface FetchFile {
  path: string;
  size: number;
  /** `sha256:` + 64 lowercase hex. */
  digest: string;
  chunkSize?: number;
  chunks?: string[];
}

export interface FetchManifest {
  model: string;
  version: string;
  environment: string;
  created: string | undefined;
  provenance: Record<string, string> | undefined;
  files: FetchFile[];
}

export function isModelName(model: string): boolean {
  return isValidModelName(model);
}

export function isDigest(value: string): boolean {
  return isValidDigest(value);
}

/** A version or a release digest, as the proxy accepts in `{ref}`. */
export function isReleaseRef(ref: string): boolean {
  if (ref.startsWith('sha256:')) return isDigest(ref);
  return ref.length > 0 && ref.length <= 128 && !/[/\\\s\0?#%]/.test(ref);
}

/** `sha256:` + hex of the bytes. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * docs/releases.md path rules: relative, `/`-separated, no empty, `.` or `..`
 * segment, no backslash, no NUL. The manifest is signed, but the client
 * checks again before it touches the disk (defence in depth: a compromised
 * signer or proxy must not write outside DEST).
 */
export function isSafeManifestPath(path: string): boolean {
  if (!isValidFilePath(path)) return false;
  const [first] = path.split('/');
  return first !== RELEASE_RECORD_NAME && first !== TEMP_DIR_NAME;
}

function bad(message: string): FetchError {
  return new FetchError('integrity', 'FETCH_BAD_MANIFEST', `manifest is not acceptable: ${message}`);
}

function parseFile(value: unknown, index: number): FetchFile {
  const at = `files[${index}]`;
  if (value === null || typeof value !== 'object') throw bad(`${at} is not an object`);
  const entry = value as Record<string, unknown>;
  const { path, size, digest, chunkSize, chunks } = entry;
  if (typeof path !== 'string' || !isSafeManifestPath(path)) {
    throw new FetchError(
      'integrity',
      'FETCH_UNSAFE_PATH',
      `manifest ${at}.path ${JSON.stringify(path)} would leave the destination or is malformed`,
    );
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw bad(`${at}.size must be a non-negative integer, got ${JSON.stringify(size)}`);
  }
  if (typeof digest !== 'string' || !isDigest(digest)) {
    throw bad(`${at}.digest must be sha256:<64 lowercase hex>, got ${JSON.stringify(digest)}`);
  }
  const file: FetchFile = { path, size, digest };
  if (chunks === undefined) return file;
  if (typeof chunkSize !== 'number' || !isValidChunkSize(chunkSize)) {
    throw bad(`${at}.chunkSize must be a power of two from 1 MiB to 1 GiB, got ${JSON.stringify(chunkSize)}`);
  }
  if (!Array.isArray(chunks) || !chunks.every((c) => typeof c === 'string' && isSha256Hex(c))) {
    throw bad(`${at}.chunks must be a list of 64-hex digests`);
  }
  const expected = Math.ceil(size / chunkSize);
  // A zero-byte file has no slice; a signer may still list the digest of the empty slice.
  if (chunks.length !== expected && !(size === 0 && chunks.length === 1)) {
    throw bad(`${at}.chunks has ${chunks.length} entries, expected ${expected} for ${size} bytes`);
  }
  file.chunkSize = chunkSize;
  file.chunks = size === 0 ? [] : (chunks as string[]);
  return file;
}

/**
 * Parses the manifest body the proxy sent, after its digest was checked.
 * Refuses what the client could not safely write: unsafe or duplicate paths,
 * a path that is both a file and a folder, and a manifest of another model
 * or version than asked for.
 */
export function parseManifest(body: Buffer, model: string, ref: string): FetchManifest {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new FetchError('integrity', 'FETCH_BAD_MANIFEST', 'manifest is not JSON', { cause: error });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad('not a JSON object');
  const manifest = json as Record<string, unknown>;
  if (manifest.schema !== 'modelgate/release/v1') {
    throw bad(`schema must be "modelgate/release/v1", got ${JSON.stringify(manifest.schema)}`);
  }
  if (manifest.model !== model) {
    throw bad(`expected model ${JSON.stringify(model)}, got ${JSON.stringify(manifest.model)}`);
  }
  if (typeof manifest.version !== 'string' || manifest.version === '') throw bad('version is missing');
  if (!ref.startsWith('sha256:') && manifest.version !== ref) {
    throw bad(`expected version ${JSON.stringify(ref)}, got ${JSON.stringify(manifest.version)}`);
  }
  if (typeof manifest.environment !== 'string') throw bad('environment is missing');
  if (!Array.isArray(manifest.files)) throw bad('files must be a list');
  const files = manifest.files.map((file, i) => parseFile(file, i));

  const paths = new Set(files.map((f) => f.path));
  if (paths.size !== files.length) throw bad('a path is listed twice');
  for (const file of files) {
    const segments = file.path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const folder = segments.slice(0, i).join('/');
      if (paths.has(folder)) throw bad(`${JSON.stringify(folder)} is both a file and a folder`);
    }
  }
  return {
    model,
    version: manifest.version,
    environment: manifest.environment,
    created: typeof manifest.created === 'string' ? manifest.created : undefined,
    provenance:
      manifest.provenance !== null && typeof manifest.provenance === 'object'
        ? (manifest.provenance as Record<string, string>)
        : undefined,
    files,
  };
}
