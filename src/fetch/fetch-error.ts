import type { ErrorCode } from '../errors.ts';
import { FETCH_EXIT } from './exit-codes.ts';

/**
 * Failure classes of the fetch client. Each maps to one exit code and one
 * retry rule; code branches on `kind` (and on `code` where it must), never
 * on messages.
 */
export type FetchFailureKind =
  | 'usage'
  | 'auth'
  | 'not_found'
  | 'integrity'
  | 'unavailable'
  | 'local'
  | 'unsafe_destination'
  | 'unexpected'
  | 'interrupted';

/**
 * Client-side codes, beside the proxy's `MG_…` codes (src/errors.ts) that
 * are passed through verbatim when the proxy sent one.
 */
export type FetchClientCode =
  | 'FETCH_USAGE'
  | 'FETCH_TOKEN_UNREADABLE'
  | 'FETCH_BREAK_GLASS_UNREADABLE'
  | 'FETCH_CA_UNREADABLE'
  | 'FETCH_NETWORK'
  | 'FETCH_TRUNCATED'
  | 'FETCH_HTTP_STATUS'
  | 'FETCH_RELEASE_DIGEST_MISMATCH'
  | 'FETCH_BAD_MANIFEST'
  | 'FETCH_UNSAFE_PATH'
  | 'FETCH_BAD_RESPONSE'
  | 'FETCH_DIGEST_MISMATCH'
  | 'FETCH_CHUNK_MISMATCH'
  | 'FETCH_SIZE_MISMATCH'
  | 'FETCH_LOCAL_IO'
  | 'FETCH_UNSAFE_DESTINATION'
  | 'FETCH_INTERRUPTED'
  | 'FETCH_PREFETCH_FAILED';

export type FetchErrorCode = FetchClientCode | ErrorCode;

export interface FetchErrorOptions {
  cause?: unknown;
  /** HTTP status of the proxy response, when there was one. */
  status?: number;
  /** Whether another attempt may succeed (network errors, 503, 504, 502 source errors). */
  retryable?: boolean;
  /** Milliseconds the proxy asked us to wait (`Retry-After`). */
  retryAfterMs?: number;
}

export class FetchError extends Error {
  readonly kind: FetchFailureKind;
  readonly code: FetchErrorCode;
  readonly status: number | undefined;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(
    kind: FetchFailureKind,
    code: FetchErrorCode,
    message: string,
    options: FetchErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FetchError';
    this.kind = kind;
    this.code = code;
    this.status = options.status;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export function isFetchError(error: unknown): error is FetchError {
  return error instanceof FetchError;
}

const EXIT_BY_KIND: Record<Exclude<FetchFailureKind, 'interrupted'>, number> = {
  usage: FETCH_EXIT.usage,
  auth: FETCH_EXIT.authRefused,
  not_found: FETCH_EXIT.notFound,
  integrity: FETCH_EXIT.integrity,
  unavailable: FETCH_EXIT.unavailable,
  local: FETCH_EXIT.failure,
  unsafe_destination: FETCH_EXIT.unsafeDestination,
  unexpected: FETCH_EXIT.failure,
};

/** The process exit code for a failure. An interruption exits 128 + the signal number, as a shell would. */
export function exitCodeFor(error: FetchError, signal?: NodeJS.Signals): number {
  if (error.kind === 'interrupted') return signal === 'SIGINT' ? 130 : 143;
  return EXIT_BY_KIND[error.kind];
}

/** Integrity codes the proxy answers before headers (README "HTTP API": 502 when bytes did not verify). */
const PROXY_INTEGRITY_CODES = new Set<string>([
  'MG_DIGEST_MISMATCH',
  'MG_SIZE_MISMATCH',
  'MG_SOURCE_CHANGED',
]);

/**
 * Classifies an error response of the proxy. `code` is the `error.code` of
 * its JSON body when it sent one (a load balancer in between may not).
 */
export function errorFromResponse(
  status: number,
  code: string | undefined,
  message: string | undefined,
  retryAfterMs: number | undefined,
): FetchError {
  const knownCode = (code?.startsWith('MG_') ? code : 'FETCH_HTTP_STATUS') as FetchErrorCode;
  const text = message ?? `the proxy answered HTTP ${status}`;
  const options = (retryable: boolean): FetchErrorOptions => ({
    status,
    retryable,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
  if (status === 401 || status === 403) return new FetchError('auth', knownCode, text, options(false));
  if (status === 404 || status === 409) return new FetchError('not_found', knownCode, text, options(false));
  if (status === 400) return new FetchError('usage', knownCode, text, options(false));
  if (status === 416) return new FetchError('integrity', knownCode, text, options(false));
  if (status === 502 && code !== undefined && PROXY_INTEGRITY_CODES.has(code)) {
    return new FetchError('integrity', knownCode, text, options(false));
  }
  if (status === 502 || status === 503 || status === 504) {
    return new FetchError('unavailable', knownCode, text, options(true));
  }
  if (status >= 500) return new FetchError('unavailable', knownCode, text, options(false));
  return new FetchError('unexpected', knownCode, text, options(false));
}
