import { createPrivateKey, randomBytes } from 'node:crypto';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { JSONWebKeySet, JWK } from 'jose';

/** A key file that cannot be read or is not the expected JWK / JWKS shape. Names the file. */
export class KeyFileError extends Error {
  readonly file: string;

  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(`${file}: ${message}`, options);
    this.name = 'KeyFileError';
    this.file = file;
  }
}

/** Key files are a few KiB; anything far larger is a mistake (wrong file), not a key set. */
const MAX_KEY_FILE_BYTES = 1024 * 1024;

/** Members of a JWK that only a private key has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

async function readJsonFile(file: string, what: string): Promise<unknown> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new KeyFileError(file, `cannot read ${what}: ${code}`, { cause: error });
  }
  if (bytes.length > MAX_KEY_FILE_BYTES) {
    throw new KeyFileError(file, `${what} is too large: expected at most ${MAX_KEY_FILE_BYTES} bytes`);
  }
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new KeyFileError(file, `${what} is not JSON: ${(error as Error).message}`, { cause: error });
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Reads a public JSON Web Key Set (RFC 7517 §5) from a file. Every key must
 * have a string `kty`; a key carrying private members (`d`, `k`, …) is
 * refused, because a file meant to be shared must never hold secrets.
 * Errors are KeyFileError naming the file.
 */
export async function loadJwksFile(file: string): Promise<JSONWebKeySet> {
  const value = await readJsonFile(file, 'JWKS file');
  if (!isObject(value) || !Array.isArray(value.keys)) {
    throw new KeyFileError(file, 'expected a JWKS: an object with a "keys" array');
  }
  if (value.keys.length === 0) throw new KeyFileError(file, 'the JWKS has no keys');
  value.keys.forEach((key: unknown, i: number) => {
    if (!isObject(key) || typeof key.kty !== 'string') {
      throw new KeyFileError(file, `keys[${i}]: expected a JWK with a string "kty"`);
    }
    const secret = PRIVATE_MEMBERS.find((member) => member in key);
    if (secret !== undefined) {
      throw new KeyFileError(
        file,
        `keys[${i}]: expected a public key, got private member "${secret}" (never share private keys)`,
      );
    }
  });
  return value as unknown as JSONWebKeySet;
}

/**
 * Reads one private JWK (as written by `modelgate keygen`) from a file.
 * Errors are KeyFileError naming the file.
 */
export async function loadPrivateJwkFile(file: string): Promise<JWK> {
  const value = await readJsonFile(file, 'private JWK file');
  if (!isObject(value) || typeof value.kty !== 'string') {
    throw new KeyFileError(file, 'expected a JWK: an object with a string "kty"');
  }
  if (typeof value.d !== 'string') {
    throw new KeyFileError(file, 'expected a private key (with "d"), got a public key');
  }
  return value as JWK;
}

/**
 * Reads a private signing key: a JWK as written by `modelgate keygen`, or a
 * PEM private key (PKCS#8, SEC 1 or PKCS#1, unencrypted). Returns it as a JWK
 * so one code path signs both. Errors are KeyFileError naming the file.
 */
export async function loadSigningKeyFile(file: string): Promise<JWK> {
  let text: string;
  try {
    const bytes = await readFile(file);
    if (bytes.length > MAX_KEY_FILE_BYTES) throw new Error(`larger than ${MAX_KEY_FILE_BYTES} bytes`);
    text = bytes.toString('utf8');
  } catch (error) {
    throw new KeyFileError(
      file,
      `cannot read private key: ${(error as NodeJS.ErrnoException).code ?? error}`,
      {
        cause: error,
      },
    );
  }
  if (!text.includes('-----BEGIN')) return loadPrivateJwkFile(file);
  const pem = /-----BEGIN (?:EC |RSA )?PRIVATE KEY-----[\s\S]*?-----END (?:EC |RSA )?PRIVATE KEY-----/.exec(
    text,
  );
  if (pem === null) throw new KeyFileError(file, 'expected an unencrypted PEM "PRIVATE KEY" block');
  try {
    return createPrivateKey(pem[0]).export({ format: 'jwk' }) as JWK;
  } catch (error) {
    throw new KeyFileError(file, `unusable private key: ${(error as Error).message}`, { cause: error });
  }
}

export interface WriteFileAtomicOptions {
  /** Replace an existing file (default true). When false, an existing file fails with EEXIST. */
  overwrite?: boolean;
}

/**
 * Writes a file so that readers see either the old content or the complete
 * new content, never a prefix: the data goes to a temporary file in the same
 * folder (same file system, so the final step is a rename), is fsynced, and
 * only then takes the final name. On any error the temporary file is removed.
 * `mode` is applied exactly (not masked by the umask).
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  mode = 0o644,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const folder = dirname(file);
  // A dotfile, so catalog scans and `modelgate sign` walks ignore it if a crash leaves one behind.
  const temporary = join(folder, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temporary, 'wx', mode);
  try {
    try {
      await handle.chmod(mode);
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.overwrite === false) {
      // link(2) fails with EEXIST instead of replacing: no window where an existing file is clobbered.
      await link(temporary, file);
      await unlink(temporary);
    } else {
      await rename(temporary, file);
    }
  } catch (error) {
    await unlink(temporary).catch(() => {});
    throw error;
  }
  await syncFolder(folder);
}

/** Makes the rename durable; best effort (some file systems refuse fsync on a folder). */
async function syncFolder(folder: string): Promise<void> {
  try {
    const handle = await open(folder, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Durability of the directory entry is a bonus, not a correctness requirement.
  }
}
