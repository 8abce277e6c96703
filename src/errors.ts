/**
 * One error type with stable codes. Code branches on `code`, never on messages.
 * Every code has its HTTP status (README "HTTP API") and the `outcome` label it is counted
 * under in `modelgate_requests_total` (docs/metrics.md). The README documents each code;
 * test/errors.test.ts fails when a code lacks a status or a README row.
 */

export type Outcome =
  | 'served'
  | 'not_modified'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'bad_request'
  | 'integrity_failure'
  | 'source_error'
  | 'client_aborted'
  | 'unavailable';

interface CodeInfo {
  readonly status: number;
  readonly outcome: Outcome;
  readonly description: string;
}

function code(status: number, outcome: Outcome, description: string): CodeInfo {
  return { status, outcome, description };
}

export const ERROR_CODES = {
  // 400 — malformed input (attacker-controlled URL, headers)
  MG_BAD_REQUEST: code(400, 'bad_request', 'The request is malformed (method, header or URL shape).'),
  MG_BAD_REFERENCE: code(400, 'bad_request', 'The model name or release reference is malformed.'),
  MG_BAD_PATH: code(
    400,
    'bad_request',
    'The file path is malformed or tries to leave the release (`..`, `%2f`, `\\`, NUL).',
  ),
  MG_BAD_RANGE: code(400, 'bad_request', 'The Range header is malformed or asks for more than one range.'),
  MG_ROUTE_NOT_FOUND: code(404, 'not_found', 'No such endpoint.'),
  MG_PREFETCH_NOT_STARTED: code(
    404,
    'not_found',
    '`GET …/prefetch`: no prefetch of this release was started (`POST` the same path first).',
  ),
  MG_CACHE_NOT_CONFIGURED: code(
    409,
    'bad_request',
    '`…/prefetch`: this proxy has no `cache:` configured, so there is nothing to warm.',
  ),
  MG_ADMISSION_REVIEW_MALFORMED: code(
    400,
    'bad_request',
    'The admission webhook got a body that is not an `admission.k8s.io/v1` AdmissionReview of a Pod (or is too large).',
  ),

  // 401 — authentication; always with WWW-Authenticate: Bearer error="invalid_token"
  MG_TOKEN_MISSING: code(401, 'unauthenticated', 'No `Authorization: Bearer` header, or more than one.'),
  MG_TOKEN_MALFORMED: code(
    401,
    'unauthenticated',
    'The token is not a well-formed JWS/JWT, or is longer than 16 KiB.',
  ),
  MG_TOKEN_EXPIRED: code(
    401,
    'unauthenticated',
    'The token `exp` is in the past (beyond the clock tolerance).',
  ),
  MG_TOKEN_NOT_YET_VALID: code(
    401,
    'unauthenticated',
    'The token `nbf` or `iat` is in the future (beyond the clock tolerance).',
  ),
  MG_TOKEN_LIFETIME_TOO_LONG: code(
    401,
    'unauthenticated',
    '`exp - iat` exceeds the issuer `maxTokenLifetimeSeconds`.',
  ),
  MG_TOKEN_CLAIM_MISSING: code(
    401,
    'unauthenticated',
    'A required claim (`exp`, `iss`, `sub`, `aud`) is missing or has the wrong type.',
  ),
  MG_TOKEN_AUDIENCE: code(401, 'unauthenticated', 'The token `aud` contains none of the issuer audiences.'),
  MG_TOKEN_ISSUER_UNKNOWN: code(401, 'unauthenticated', 'The token `iss` matches no configured issuer.'),
  MG_TOKEN_KEY_UNKNOWN: code(
    401,
    'unauthenticated',
    'The token `kid` is not in the issuer key set, even after a re-fetch.',
  ),
  MG_TOKEN_SIGNATURE_INVALID: code(401, 'unauthenticated', 'The token signature does not verify.'),
  MG_TOKEN_ALGORITHM_NOT_ALLOWED: code(
    401,
    'unauthenticated',
    'The token `alg` is not in the issuer allow-list (`none` and HS* never are).',
  ),
  MG_TOKEN_CRIT_UNSUPPORTED: code(
    401,
    'unauthenticated',
    'The token header has a `crit` list: modelgate understands no JWS extension (RFC 7515 §4.1.11).',
  ),

  // 403 — identity known, access refused
  MG_IDENTITY_UNMAPPED: code(
    403,
    'forbidden',
    'The token verified but matches no configured service account.',
  ),
  MG_NOT_GRANTED: code(
    403,
    'forbidden',
    'The service account has no grant for this model in this environment (also returned for models that do not exist).',
  ),
  MG_DIGEST_REF_REQUIRED: code(
    403,
    'forbidden',
    'The environment only serves releases referenced by digest (`digestRefsOnly`).',
  ),
  MG_SIGNER_UNTRUSTED: code(
    403,
    'forbidden',
    'The release is signed by a signer not trusted for its environment (enforce mode).',
  ),
  MG_RELEASE_UNSIGNED: code(
    403,
    'forbidden',
    'The release manifest is unsigned; only audit-mode environments or break-glass may serve it.',
  ),
  MG_ATTESTATION_MISSING: code(
    403,
    'forbidden',
    'The environment requires an attestation the release lacks, or has only from an attestor not listed for it (enforce mode).',
  ),
  MG_ATTESTATION_CONDITION: code(
    403,
    'forbidden',
    'A required attestation is present but fails a configured condition (enforce mode).',
  ),
  MG_LINEAGE_BROKEN: code(
    403,
    'forbidden',
    'The release derives from a parent it cannot prove: no provenance naming the parent, parent missing, inadmissible or in a cycle (enforce mode).',
  ),
  MG_BREAK_GLASS_MALFORMED: code(
    403,
    'forbidden',
    'The `Modelgate-Break-Glass` header is not a well-formed token, or lacks a required claim.',
  ),
  MG_BREAK_GLASS_SIGNATURE: code(
    403,
    'forbidden',
    'The break-glass token is not signed by a break-glass key.',
  ),
  MG_BREAK_GLASS_EXPIRED: code(403, 'forbidden', 'The break-glass token has expired or is not yet valid.'),
  MG_BREAK_GLASS_TTL: code(
    403,
    'forbidden',
    'The break-glass token lifetime `exp - iat` exceeds `breakGlass.maxTtlSeconds`.',
  ),
  MG_BREAK_GLASS_INCIDENT: code(
    403,
    'forbidden',
    'The break-glass `incident` does not match `breakGlass.incidentPattern`.',
  ),
  MG_BREAK_GLASS_ACCOUNT: code(
    403,
    'forbidden',
    "The break-glass `sub` is not the caller's service account.",
  ),
  MG_BREAK_GLASS_MODEL: code(403, 'forbidden', 'The break-glass `model` is not the requested model.'),
  MG_BREAK_GLASS_RELEASE: code(
    403,
    'forbidden',
    'The break-glass `release` is not the requested release digest.',
  ),
  MG_ENVIRONMENT_MISMATCH: code(
    403,
    'forbidden',
    'Admission: the release was made for another environment than the namespace it is deployed to.',
  ),
  MG_MODEL_REFERENCE_REQUIRED: code(
    403,
    'forbidden',
    'Admission: `admission.requireModels` is on and the Pod references no model.',
  ),
  MG_BREAK_GLASS_DISABLED: code(
    403,
    'forbidden',
    'A break-glass token was sent but no `breakGlass` trust root is configured.',
  ),

  // 404 / 409 / 416
  MG_MODEL_NOT_FOUND: code(404, 'not_found', 'No release of this model is in the catalog.'),
  MG_RELEASE_NOT_FOUND: code(404, 'not_found', 'No such version or release digest for this model.'),
  MG_FILE_NOT_FOUND: code(404, 'not_found', 'The release lists no such file.'),
  MG_BLOB_NOT_FOUND: code(
    404,
    'not_found',
    'No release of this model that the caller may read lists a file with this digest.',
  ),
  MG_RELEASE_CONFLICT: code(
    409,
    'not_found',
    'Two different manifests claim this model and version; resolve by digest or remove one.',
  ),
  MG_RANGE_NOT_SATISFIABLE: code(416, 'bad_request', 'The range lies outside the file.'),

  // 502 / 504 — the source or its bytes failed; the proxy fails closed
  MG_DIGEST_MISMATCH: code(
    502,
    'integrity_failure',
    'The bytes from the source do not match the manifest digest (file or chunk).',
  ),
  MG_SIZE_MISMATCH: code(
    502,
    'integrity_failure',
    'The source returned fewer or more bytes than the manifest size.',
  ),
  MG_SOURCE_CHANGED: code(
    502,
    'integrity_failure',
    'The source object changed between reads (version pin failed).',
  ),
  MG_SOURCE_NOT_FOUND: code(502, 'source_error', 'No source location holds the object.'),
  MG_SOURCE_FAILED: code(
    502,
    'source_error',
    'Every source location failed (connection, 5xx, access denied).',
  ),
  MG_SOURCE_TIMEOUT: code(504, 'source_error', 'The source did not connect, answer or send data in time.'),

  // 503 — cannot verify now; never "allow"
  MG_ISSUER_KEYS_UNAVAILABLE: code(
    503,
    'unavailable',
    'The issuer keys cannot be fetched and none cached matches the token.',
  ),
  MG_OVERLOADED: code(503, 'unavailable', 'Too many transfers in flight; retry after `Retry-After` seconds.'),
  MG_NOT_READY: code(503, 'unavailable', 'The proxy is starting or shutting down.'),
  MG_INTERNAL: code(500, 'unavailable', 'An unexpected internal error; the request was refused.'),
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ModelgateErrorOptions {
  cause?: unknown;
  /** Extra fields for logs (never sent to the client). */
  details?: Record<string, unknown>;
  /** Extra response headers (e.g. Retry-After). */
  headers?: Record<string, string>;
}

export class ModelgateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly outcome: Outcome;
  readonly details: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message: string, options: ModelgateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ModelgateError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.outcome = ERROR_CODES[code].outcome;
    this.details = options.details ?? {};
    this.headers = options.headers ?? {};
  }
}

export function isModelgateError(error: unknown, code?: ErrorCode): error is ModelgateError {
  return error instanceof ModelgateError && (code === undefined || error.code === code);
}

/** Turns anything thrown into a ModelgateError, keeping the original as `cause`. */
export function toModelgateError(error: unknown): ModelgateError {
  if (error instanceof ModelgateError) return error;
  return new ModelgateError('MG_INTERNAL', 'internal error', { cause: error });
}

/** JSON body of an error response (README "HTTP API"). Never includes details or causes. */
export function errorBody(error: ModelgateError): string {
  return JSON.stringify({ error: { code: error.code, message: error.message } });
}
