import { setTimeout as sleep } from 'node:timers/promises';
import type { ManifestFile } from '../catalog/release.types.ts';
import type { TransferConfig } from '../config/config.types.ts';
import { isModelgateError, ModelgateError } from '../errors.ts';
import type { ByteRange, ReadResult, Store, StoreKind } from '../stores/store.ts';
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

/**
 * Reads `[range.start, range.end)` of the file from its sources into `sink`,
 * with mirror failover and resume:
 * - an error before any byte of this read arrived (connect error, 5xx, 404,
 *   timeout) moves on to the next source location;
 * - a stream that breaks or stalls after bytes arrived is retried on the same
 *   location, pinned to the version first seen, from `sink.resumeOffset()`,
 *   with exponential backoff, at most `transfer.retries` times;
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
  const sources = session.file.sources;
  let lastError: unknown;
  let allNotFound = true;
  for (let step = 0; step < sources.length; step++) {
    const index = (session.preferred + step) % sources.length;
    const location = sources[index]!;
    const store = session.stores.forLocation(location);
    if (!store) {
      lastError = new ModelgateError(
        'MG_SOURCE_FAILED',
        `no store is configured for ${location.split(':')[0]}: sources`,
      );
      allNotFound = false;
      continue;
    }
    let retriesLeft = session.transfer.retries;
    let backoff = session.transfer.retryBackoffMs;
    for (;;) {
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
        session.logger.warn(
          {
            event: 'source_error',
            location,
            store: store.kind,
            code: (cause as ModelgateError).code,
            err: String(cause),
          },
          'source read failed',
        );
        if (error instanceof MidStreamError && retriesLeft > 0) {
          retriesLeft--;
          await sleep(backoff, undefined, { signal });
          backoff *= 2;
          continue;
        }
        break;
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
      throw new ModelgateError('MG_SOURCE_FAILED', `source stream ended after ${received} bytes`);
    }
    session.metrics.sourceRequests.inc({ store: store.kind, outcome: 'ok' });
  } catch (error) {
    result?.stream.destroy();
    const cause = guard.timedOut
      ? new ModelgateError('MG_SOURCE_TIMEOUT', `source ${location} timed out`, { cause: error })
      : error;
    if (received > 0 && !isModelgateError(cause, 'MG_SOURCE_CHANGED')) throw new MidStreamError(cause);
    if (cause instanceof ModelgateError || signal.aborted) throw cause;
    throw new ModelgateError('MG_SOURCE_FAILED', `source ${location} failed: ${String(error)}`, {
      cause: error,
    });
  } finally {
    guard.done();
  }
}
