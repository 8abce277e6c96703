import { createPrivateKey, X509Certificate } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { digestFile } from '../catalog/file-digest.ts';
import {
  isRfc3339,
  isValidFilePath,
  isValidModelName,
  isValidVersion,
  MANIFEST_SCHEMA,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  validateManifest,
} from '../catalog/manifest.ts';
import type { ChunkedFile, Manifest, ManifestFile } from '../catalog/release.types.ts';
import {
  canonicalJson,
  isReleaseAlgorithm,
  type ReleaseAlgorithm,
  sha256Digest,
  signManifest,
} from '../catalog/signature.ts';
import { loadSigningKeyFile, writeFileAtomic } from '../keys.ts';
import { isValidEnvironment } from '../rules.ts';
import { signReleaseBundle } from '../trust/release-bundle.ts';
import { type Command, defineCommand, EXIT } from './command.types.ts';
import type { CommandOutput } from './keygen.ts';

const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;

const HELP = `Usage: modelgate sign DIR --key PRIVATE_KEY --model NAME --version V --environment ENV
                     --source-prefix URI [--source-prefix URI ...] [options]

Hashes every regular file under DIR (recursively, sorted; dotfiles and
dot-folders skipped) into a release manifest with whole-file and chunk
SHA-256 digests, signs it as a JWS and writes MODEL-VERSION.jws (with "/" in
the model replaced by "_"). Each file is read once, with constant memory.
With --format sigstore it writes MODEL-VERSION.sigstore.json instead: a
Sigstore bundle v0.3 whose DSSE envelope holds the same manifest.

Options:
  --key FILE              private key: a JWK as written by \`modelgate keygen\`, or an
                          unencrypted PEM (ECDSA P-256/384/521, Ed25519, RSA)      (required)
  --format FORMAT         jws or sigstore                                        (default: jws)
  --certificate-chain PEM with --format sigstore: the signing certificate and its
                          intermediates (leaf first) to put in the bundle instead of
                          a key hint
  --model NAME            model name, e.g. fraud-detector or team/fraud-detector  (required)
  --version V             release version, e.g. 2026.11.3                         (required)
  --environment ENV       environment the release is for, e.g. prod              (required)
  --source-prefix URI     where the files will live; each file's source is URI/PATH.
                          Repeat for mirrors (tried in order). Examples:
                          s3://bucket/models/x/1.0  gs://bucket/x/1.0
                          az://account/container/x/1.0  file:models/x/1.0       (required)
  --chunk-size SIZE       bytes, or with a KiB/MiB/GiB suffix; a power of two
                          from 1MiB to 1GiB                                      (default: 8MiB)
  --out DIR               folder to write the release into                       (default: .)
  --provenance KEY=VALUE  provenance entry (source, builder, buildId, ...); repeatable
  --created TIME          RFC 3339 creation time                                 (default: now)
  --kid KID               key id (default: the key's "kid", else its RFC 7638 thumbprint)
  --alg ALG               ES256, EdDSA, RS256 or PS256 (default: the key's "alg", else
                          ES256 for P-256, EdDSA for Ed25519, PS256 for RSA)
  --force                 replace an existing output file
  -h, --help              show this help

Symlinks are followed only when they point to a file inside DIR.

Exit codes:
  0  signed; prints the output file and the release reference MODEL@sha256:...
  1  failure (unreadable file, symlink leaving DIR, bad key, invalid manifest, output exists)
  2  usage error
`;

/** A problem that ends the command with exit code 1 and one line on stderr. */
export class SignFailure extends Error {}

interface WalkedFile {
  /** `/`-separated path relative to DIR: the manifest `path`. */
  path: string;
  /** File to read (a symlink already resolved). */
  absolute: string;
}

/** `modelgate sign` with its output going to `output` (tests pass their own streams). */
export function createSignCommand(output: CommandOutput = process): Command {
  return defineCommand({
    name: 'sign',
    summary: 'hash a local model folder into a signed release manifest (.jws or .sigstore.json)',
    help: HELP,
    output,
    parse,
    async run(parsed, fail) {
      const usage = checkUsage(parsed);
      if (typeof usage === 'string') return fail(EXIT.usage, `${usage} (see modelgate sign --help)`);
      try {
        const { file, digest, fileCount, bytes } = await sign(usage);
        output.stdout.write(
          `wrote ${file} (${fileCount} ${fileCount === 1 ? 'file' : 'files'}, ${bytes} bytes)\nrelease ${usage.model}@${digest}\n`,
        );
        return EXIT.ok;
      } catch (error) {
        return fail(EXIT.failure, (error as Error).message);
      }
    },
  });
}

/** Options shared by \`sign\` and \`intake\` (both write a signed release). */
export const RELEASE_OPTIONS = {
  key: { type: 'string' },
  model: { type: 'string' },
  version: { type: 'string' },
  environment: { type: 'string' },
  'source-prefix': { type: 'string', multiple: true },
  'chunk-size': { type: 'string' },
  out: { type: 'string' },
  provenance: { type: 'string', multiple: true },
  created: { type: 'string' },
  kid: { type: 'string' },
  alg: { type: 'string' },
  format: { type: 'string' },
  'certificate-chain': { type: 'string' },
  force: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(args: string[]) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: RELEASE_OPTIONS });
  return { ...values, positionals };
}

export type ReleaseFormat = 'jws' | 'sigstore';

/** Parsed \`sign\` options; \`intake\` reuses all but \`dir\`'s meaning. */
export interface SignOptions {
  dir: string;
  key: string;
  format: ReleaseFormat;
  certificateChain: string | undefined;
  model: string;
  version: string;
  environment: string;
  sourcePrefixes: string[];
  chunkSize: number;
  out: string;
  provenance: Record<string, string> | undefined;
  created: string | undefined;
  kid: string | undefined;
  alg: ReleaseAlgorithm | undefined;
  force: boolean;
}

/** Validates arguments; returns the options, or a one-line usage error. */
export function checkUsage(parsed: ReturnType<typeof parse>): SignOptions | string {
  if (parsed.positionals.length !== 1) {
    return `expected exactly one DIR argument, got ${parsed.positionals.length}`;
  }
  const { key, model, version, environment } = parsed;
  const dir = parsed.positionals[0];
  if (dir === undefined) return 'expected exactly one DIR argument';
  for (const [name, value] of Object.entries({ key, model, version, environment })) {
    if (value === undefined || value === '') return `--${name} is required`;
  }
  if (key === undefined || model === undefined || version === undefined || environment === undefined) {
    return '--key, --model, --version and --environment are required';
  }
  const prefixes = parsed['source-prefix'] ?? [];
  if (prefixes.length === 0) return '--source-prefix is required';
  if (!isValidModelName(model)) {
    return `--model must be lowercase [a-z0-9]([a-z0-9._-]*[a-z0-9])? segments joined by "/", got "${model}"`;
  }
  if (!isValidVersion(version))
    return `--version must be 1 to 128 characters of [A-Za-z0-9._+-], got "${version}"`;
  if (!isValidEnvironment(environment)) {
    return `--environment must be 1 to 63 characters of [a-z0-9-], got "${environment}"`;
  }
  const chunkSize = parsed['chunk-size'] === undefined ? DEFAULT_CHUNK_SIZE : parseSize(parsed['chunk-size']);
  if (
    chunkSize === null ||
    chunkSize < MIN_CHUNK_SIZE ||
    chunkSize > MAX_CHUNK_SIZE ||
    !isPowerOfTwo(chunkSize)
  ) {
    return `--chunk-size must be a power of two from 1MiB to 1GiB, got "${parsed['chunk-size']}"`;
  }
  let provenance: Record<string, string> | undefined;
  for (const entry of parsed.provenance ?? []) {
    const equals = entry.indexOf('=');
    if (equals <= 0) return `--provenance must be KEY=VALUE, got "${entry}"`;
    provenance ??= {};
    provenance[entry.slice(0, equals)] = entry.slice(equals + 1);
  }
  if (parsed.created !== undefined && !isRfc3339(parsed.created)) {
    return `--created must be an RFC 3339 date-time, got "${parsed.created}"`;
  }
  if (parsed.alg !== undefined && !isReleaseAlgorithm(parsed.alg)) {
    return `--alg must be ES256, EdDSA, RS256 or PS256, got "${parsed.alg}"`;
  }
  if (parsed.kid === '') return '--kid must not be empty';
  const format = parsed.format ?? 'jws';
  if (format !== 'jws' && format !== 'sigstore') return `--format must be jws or sigstore, got "${format}"`;
  if (parsed['certificate-chain'] !== undefined && format !== 'sigstore') {
    return '--certificate-chain needs --format sigstore';
  }
  if (format === 'sigstore' && (parsed.alg !== undefined || parsed.kid !== undefined)) {
    return '--alg and --kid apply to --format jws only (a bundle signs with the hash that follows the key)';
  }
  return {
    dir,
    key,
    format,
    certificateChain: parsed['certificate-chain'],
    model,
    version,
    environment,
    sourcePrefixes: prefixes.map((prefix) => prefix.replace(/\/+$/, '')),
    chunkSize,
    out: parsed.out ?? '.',
    provenance,
    created: parsed.created,
    kid: parsed.kid,
    alg: parsed.alg as ReleaseAlgorithm | undefined,
    force: parsed.force === true,
  };
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** `8388608`, `8MiB`, `8M`, `1GiB` → bytes (binary units throughout); null when malformed. */
export function parseSize(text: string): number | null {
  const match = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!match) return null;
  const unit = UNITS[(match[2] ?? '').toLowerCase()];
  if (unit === undefined) return null;
  const bytes = Number(match[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : null;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** `<prefix>/<path>`; a bare `file:` prefix joins without a slash so the location stays relative. */
function sourceFor(prefix: string, path: string): string {
  return prefix.endsWith(':') ? `${prefix}${path}` : `${prefix}/${path}`;
}

function isInside(root: string, target: string): boolean {
  const inside = relative(root, target);
  return inside !== '' && inside !== '..' && !inside.startsWith(`..${sep}`) && !isAbsolute(inside);
}

/** Every regular file under `root`, sorted by manifest path. */
async function walk(root: string): Promise<WalkedFile[]> {
  let rootReal: string;
  try {
    rootReal = await realpath(root);
    if (!(await stat(rootReal)).isDirectory()) throw new SignFailure(`${root} is not a folder`);
  } catch (error) {
    if (error instanceof SignFailure) throw error;
    throw new SignFailure(`cannot read ${root}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  }
  const files: WalkedFile[] = [];
  async function visit(folder: string, prefix: string): Promise<void> {
    const entries = await readdir(folder, { withFileTypes: true });
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const absolute = join(folder, entry.name);
      const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      if (entry.isDirectory()) {
        await visit(absolute, path);
      } else if (entry.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(absolute);
        } catch {
          throw new SignFailure(`${path} is a dangling symlink`);
        }
        if (!isInside(rootReal, target)) throw new SignFailure(`${path} is a symlink leaving ${root}`);
        if (!(await stat(target)).isFile()) {
          throw new SignFailure(`${path} is a symlink to a folder or special file; only files are followed`);
        }
        files.push({ path, absolute: target });
      } else if (entry.isFile()) {
        files.push({ path, absolute });
      } else {
        throw new SignFailure(`${path} is not a regular file`);
      }
    }
  }
  await visit(rootReal, '');
  // Code-unit order: the same on every machine and locale, so the same folder signs the same way.
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return files;
}

async function hashFile(file: WalkedFile, chunkSize: number): Promise<Omit<ChunkedFile, 'sources'>> {
  // O_NOFOLLOW: the walk resolved symlinks; a file swapped for a symlink since must not be read.
  const handle = await open(file.absolute, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const before = await handle.stat();
    const digests = await digestFile(handle, chunkSize);
    const after = await handle.stat();
    if (digests.size !== before.size || after.size !== before.size || after.mtimeMs !== before.mtimeMs) {
      throw new SignFailure(`${file.path} changed while it was being hashed`);
    }
    return {
      path: file.path,
      size: digests.size,
      digest: digests.digest,
      chunkSize,
      chunks: digests.chunks ?? [],
    };
  } finally {
    await handle.close();
  }
}

/** Picks the algorithm from the option, the key's `alg`, or its key type. */
function algorithmFor(jwk: JWK, option: ReleaseAlgorithm | undefined, keyFile: string): ReleaseAlgorithm {
  if (option !== undefined) return option;
  if (jwk.alg !== undefined) {
    if (isReleaseAlgorithm(jwk.alg)) return jwk.alg;
    throw new SignFailure(`${keyFile}: expected alg ES256, EdDSA, RS256 or PS256, got "${jwk.alg}"`);
  }
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'RSA') return 'PS256';
  throw new SignFailure(`${keyFile}: cannot sign releases with a ${jwk.kty} ${jwk.crv ?? ''} key`.trimEnd());
}

/** A loaded signing key and the file the release will be written to. */
export interface PreparedRelease {
  out: string;
  /** Signs a manifest (validated first) into the file text and the payload bytes exactly as signed. */
  sign(manifest: Manifest): Promise<{ text: string; payload: Buffer }>;
}

/** The release file name \`sign\` and \`intake\` write: MODEL-VERSION.jws or .sigstore.json. */
export function releaseFileName(model: string, version: string, format: ReleaseFormat): string {
  return `${model.replaceAll('/', '_')}-${version}.${format === 'jws' ? 'jws' : 'sigstore.json'}`;
}

async function loadCertificateChain(file: string): Promise<Buffer[]> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new SignFailure(`cannot read ${file}: ${error.code ?? error}`);
  });
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new SignFailure(`${file}: expected PEM certificates, leaf first`);
  return blocks.map((block) => new X509Certificate(block).raw);
}

/**
 * Loads the key and works out the output file, failing before hashing what
 * may be many GiB, not after: an existing output, an unusable key.
 */
export async function prepareRelease(options: SignOptions): Promise<PreparedRelease> {
  const jwk = await loadSigningKeyFile(options.key);
  const out = resolve(options.out, releaseFileName(options.model, options.version, options.format));
  if (!options.force && (await exists(out)))
    throw new SignFailure(`${out} already exists (use --force to replace it)`);
  if (options.format === 'sigstore') {
    const key = createPrivateKey({ key: jwk, format: 'jwk' });
    const chain =
      options.certificateChain === undefined
        ? undefined
        : await loadCertificateChain(options.certificateChain);
    return {
      out,
      async sign(manifest) {
        validateManifest(manifest);
        const text = signReleaseBundle(manifest, key, chain);
        return { text, payload: Buffer.from(canonicalJson(manifest), 'utf8') };
      },
    };
  }
  const alg = algorithmFor(jwk, options.alg, options.key);
  const kid = options.kid ?? jwk.kid ?? (await calculateJwkThumbprint(jwk, 'sha256'));
  return {
    out,
    async sign(manifest) {
      // signManifest validates the manifest (e.g. a malformed --source-prefix) before signing.
      const jws = await signManifest(manifest, jwk, kid, alg);
      return { text: `${jws}\n`, payload: Buffer.from(jws.split('.')[1] ?? '', 'base64url') };
    },
  };
}

/** The manifest for hashed files, with the options' model, version, environment, sources and provenance. */
export function assembleManifest(
  options: SignOptions,
  files: ReadonlyArray<Omit<ManifestFile, 'sources'>>,
): Manifest {
  const manifest: Manifest = {
    schema: MANIFEST_SCHEMA,
    model: options.model,
    version: options.version,
    environment: options.environment,
    created: options.created ?? new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    files: files.map(
      (file) =>
        ({
          ...file,
          sources: options.sourcePrefixes.map((prefix) => sourceFor(prefix, file.path)),
        }) as ManifestFile,
    ),
  };
  if (options.provenance !== undefined) manifest.provenance = options.provenance;
  return manifest;
}

/** Signs and writes a release atomically; returns the file and the release digest. */
export async function writeRelease(
  prepared: PreparedRelease,
  manifest: Manifest,
  force: boolean,
): Promise<{ file: string; digest: string }> {
  const { text, payload } = await prepared.sign(manifest);
  try {
    await writeFileAtomic(prepared.out, text, 0o644, { overwrite: force });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SignFailure(`${prepared.out} already exists (use --force to replace it)`);
    }
    throw error;
  }
  return { file: prepared.out, digest: sha256Digest(payload) };
}

async function sign(
  options: SignOptions,
): Promise<{ file: string; digest: string; fileCount: number; bytes: number }> {
  const prepared = await prepareRelease(options);
  // `--out` inside DIR: a previous release file there is output, not model content.
  const walked = (await walk(options.dir)).filter((file) => file.absolute !== prepared.out);
  if (walked.length === 0) throw new SignFailure(`${options.dir} holds no files to sign`);
  const files: Array<Omit<ManifestFile, 'sources'>> = [];
  let bytes = 0;
  for (const file of walked) {
    if (!isValidFilePath(file.path)) {
      throw new SignFailure(`${JSON.stringify(file.path)} cannot be a manifest path (backslash or NUL)`);
    }
    const digests = await hashFile(file, options.chunkSize);
    bytes += digests.size;
    files.push(digests);
  }
  const written = await writeRelease(prepared, assembleManifest(options, files), options.force);
  return { ...written, fileCount: files.length, bytes };
}

async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch {
    return false;
  }
}

export const signCommand: Command = createSignCommand();
