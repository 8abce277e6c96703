import { timingSafeEqual } from 'node:crypto';

/**
 * The naming and digest rules shared by the server, the CLI and `fetch`
 * (README "Releases"): one definition, so the client and the proxy can never
 * disagree about what a valid model name, path or digest is.
 */

/** One model-name segment: lowercase alphanumerics, with `.`, `_`, `-` inside. */
export const MODEL_SEGMENT = '[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?';
/** A model name: segments joined by `/` (a JSON-schema `pattern`). */
export const MODEL_PATTERN = `^${MODEL_SEGMENT}(?:/${MODEL_SEGMENT})*$`;
export const MAX_MODEL_LENGTH = 255;
export const MODEL_RULE_TEXT = `lowercase [a-z0-9]([a-z0-9._-]*[a-z0-9])? segments joined by "/", at most ${MAX_MODEL_LENGTH} characters`;
const MODEL_RE = new RegExp(MODEL_PATTERN);

export const VERSION_PATTERN = '^[A-Za-z0-9._+-]+$';
export const MAX_VERSION_LENGTH = 128;
const VERSION_RE = new RegExp(VERSION_PATTERN);

/** An environment name: 1–63 of `[a-z0-9-]`. */
export const ENVIRONMENT_PATTERN = '^[a-z0-9-]+$';
export const MAX_ENVIRONMENT_LENGTH = 63;
const ENVIRONMENT_RE = new RegExp(ENVIRONMENT_PATTERN);

/** True when `name` is an environment name (1–63 of `[a-z0-9-]`). */
export function isValidEnvironment(name: string): boolean {
  return name.length > 0 && name.length <= MAX_ENVIRONMENT_LENGTH && ENVIRONMENT_RE.test(name);
}

/** `sha256:` + 64 lowercase hex digits: a file digest or a release digest. */
export const DIGEST_PATTERN = '^sha256:[0-9a-f]{64}$';
/** 64 lowercase hex digits: a chunk digest. */
export const HEX_PATTERN = '^[0-9a-f]{64}$';
const DIGEST_RE = new RegExp(DIGEST_PATTERN);
const HEX_RE = new RegExp(HEX_PATTERN);

/** Smallest and largest `chunkSize`: 1 MiB and 1 GiB, powers of two. */
export const MIN_CHUNK_SIZE = 1024 * 1024;
export const MAX_CHUNK_SIZE = 1024 * 1024 * 1024;

const MAX_FILE_PATH_LENGTH = 4096;

/** True when `name` is a model name (lowercase segments joined by `/`, ≤255 characters). */
export function isValidModelName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_MODEL_LENGTH && MODEL_RE.test(name);
}

/**
 * True when `version` is a release version: 1–128 of `[A-Za-z0-9._+-]`, and
 * not `.` or `..` (which URL normalisation would eat). It never contains `:`,
 * so a version can never be mistaken for a `sha256:` reference.
 */
export function isValidVersion(version: string): boolean {
  return (
    version.length > 0 &&
    version.length <= MAX_VERSION_LENGTH &&
    version !== '.' &&
    version !== '..' &&
    VERSION_RE.test(version)
  );
}

/**
 * True when `path` is a safe relative file path: `/`-separated, no empty, `.`
 * or `..` segment (so no leading or trailing `/`), no backslash, no NUL.
 * Manifest paths become URL paths and `file:` locations and `fetch`
 * destinations become disk paths, so anything that could climb out of a
 * folder is refused.
 */
export function isValidFilePath(path: string): boolean {
  if (path.length === 0 || path.length > MAX_FILE_PATH_LENGTH) return false;
  if (path.includes('\\') || path.includes('\0')) return false;
  return path.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

/** True when `digest` is `sha256:` followed by 64 lowercase hex digits. */
export function isValidDigest(digest: string): boolean {
  return DIGEST_RE.test(digest);
}

/** True when `hex` is 64 lowercase hex digits. */
export function isSha256Hex(hex: string): boolean {
  return HEX_RE.test(hex);
}

/** A chunk size is a power of two from 1 MiB to 1 GiB. */
export function isValidChunkSize(size: number): boolean {
  return (
    Number.isInteger(size) && size >= MIN_CHUNK_SIZE && size <= MAX_CHUNK_SIZE && (size & (size - 1)) === 0
  );
}

/** `sha256:<hex>` → the 32 digest bytes, or undefined when malformed. */
export function parseSha256(digest: string): Buffer | undefined {
  if (!digest.startsWith('sha256:')) return undefined;
  const hex = digest.slice(7);
  return HEX_RE.test(hex) ? Buffer.from(hex, 'hex') : undefined;
}

/**
 * Compares a computed digest with an expected lowercase hex digest in
 * constant time, so response timing never tells an attacker how many leading
 * bytes of a forged chunk matched.
 */
export function digestEquals(actual: Uint8Array, expectedHex: string): boolean {
  if (!HEX_RE.test(expectedHex)) return false;
  const expected = Buffer.from(expectedHex, 'hex');
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** Compares two `sha256:<hex>` (or bare hex) digests in constant time; malformed ones never match. */
export function sameDigest(a: string, b: string): boolean {
  const left = a.startsWith('sha256:') ? a.slice(7) : a;
  const right = b.startsWith('sha256:') ? b.slice(7) : b;
  return HEX_RE.test(right) && HEX_RE.test(left) && digestEquals(Buffer.from(left, 'hex'), right);
}
