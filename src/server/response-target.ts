import type { ServerResponse } from 'node:http';
import type { ChunkOrigin } from '../integrity/chunk-fetcher.ts';
import type { TransferTarget } from '../integrity/transfer.ts';

/**
 * Bytes per socket write. Node counts a socket write as activity (for the
 * idle timeout) when it is dispatched and when it completes, and a write
 * completes only once its last byte reached the kernel. Writing a whole 8 MiB
 * chunk at once meant a client reading steadily at 32 KiB/s showed no
 * activity for 256 s and was cut by a 60 s idle timeout. A 64 KiB slice
 * completes every 4 s at the default minimum rate (16 KiB/s), well inside any
 * sane idle timeout, and is still large enough that the per-write cost is
 * noise next to the copy into the kernel.
 */
export const WRITE_SLICE_BYTES = 64 * 1024;

/** Seconds between pacing samples. */
const PACING_TICK_MS = 1000;

export interface PacingOptions {
  /** Below this rate, measured while the client owes us a read, the transfer is dropped. 0 disables. */
  minBytesPerSecond: number;
  /** Seconds of owed time the rate is measured over. */
  windowSeconds: number;
}

export interface ResponseTargetOptions {
  status: number;
  headers: Record<string, string>;
  /** Aborted when the client went away: a pending write rejects at once. */
  signal: AbortSignal;
  pacing: PacingOptions;
  /** The headers went out with the first body bytes, which came from `store`. */
  onHeaders(store: ChunkOrigin): void;
  /** Bytes the socket is done with (not merely queued). */
  onWritten(store: ChunkOrigin, bytes: number): void;
  /** The client read slower than the minimum rate over the window; the caller drops it. */
  onTooSlow(): void;
}

/** A socket write failed: the connection is gone (its 'close' may not have been emitted yet). */
export class SocketWriteFailed extends Error {
  override readonly cause: unknown;
  constructor(cause: unknown) {
    super('socket write failed');
    this.cause = cause;
  }
}

/** Resolves when the socket is done with `slice`; rejects when it failed or the client went away. */
function writeSlice(res: ServerResponse, slice: Uint8Array, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    res.write(slice, (error) => {
      signal.removeEventListener('abort', onAbort);
      if (error) reject(new SocketWriteFailed(error));
      else resolve();
    });
  });
}

/**
 * Measures the client's read rate only over seconds in which a write was
 * pending (the client owed us a read): time spent waiting for the source or
 * for memory is not the client's fault and does not count against it.
 */
function createPacer(pacing: PacingOptions, onTooSlow: () => void) {
  const samples: number[] = [];
  let flushed = 0;
  let sampledAt = 0;
  let writing = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    const delta = flushed - sampledAt;
    sampledAt = flushed;
    if (!writing) return;
    samples.push(delta);
    if (samples.length > pacing.windowSeconds) samples.shift();
    const total = samples.reduce((a, b) => a + b, 0);
    if (samples.length >= pacing.windowSeconds && total < pacing.minBytesPerSecond * pacing.windowSeconds) {
      onTooSlow();
    }
  };
  return {
    started() {
      writing = true;
      if (timer === undefined && pacing.minBytesPerSecond > 0) {
        timer = setInterval(tick, PACING_TICK_MS).unref();
      }
    },
    finished(bytes: number) {
      writing = false;
      flushed += bytes;
    },
    stop() {
      clearInterval(timer);
    },
  };
}

/**
 * The HTTP response as a TransferTarget: headers go with the first bytes,
 * bytes go in slices of WRITE_SLICE_BYTES, one at a time, and `write`
 * resolves only when the socket is done with them (so no Node-side buffering
 * piles up behind a slow client, and the caller may reuse the memory).
 * Dispose it when the transfer ends: that stops the pacing timer.
 */
export function createResponseTarget(
  res: ServerResponse,
  options: ResponseTargetOptions,
): TransferTarget & Disposable {
  const pacer = createPacer(options.pacing, options.onTooSlow);
  const sendHeaders = (store: ChunkOrigin) => {
    if (res.headersSent) return;
    res.writeHead(options.status, options.headers);
    options.onHeaders(store);
  };
  return {
    get headersSent() {
      return res.headersSent;
    },
    async write(bytes, store) {
      sendHeaders(store);
      for (let at = 0; at < bytes.byteLength; at += WRITE_SLICE_BYTES) {
        const slice = bytes.subarray(at, Math.min(at + WRITE_SLICE_BYTES, bytes.byteLength));
        pacer.started();
        let done = 0;
        try {
          await writeSlice(res, slice, options.signal);
          done = slice.byteLength;
        } finally {
          pacer.finished(done);
        }
        options.onWritten(store, slice.byteLength);
      }
    },
    async end() {
      // An empty body (or range) sends its headers here; no first byte to time.
      if (!res.headersSent) res.writeHead(options.status, options.headers);
      res.end();
    },
    [Symbol.dispose]: () => pacer.stop(),
  };
}
