import { setTimeout as sleep } from 'node:timers/promises';
import type { ManifestFile } from '../catalog/release.types.ts';
import type { TransferConfig } from '../config/config.types.ts';
import { isModelgateError, ModelgateError } from '../errors.ts';
import { transientTransport } from '../stores/cloud-http.ts';
import {
  type ByteRange,
  type ReadResult,
  type Store,
  type StoreKind,
  type TransientReason,
  transientOf,
} from '../stores/store.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';

/** What the engine needs of the configured stores. */
export interface StoreLookup {
  forLocation(location: string): Store | undefined;
}

/**
 * One transfer's view of a file's sources: mirrors tried in order, version
 * pins per location (so a resumed read sees the same object or fails), and
 * the last location that worked (later pieces start there).
 */
export interface SourceSession<F extends ManifestFile = ManifestFile> {
  readonly file: F;
  readonly stores: StoreLookup;
  readonly transfer: TransferConfig;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly pins: Map<string, string>;
  preferred: number;
}

export function createSourceSession<F extends ManifestFile>(
  file: F,
  deps: { stores: StoreLookup; transfer: TransferConfig; metrics: Metrics; logger: Logger },
): SourceSession<F> {
  return { file, ...deps, pins: new Map(), preferred: 0 };
}

type SourceOutcome = 'ok' | 'not_found' | 'changed' | 'timeout' | 'error';

function outcomeOf(error: unknown): SourceOutcome {
  if (isModelgateError(error, 'MG_SOURCE_NOT_FOUND')) return 'not_found';
  if (isModelgateError(error, 'MG_SOURCE_CHANGED')) return 'changed';
  if (isModelgateError(error, 'MG_SOURCE_TIMEOUT')) return 'timeout';
  return 'error';
}

/** Raised inside a read when the source broke after sending some bytes (retry the same location). */
class MidStreamError extends Error {
  override readonly cause: unknown;
  constructor(cause: unknown) {
    super('source stream broke mid-read');
    this.cause = cause;
  }
}

/**
 * Watches one source read: aborts it when the first byte takes longer than
 * `firstByteSeconds` or the stream goes quiet for `idleSeconds`.
 */
function watchdog(store: Store, parent: AbortSignal) {
  const controller = new AbortController();
  const onParentAbort = () => controller.abort(parent.reason);
  parent.addEventListener('abort', onParentAbort, { once: true });
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = (seconds: number) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new ModelgateError('MG_SOURCE_TIMEOUT', `source sent nothing for ${seconds}s`));
    }, seconds * 1000);
  };
  arm(store.timeouts.firstByteSeconds);
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    data: () => arm(store.timeouts.idleSeconds),
    done: () => {
      clearTimeout(timer);
      parent.removeEventListener('abort', onParentAbort);
    },
  };
}

export interface PieceSink {
  /**
   * Where bytes from `resumeOffset()` on may be written directly, for stores
   * with `readInto` (no intermediate buffers). `onDirect` then reports the count.
   */
  target?: Uint8Array;
  onDirect?(bytesRead: number, store: StoreKind): void;
  /** Called with each buffer as it arrives, in order, from offset `range.start + received`. */
  onData(buffer: Buffer, offset: number, store: StoreKind): void | Promise<void>;
  /** A retry restarts the piece from `offset` (whole-file mode resumes; chunk mode restarts the chunk). */
  resumeOffset(): number;
}

/** Why a piece is read again from the same location (the `reason` of `modelgate_source_retries_total`). */
export type RetryReason = TransientReason | 'timeout';

/**
 * Whether a failed attempt is worth sending again to the same location: a
 * stream that broke or stalled after bytes arrived (`connection`, `timeout`),
 * or an answer the store judged transient (throttling, 500/502/504, a
 * connection reset or refused before the first byte). Anything else — 404,
 * 403, a broken pin, a timeout before the first byte — moves on.
 */
function retryableOf(error: unknown): { reason: RetryReason; retryAfterMs?: number } | undefined {
  if (error instanceof MidStreamError) {
    return { reason: isModelgateError(error.cause, 'MG_SOURCE_TIMEOUT') ? 'timeout' : 'connection' };
  }
  return transientOf(error);
}

/**
 * The wait before retry number `retry` (0-based): full jitter — a random
 * wait below `retryBackoffMs × 2^retry` — raised to the source's
 * `Retry-After`, and capped at `retryBackoffMaxMs`.
 */
export function retryDelayMs(transfer: TransferConfig, retry: number, retryAfterMs?: number): number {
  const ceiling = Math.min(transfer.retryBackoffMaxMs, transfer.retryBackoffMs * 2 ** retry);
  const jittered = Math.random() * ceiling;
  return Math.min(transfer.retryBackoffMaxMs, Math.max(jittered, retryAfterMs ?? 0));
}

/**
 * Reads `[range.start, range.end)` of the file from its sources into `sink`,
 * with retries, mirror failover and resume:
 * - a transient failure — throttling (429, 503, `SlowDown`, `ServerBusy`…),
 *   a 500/502/504, a connection reset or refused before the first byte, or a
 *   stream that breaks or stalls after bytes arrived — is retried on the same
 *   location, pinned to the version first seen, from `sink.resumeOffset()`,
 *   after a jittered exponential backoff that honours `Retry-After`, at most
 *   `transfer.retries` times per location and while the piece has been
 *   failing for less than `transfer.retryBudgetSeconds`;
 * - any other failure (404, 403, a timeout before the first byte), or one
 *   whose retries are spent, moves on to the next source location;
 * - a broken pin (`MG_SOURCE_CHANGED`) is an integrity failure: never retried.
 * Returns the store kind that delivered the bytes. Bytes beyond `range.end`
 * are not read: the caller asks for one byte more than the file's size on the
 * final piece to prove the object ends where the manifest says.
 */
export async function readFromSources(
  session: SourceSession,
  range: ByteRange,
  sink: PieceSink,
  signal: AbortSignal,
): Promise<StoreKind> {
  const { sources } = session.file;
  const { transfer } = session;
  let lastError: unknown;
  let allNotFound = true;
  // When the piece started failing; bytes arriving restart the clock (a long whole-file read is not failing).
  let failingSince: number | undefined;
  // Read once: concurrent pieces move `preferred`, and re-reading it mid-loop would skip mirrors.
  const first = session.preferred;
  for (let step = 0; step < sources.length; step++) {
    const index = (first + step) % sources.length;
    const location = sources[index] as string;
    const store = session.stores.forLocation(location);
    if (!store) {
      lastError = new ModelgateError(
        'MG_SOURCE_FAILED',
        `no store is configured for ${location.split(':')[0]}: sources`,
      );
      allNotFound = false;
      continue;
    }
    for (let retry = 0; ; retry++) {
      signal.throwIfAborted();
      try {
        await readOnce(
          session,
          store,
          location,
          { start: sink.resumeOffset(), end: range.end },
          sink,
          signal,
        );
        session.preferred = index;
        return store.kind;
      } catch (error) {
        if (signal.aborted) throw signal.reason ?? error;
        const cause = error instanceof MidStreamError ? error.cause : error;
        session.metrics.sourceRequests.inc({ store: store.kind, outcome: outcomeOf(cause) });
        if (isModelgateError(cause, 'MG_SOURCE_CHANGED')) throw cause;
        lastError = cause;
        if (!isModelgateError(cause, 'MG_SOURCE_NOT_FOUND')) allNotFound = false;
        const now = performance.now();
        failingSince = error instanceof MidStreamError ? now : (failingSince ?? now);
        const retryable = retry < transfer.retries ? retryableOf(error) : undefined;
        const delay =
          retryable === undefined ? undefined : retryDelayMs(transfer, retry, retryable.retryAfterMs);
        const retrying =
          retryable !== undefined &&
          delay !== undefined &&
          now + delay - failingSince <= transfer.retryBudgetSeconds * 1000;
        session.logger.warn(
          {
            event: 'source_error',
            location,
            store: store.kind,
            code: (cause as ModelgateError).code,
            err: String(cause),
            ...(retrying
              ? { retry: retry + 1, retryReason: retryable.reason, retryInMs: Math.round(delay) }
              : {}),
          },
          retrying ? 'source read failed, retrying' : 'source read failed',
        );
        if (!retrying) break;
        session.metrics.sourceRetries.inc({ store: store.kind, reason: retryable.reason });
        // Like every other wait here, a caller going away ends it with the caller's reason.
        await sleep(delay, undefined, { signal }).catch((error: unknown) => {
          throw signal.reason ?? error;
        });
      }
    }
  }
  if (isModelgateError(lastError) && (allNotFound || lastError.code === 'MG_SOURCE_TIMEOUT')) throw lastError;
  throw new ModelgateError('MG_SOURCE_FAILED', `every source of ${session.file.path} failed`, {
    cause: lastError,
  });
}

async function readOnce(
  session: SourceSession,
  store: Store,
  location: string,
  range: ByteRange,
  sink: PieceSink,
  signal: AbortSignal,
): Promise<void> {
  const guard = watchdog(store, signal);
  let received = 0;
  let result: ReadResult | undefined;
  try {
    const pin = session.pins.get(location);
    if (store.readInto && sink.target && sink.onDirect) {
      const options = pin === undefined ? { signal: guard.signal } : { signal: guard.signal, pin };
      const direct = await store.readInto(location, range, sink.target, options);
      if (pin === undefined) session.pins.set(location, direct.version);
      received = direct.bytesRead;
      sink.onDirect(direct.bytesRead, store.kind);
      session.metrics.sourceRequests.inc({ store: store.kind, outcome: 'ok' });
      return;
    }
    result = await store.read(
      location,
      range,
      pin === undefined ? { signal: guard.signal } : { signal: guard.signal, pin },
    );
    if (pin === undefined) session.pins.set(location, result.version);
    for await (const buffer of result.stream as AsyncIterable<Buffer>) {
      guard.data();
      const offset = range.start + received;
      received += buffer.length;
      await sink.onData(buffer, offset, store.kind);
    }
    // A stream that ended early although the object is long enough is a broken connection, not a short object.
    if (range.start + received < Math.min(range.end, result.size)) {
      throw new ModelgateError('MG_SOURCE_FAILED', `source stream ended after ${received} bytes`, {
        details: { transient: { reason: 'connection' } },
      });
    }
    session.metrics.sourceRequests.inc({ store: store.kind, outcome: 'ok' });
  } catch (error) {
    result?.stream.destroy();
    const cause = guard.timedOut
      ? new ModelgateError('MG_SOURCE_TIMEOUT', `source ${location} timed out`, { cause: error })
      : error;
    if (received > 0 && !isModelgateError(cause, 'MG_SOURCE_CHANGED')) throw new MidStreamError(cause);
    if (cause instanceof ModelgateError || signal.aborted) throw cause;
    // A body that broke before its first byte (a reset right after the headers) is worth asking again.
    throw new ModelgateError('MG_SOURCE_FAILED', `source ${location} failed: ${String(error)}`, {
      cause: error,
      details: { transient: transientTransport(error) },
    });
  } finally {
    guard.done();
    // Bytes actually read from the source, kept or not (a retried piece counts twice): what egress costs.
    if (received > 0) session.metrics.sourceBytes.inc({ store: store.kind }, received);
  }
}
