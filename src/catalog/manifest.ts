import { Ajv } from 'ajv';
import {
  DIGEST_PATTERN,
  ENVIRONMENT_PATTERN,
  HEX_PATTERN,
  isValidDigest,
  isValidFilePath,
  isValidModelName,
  isValidVersion,
  MAX_CHUNK_SIZE,
  MAX_ENVIRONMENT_LENGTH,
  MAX_MODEL_LENGTH,
  MAX_VERSION_LENGTH,
  MIN_CHUNK_SIZE,
  MODEL_PATTERN,
  MODEL_RULE_TEXT,
  VERSION_PATTERN,
} from '../rules.ts';
import { dedupeProblems, describeAjvError } from '../schema-problems.ts';
import type { ChunkedFile, Manifest, ManifestFile } from './release.types.ts';

/** One problem in a manifest, located by a path like `files[2].digest`. */
export interface ManifestProblem {
  path: string;
  message: string;
}

/** A release manifest that does not follow docs/releases.md; lists every problem found. */
export class ManifestError extends Error {
  readonly problems: ManifestProblem[];

  constructor(problems: ManifestProblem[]) {
    super(
      `invalid release manifest: ${problems.map((p) => `${p.path || '(root)'}: ${p.message}`).join('; ')}`,
    );
    this.name = 'ManifestError';
    this.problems = problems;
  }
}

export const MANIFEST_SCHEMA = 'modelgate/release/v1';
export { isValidDigest, isValidFilePath, isValidModelName, isValidVersion, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE };

/** RFC 3339 §5.6 `date-time`; field ranges are checked in code. */
const RFC3339_RE =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

const CHUNK_SIZES: number[] = [];
for (let size = MIN_CHUNK_SIZE; size <= MAX_CHUNK_SIZE; size *= 2) CHUNK_SIZES.push(size);

const nonEmptyString = { type: 'string', minLength: 1 } as const;

const manifestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['schema', 'model', 'version', 'environment', 'created', 'files'],
  properties: {
    schema: { const: MANIFEST_SCHEMA, errorText: `must be "${MANIFEST_SCHEMA}"` },
    model: {
      type: 'string',
      maxLength: MAX_MODEL_LENGTH,
      pattern: MODEL_PATTERN,
      errorText: `must be ${MODEL_RULE_TEXT}`,
    },
    version: {
      type: 'string',
      maxLength: MAX_VERSION_LENGTH,
      pattern: VERSION_PATTERN,
      errorText: `must be 1 to ${MAX_VERSION_LENGTH} characters of [A-Za-z0-9._+-]`,
    },
    environment: {
      type: 'string',
      maxLength: MAX_ENVIRONMENT_LENGTH,
      pattern: ENVIRONMENT_PATTERN,
      errorText: `must be 1 to ${MAX_ENVIRONMENT_LENGTH} characters of [a-z0-9-]`,
    },
    created: { type: 'string', errorText: 'must be an RFC 3339 date-time (e.g. 2026-11-25T10:00:00Z)' },
    provenance: {
      type: 'object',
      additionalProperties: { type: 'string', errorText: 'must be a string' },
    },
    parent: {
      type: 'string',
      pattern: DIGEST_PATTERN,
      errorText:
        'must be the release digest (sha256:<64 lowercase hex>) of the release this one was derived from',
    },
    upstream: {
      type: 'object',
      additionalProperties: false,
      required: ['format', 'method', 'identity', 'bundle'],
      properties: {
        format: { const: 'oms/v1.0', errorText: 'must be "oms/v1.0"' },
        method: {
          enum: ['sigstore', 'key', 'certificate'],
          errorText: 'must be sigstore, key or certificate',
        },
        identity: nonEmptyString,
        issuer: nonEmptyString,
        bundle: { type: 'object' },
      },
    },
    files: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['path', 'size', 'digest', 'sources'],
        dependencies: { chunkSize: ['chunks'], chunks: ['chunkSize'] },
        properties: {
          path: nonEmptyString,
          size: {
            type: 'integer',
            minimum: 0,
            maximum: Number.MAX_SAFE_INTEGER,
            errorText: 'must be a non-negative integer no larger than 2^53-1',
          },
          digest: {
            type: 'string',
            pattern: DIGEST_PATTERN,
            errorText: 'must be sha256: followed by 64 lowercase hex',
          },
          chunkSize: {
            enum: CHUNK_SIZES,
            errorText: `must be a power of two from ${MIN_CHUNK_SIZE} (1 MiB) to ${MAX_CHUNK_SIZE} (1 GiB)`,
          },
          chunks: {
            type: 'array',
            items: { type: 'string', pattern: HEX_PATTERN, errorText: 'must be 64 lowercase hex' },
          },
          sources: { type: 'array', minItems: 1, items: nonEmptyString },
        },
      },
    },
  },
} as const;

// verbose: errors carry parentSchema, where `errorText` gives an operator-readable message.
const ajv = new Ajv({ allErrors: true, strict: true, verbose: true });
ajv.addKeyword({ keyword: 'errorText', schemaType: 'string' });
const validateSchema = ajv.compile(manifestSchema);

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

/** True when `value` is an RFC 3339 `date-time` with every field in range. */
export function isRfc3339(value: string): boolean {
  const match = RFC3339_RE.exec(value);
  if (!match) return false;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as number[] as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const daysInMonth = [31, isLeapYear(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  if (month < 1 || month > 12 || day < 1 || day > (daysInMonth[month - 1] ?? 0)) return false;
  // Second 60 is a leap second (RFC 3339 §5.7).
  if (hour > 23 || minute > 59 || second > 60) return false;
  if (match[7] !== undefined && (Number(match[8]) > 23 || Number(match[9]) > 59)) return false;
  return true;
}

const S3_BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const GCS_BUCKET_RE = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
const AZURE_ACCOUNT_RE = /^[a-z0-9]{3,24}$/;
const AZURE_CONTAINER_RE = /^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$/;
// Control characters in an object key are never legitimate in a manifest and confuse logs and URLs.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/**
 * Why a source location is malformed, or null when it is well-formed:
 * `s3://bucket/key`, `gs://bucket/object`, `az://account/container/blob` or
 * `file:relative/path`. Only the shape is checked; locations are untrusted
 * and the digests alone decide which bytes are accepted.
 */
export function describeSourceProblem(location: string): string | null {
  if (CONTROL_RE.test(location)) return 'must not contain control characters';
  if (location.startsWith('file:')) {
    return isValidFilePath(location.slice('file:'.length))
      ? null
      : 'file: path must be relative, /-separated, without empty, "." or ".." segments or backslashes';
  }
  const match = /^(s3|gs|az):\/\/([^/]*)\/(.*)$/.exec(location);
  if (!match) {
    return 'must be s3://bucket/key, gs://bucket/object, az://account/container/blob or file:relative/path';
  }
  const [, scheme, bucket = '', rest = ''] = match;
  switch (scheme) {
    case 's3':
      if (!S3_BUCKET_RE.test(bucket)) return `"${bucket}" is not a valid S3 bucket name`;
      return rest === '' ? 'the S3 object key must not be empty' : null;
    case 'gs':
      if (!GCS_BUCKET_RE.test(bucket)) return `"${bucket}" is not a valid GCS bucket name`;
      return rest === '' ? 'the GCS object name must not be empty' : null;
    default: {
      if (!AZURE_ACCOUNT_RE.test(bucket)) return `"${bucket}" is not a valid Azure storage account name`;
      const slash = rest.indexOf('/');
      const container = slash < 0 ? rest : rest.slice(0, slash);
      if (!AZURE_CONTAINER_RE.test(container)) return `"${container}" is not a valid Azure container name`;
      return slash < 0 || slash === rest.length - 1 ? 'the Azure blob name must not be empty' : null;
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Rules JSON Schema cannot say well: path safety and uniqueness, dates, chunk counts, locations. */
function checkSemantics(value: Record<string, unknown>, problems: ManifestProblem[]): void {
  if (typeof value.version === 'string' && (value.version === '.' || value.version === '..')) {
    problems.push({ path: 'version', message: 'must not be "." or ".."' });
  }
  if (typeof value.created === 'string' && !isRfc3339(value.created)) {
    problems.push({ path: 'created', message: 'must be an RFC 3339 date-time (e.g. 2026-11-25T10:00:00Z)' });
  }
  if (!Array.isArray(value.files)) return;
  const seen = new Map<string, number>();
  value.files.forEach((file: unknown, i: number) => {
    if (!isObject(file)) return;
    const at = `files[${i}]`;
    if (typeof file.path === 'string' && file.path !== '') {
      if (!isValidFilePath(file.path)) {
        problems.push({
          path: `${at}.path`,
          message:
            'must be relative and /-separated, without empty, "." or ".." segments, backslashes or NUL',
        });
      }
      const first = seen.get(file.path);
      if (first !== undefined) {
        problems.push({ path: `${at}.path`, message: `duplicates files[${first}].path "${file.path}"` });
      } else {
        seen.set(file.path, i);
      }
    }
    const { size, chunkSize, chunks } = file;
    if (
      Number.isSafeInteger(size) &&
      typeof chunkSize === 'number' &&
      CHUNK_SIZES.includes(chunkSize) &&
      Array.isArray(chunks)
    ) {
      // A zero-byte file has no slices, so zero chunks (not one chunk of the empty string).
      const expected = Math.ceil((size as number) / chunkSize);
      if (chunks.length !== expected) {
        problems.push({
          path: `${at}.chunks`,
          message: `expected ${expected} chunks (ceil(size / chunkSize)), got ${chunks.length}`,
        });
      }
    }
    if (Array.isArray(file.sources)) {
      file.sources.forEach((source: unknown, j: number) => {
        if (typeof source !== 'string' || source === '') return;
        const problem = describeSourceProblem(source);
        if (problem !== null) problems.push({ path: `${at}.sources[${j}]`, message: problem });
      });
    }
  });
}

/** True for a chunk-mode file; narrows the union. The schema guarantees `chunkSize` and `chunks` come together. */
export function isChunked(file: ManifestFile): file is ChunkedFile {
  return file.chunks !== undefined;
}

/**
 * Validates a parsed release manifest against docs/releases.md and returns it typed.
 * Throws ManifestError listing every problem with its path. Unknown keys are
 * problems: a signed document must not carry fields the proxy would ignore.
 * A zero-byte file in chunk mode has `chunks: []`.
 */
export function validateManifest(value: unknown): Manifest {
  const problems: ManifestProblem[] = [];
  if (!validateSchema(value)) {
    for (const error of validateSchema.errors ?? []) problems.push(describeAjvError(error));
  }
  if (isObject(value)) checkSemantics(value, problems);
  if (problems.length > 0) throw new ManifestError(dedupeProblems(problems));
  return value as Manifest;
}
