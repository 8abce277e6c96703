/**
 * OpenSSF Model Signing (OMS) v1.0 (docs/trust.md "OMS"): the signed in-toto
 * statement, and a model folder (or single file) checked against it. The
 * signature itself is checked by a TrustVerifier; this module only reads
 * what a verified signature vouches for.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, realpath, stat } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { DigestAccumulator, type FileDigests } from '../catalog/file-digest.ts';
import { parseBundle } from './bundle.ts';
import { verifyWithAny } from './verifier.ts';
import type { TrustVerifier, VerifiedSignature, VerifyOptions } from './verifier.types.ts';

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
export const OMS_PREDICATE_TYPE = 'https://model_signing/signature/v1.0';
/** Paths the reference tool leaves out by default (its `--ignore_git_paths`), at the model's top level. */
const GIT_PATHS = ['.git', '.github', '.gitattributes', '.gitignore'];

/** One signed resource: a file (`files`) or a byte range `path:start:end` of one (`shards`). */
export interface OmsResource {
  name: string;
  path: string;
  /** Byte range for shards (end exclusive); null for a whole file. */
  range: { start: number; end: number } | null;
  /** Lowercase hex SHA-256. */
  digest: string;
}

export interface OmsStatement {
  subjectName: string;
  method: 'files' | 'shards';
  allowSymlinks: boolean;
  resources: OmsResource[];
}

/** The statement is not a valid OMS v1.0 statement (exit 3: what was signed is not what OMS says). */
export class OmsStatementError extends Error {
  readonly kind: 'invalid' | 'unsupported';

  constructor(kind: 'invalid' | 'unsupported', message: string) {
    super(message);
    this.name = 'OmsStatementError';
    this.kind = kind;
  }
}

/** Files do not match the signed digests (exit 4). Lists every problem found. */
export class OmsMismatchError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(`files do not match the signature: ${problems.join('; ')}`);
    this.name = 'OmsMismatchError';
    this.problems = problems;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

const HEX64_RE = /^[0-9a-f]{64}$/;
const SHARD_RE = /^(.*):(\d+):(\d+)$/;

function parseResource(value: unknown, method: 'files' | 'shards', i: number): OmsResource {
  if (!isObject(value) || typeof value.name !== 'string' || value.name === '') {
    throw new OmsStatementError('invalid', `predicate.resources[${i}].name must be a non-empty string`);
  }
  if (value.algorithm !== 'sha256') {
    throw new OmsStatementError(
      'unsupported',
      `resource ${value.name}: algorithm ${JSON.stringify(value.algorithm)} is not supported; only sha256 is`,
    );
  }
  if (typeof value.digest !== 'string' || !HEX64_RE.test(value.digest)) {
    throw new OmsStatementError('invalid', `resource ${value.name}: digest must be 64 lowercase hex`);
  }
  if (method === 'files') return { name: value.name, path: value.name, range: null, digest: value.digest };
  const shard = SHARD_RE.exec(value.name);
  const start = Number(shard?.[2]);
  const end = Number(shard?.[3]);
  if (shard === null || !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) {
    throw new OmsStatementError('invalid', `shard ${value.name} must be path:start:end with start <= end`);
  }
  return { name: value.name, path: shard[1] ?? '', range: { start, end }, digest: value.digest };
}

/** Reads and checks the in-toto statement of a verified OMS signature. Throws OmsStatementError. */
export function parseOmsStatement(verified: VerifiedSignature): OmsStatement {
  if (verified.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw new OmsStatementError(
      'invalid',
      `expected payloadType ${IN_TOTO_PAYLOAD_TYPE}, got ${verified.payloadType}`,
    );
  }
  let statement: unknown;
  try {
    statement = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(verified.payload));
  } catch (error) {
    throw new OmsStatementError('invalid', `statement is not UTF-8 JSON: ${(error as Error).message}`);
  }
  if (!isObject(statement) || statement._type !== IN_TOTO_STATEMENT_V1) {
    throw new OmsStatementError('invalid', `expected an in-toto ${IN_TOTO_STATEMENT_V1} statement`);
  }
  if (statement.predicateType !== OMS_PREDICATE_TYPE) {
    throw new OmsStatementError(
      'unsupported',
      `expected predicateType ${OMS_PREDICATE_TYPE}, got ${JSON.stringify(statement.predicateType)}`,
    );
  }
  const predicate = isObject(statement.predicate) ? statement.predicate : {};
  const serialization = isObject(predicate.serialization) ? predicate.serialization : {};
  if (serialization.hash_type !== 'sha256') {
    throw new OmsStatementError(
      'unsupported',
      `hash_type ${JSON.stringify(serialization.hash_type)} is not supported; only sha256 is`,
    );
  }
  const { method } = serialization;
  if (method !== 'files' && method !== 'shards') {
    throw new OmsStatementError(
      'unsupported',
      `serialization method ${JSON.stringify(method)} is not supported (files, shards)`,
    );
  }
  if (!Array.isArray(predicate.resources) || predicate.resources.length === 0) {
    throw new OmsStatementError('invalid', 'predicate.resources must be a non-empty array');
  }
  const resources = predicate.resources.map((resource: unknown, i: number) =>
    parseResource(resource, method, i),
  );
  const subject = Array.isArray(statement.subject) ? statement.subject[0] : undefined;
  const subjectDigest = isObject(subject) && isObject(subject.digest) ? subject.digest.sha256 : undefined;
  // The subject digest is what transparency logs and policy engines see; it must commit to the resources.
  const expected = createHash('sha256');
  for (const resource of resources) expected.update(Buffer.from(resource.digest, 'hex'));
  if (subjectDigest !== expected.digest('hex')) {
    throw new OmsStatementError(
      'invalid',
      'subject[0].digest.sha256 is not the SHA-256 of the resource digests',
    );
  }
  const names = new Set(resources.map((resource) => resource.name));
  if (names.size !== resources.length) throw new OmsStatementError('invalid', 'a resource is listed twice');
  return {
    subjectName: isObject(subject) && typeof subject.name === 'string' ? subject.name : '',
    method,
    allowSymlinks: serialization.allow_symlinks === true,
    resources,
  };
}

/** A file of the model that the statement vouches for, with the digests a release manifest needs. */
export interface VerifiedModelFile {
  /** `/`-separated path relative to the model folder (the OMS resource name). */
  path: string;
  absolute: string;
  digests: FileDigests;
}

export interface TreeOptions {
  /** Absolute paths not to check: the signature file and `--ignore-path`s. */
  ignore: readonly string[];
  /** Chunk size for the returned digests; null for whole-file digests only. */
  chunkSize: number | null;
}

interface FoundFile {
  path: string;
  absolute: string;
}

function isUnder(target: string, ignored: string): boolean {
  return target === ignored || target.startsWith(ignored.endsWith(sep) ? ignored : `${ignored}${sep}`);
}

async function walkModel(
  root: string,
  ignore: readonly string[],
  allowSymlinks: boolean,
  problems: string[],
): Promise<FoundFile[]> {
  const rootReal = await realpath(root);
  const found: FoundFile[] = [];
  async function visit(folder: string, prefix: string): Promise<void> {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const absolute = join(folder, entry.name);
      const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      if (ignore.some((ignored) => isUnder(absolute, ignored))) continue;
      if (prefix === '' && GIT_PATHS.includes(entry.name)) continue;
      if (entry.isDirectory()) {
        await visit(absolute, path);
      } else if (entry.isSymbolicLink()) {
        const target = await realpath(absolute).catch(() => null);
        const inside =
          target !== null &&
          !relative(rootReal, target).startsWith('..') &&
          !isAbsolute(relative(rootReal, target));
        if (!allowSymlinks || target === null || !inside || !(await stat(target)).isFile()) {
          problems.push(`symlink not allowed: ${path}`);
        } else {
          found.push({ path, absolute: target });
        }
      } else if (entry.isFile()) {
        found.push({ path, absolute });
      } else {
        problems.push(`not a regular file: ${path}`);
      }
    }
  }
  await visit(root, '');
  return found;
}

/** One pass over a file: manifest digests plus the SHA-256 of each requested byte range. */
async function hashModelFile(
  file: FoundFile,
  chunkSize: number | null,
  ranges: ReadonlyArray<{ start: number; end: number }>,
): Promise<{ digests: FileDigests; rangeDigests: string[] }> {
  const handle = await open(file.absolute, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const accumulator = new DigestAccumulator(chunkSize);
    const hashes: Hash[] = ranges.map(() => createHash('sha256'));
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    let position = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      const block = buffer.subarray(0, bytesRead);
      accumulator.update(block);
      ranges.forEach((range, i) => {
        const from = Math.max(range.start, position);
        const to = Math.min(range.end, position + bytesRead);
        if (from < to) hashes[i]?.update(block.subarray(from - position, to - position));
      });
      position += bytesRead;
    }
    return { digests: accumulator.finish(), rangeDigests: hashes.map((hash) => hash.digest('hex')) };
  } finally {
    await handle.close();
  }
}

function checkShardCoverage(path: string, shards: OmsResource[], size: number, problems: string[]): void {
  const sorted = shards.map((shard) => shard.range ?? { start: 0, end: 0 }).sort((a, b) => a.start - b.start);
  let covered = 0;
  for (const range of sorted) {
    if (range.start !== covered) break;
    covered = range.end;
  }
  if (covered !== size)
    problems.push(`changed: ${path} (the signed shards cover ${covered} of ${size} bytes)`);
}

/**
 * Checks `target` (a folder, or a single file) against the statement: every
 * listed file present with the signed digest, nothing unlisted besides the
 * ignored paths. Returns the verified files sorted by path; throws
 * OmsMismatchError listing every problem.
 */
export async function verifyModelTree(
  statement: OmsStatement,
  target: string,
  options: TreeOptions,
): Promise<VerifiedModelFile[]> {
  const problems: string[] = [];
  const root = resolve(target);
  const single = (await lstat(root)).isFile();
  const found = single
    ? [{ path: basename(root), absolute: root }]
    : await walkModel(
        root,
        options.ignore.map((path) => resolve(path)),
        statement.allowSymlinks,
        problems,
      );
  const byPath = new Map<string, OmsResource[]>();
  for (const resource of statement.resources)
    byPath.set(resource.path, [...(byPath.get(resource.path) ?? []), resource]);

  const verified: VerifiedModelFile[] = [];
  for (const file of found) {
    const resources = byPath.get(file.path);
    if (resources === undefined) {
      problems.push(`unlisted: ${file.path}`);
      continue;
    }
    byPath.delete(file.path);
    const ranges = resources.map((resource) => resource.range ?? { start: 0, end: Number.MAX_SAFE_INTEGER });
    const { digests, rangeDigests } = await hashModelFile(file, options.chunkSize, ranges);
    const bad = resources.filter((resource, i) => rangeDigests[i] !== resource.digest);
    if (bad.length > 0) problems.push(`changed: ${bad.map((resource) => resource.name).join(', ')}`);
    else if (statement.method === 'shards') checkShardCoverage(file.path, resources, digests.size, problems);
    verified.push({ path: file.path, absolute: file.absolute, digests });
  }
  for (const path of byPath.keys()) problems.push(`missing: ${path}`);
  if (problems.length > 0) throw new OmsMismatchError(problems);
  verified.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return verified;
}

/** An OMS signature that verified, with its statement. */
export interface VerifiedOms {
  signature: VerifiedSignature;
  statement: OmsStatement;
  /** The bundle JSON as read (kept as `upstream.bundle` evidence). */
  bundle: Record<string, unknown>;
}

/**
 * Verifies an OMS bundle (the bytes of `model.sig`) against trusted signers
 * and reads its statement. Throws TrustRefusedError (signature, key, chain,
 * identity) or OmsStatementError.
 */
export async function verifyOmsBundle(
  bytes: Uint8Array,
  verifiers: readonly TrustVerifier[],
  options: VerifyOptions = {},
): Promise<VerifiedOms> {
  const bundle = parseBundle(bytes);
  const signature = await verifyWithAny(verifiers, { kind: 'bundle', bundle }, options);
  return { signature, statement: parseOmsStatement(signature), bundle: bundle.json };
}
