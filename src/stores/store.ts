import type { Readable } from 'node:stream';
import type { StoreTimeouts } from '../config/config.types.ts';
import { isModelgateError } from '../errors.ts';

/**
 * The contract every object store implements (file, s3, gcs, azure). The
 * integrity engine is the only caller; it never imports a cloud SDK.
 *
 * Locations are the manifest's `sources` entries, verbatim:
 * `file:relative/path`, `s3://bucket/key`, `gs://bucket/object`,
 * `az://account/container/blob`. Locations are attacker-influenced input
 * (anyone who can write a manifest) and only the digests decide what is
 * accepted, but a store must still refuse a location that escapes its scope.
 *
 * Errors are ModelgateError with these codes:
 * - MG_SOURCE_NOT_FOUND — the object does not exist (404).
 * - MG_SOURCE_CHANGED — the version pin no longer matches (412 / ETag or generation changed).
 * - MG_SOURCE_TIMEOUT — connect timed out.
 * - MG_SOURCE_FAILED — anything else (5xx, access denied, connection refused, malformed location).
 *   When asking again may succeed (throttling, a 500/502/504, a connection
 *   reset or refused before any byte), the error carries a `Transient` as
 *   `details.transient` (see `transientFailure`); the engine retries only those.
 */
export type StoreKind = 'file' | 's3' | 'gcs' | 'azure';

/** What a store knows of an object: its size and an opaque version (ETag, generation, or file identity). */
export interface ObjectVersion {
  size: number;
  version: string;
}

/** Half-open byte range [start, end). */
export interface ByteRange {
  start: number;
  end: number;
}

export interface ReadOptions {
  /** Aborts the request and destroys the stream; the store must release sockets and handles at once. */
  signal: AbortSignal;
  /** A version from an earlier read or stat of this location; when the object no longer has it, fail MG_SOURCE_CHANGED. */
  pin?: string;
}

export interface ReadResult {
  /**
   * The bytes of the range. When the object is shorter than `range.end`, the
   * stream simply ends early (and is empty when `range.start` >= size): the
   * integrity engine, not the store, decides that is a size mismatch. A broken
   * connection surfaces as an 'error' event on the stream.
   */
  stream: Readable;
  /** The object's version as of this read (to pin later reads). */
  version: string;
  /** The object's total size as of this read. */
  size: number;
}

export interface ReadIntoResult {
  bytesRead: number;
  version: string;
  size: number;
}

export interface Store {
  readonly kind: StoreKind;
  /** Timeouts the engine applies to this store's reads (first byte, idle); connect is applied by the store. */
  readonly timeouts: StoreTimeouts;
  stat(location: string, signal: AbortSignal): Promise<ObjectVersion>;
  read(location: string, range: ByteRange, options: ReadOptions): Promise<ReadResult>;
  /**
   * Optional fast path for stores that can fill a caller's buffer directly
   * (the file store: positioned reads, no intermediate buffers to collect).
   * Reads `[range.start, range.end)` into `target` from index 0 and resolves
   * with the count read, fewer when the object ends early. Same errors and
   * pin semantics as `read`.
   */
  readInto?(
    location: string,
    range: ByteRange,
    target: Uint8Array,
    options: ReadOptions,
  ): Promise<ReadIntoResult>;
  /**
   * Readiness: one cheap, authenticated request per scope this store serves —
   * the file store's root folder, or each bucket / container that `locations`
   * (sample manifest sources, one per bucket is enough) name. Resolves when
   * every scope is readable; otherwise throws an Error whose message names the
   * scope and the reason. Must honour `signal` (the caller's timeout).
   */
  probe(locations: readonly string[], signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/**
 * Runs `check` once per distinct scope (bucket, container) of `locations`;
 * locations `scopeOf` rejects are skipped (a malformed source fails its own
 * request, not readiness). All failures are reported together, one per scope.
 */
export async function probeScopes(
  locations: readonly string[],
  scopeOf: (location: string) => string,
  check: (scope: string) => Promise<void>,
): Promise<void> {
  const scopes = new Set<string>();
  for (const location of locations) {
    try {
      scopes.add(scopeOf(location));
    } catch {
      // Malformed: the request for it is refused with its own error.
    }
  }
  const results = await Promise.allSettled([...scopes].map(check));
  const failed = results.flatMap((result, i) =>
    result.status === 'rejected' ? [`${[...scopes][i]}: ${describeProbeFailure(result.reason)}`] : [],
  );
  if (failed.length > 0) throw new Error(failed.join('; '));
}

/** A short reason for a failed probe: HTTP status and error name or code, without a stack. */
export function describeProbeFailure(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const status = (error as { $metadata?: { httpStatusCode?: number }; statusCode?: number }).$metadata
    ?.httpStatusCode;
  const statusCode = status ?? (error as { statusCode?: number }).statusCode;
  const code = (error as { code?: unknown }).code;
  const parts = [
    statusCode === undefined ? undefined : `HTTP ${statusCode}`,
    typeof code === 'string' ? code : error.name !== 'Error' ? error.name : undefined,
    error.message,
  ].filter((part): part is string => part !== undefined && part !== '');
  return [...new Set(parts)].join(' ').slice(0, 300);
}

/** The store kind a location's scheme selects, or undefined for an unknown scheme. */
export function storeKindOf(location: string): StoreKind | undefined {
  if (location.startsWith('file:')) return 'file';
  if (location.startsWith('s3://')) return 's3';
  if (location.startsWith('gs://')) return 'gcs';
  if (location.startsWith('az://')) return 'azure';
  return undefined;
}

/** Why a failed request may succeed when sent again (a fixed set: metric label values). */
export type TransientReason = 'throttled' | 'server_error' | 'connection';

/** A store's verdict that a failure is transient, with the wait the source asked for. */
export interface Transient {
  reason: TransientReason;
  /** From `Retry-After` (seconds or an HTTP date), in milliseconds, when the answer had one. */
  retryAfterMs?: number;
}

/** The transient verdict a store put on an MG_SOURCE_FAILED error, if any. */
export function transientOf(error: unknown): Transient | undefined {
  if (!isModelgateError(error, 'MG_SOURCE_FAILED')) return undefined;
  return error.details.transient as Transient | undefined;
}
