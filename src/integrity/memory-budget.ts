import { ModelgateError } from '../errors.ts';
import { type BufferPool, createBufferPool } from './buffer-pool.ts';

/** Bytes of the budget held until `release` (or the end of a `using` block). Releasing twice is a no-op. */
export interface Reservation extends Disposable {
  readonly bytes: number;
  release(): void;
}

/**
 * The one owner of a chunk buffer from the pool to the socket. It holds the
 * budget reservation and the pooled buffer together; `release` is the only
 * path back to the pool, and it returns the reservation by its size, never by
 * the buffer's current length (a buffer transferred to a worker that died is
 * detached and has length 0, and must still free its share of the budget).
 */
export interface ChunkLease extends Reservation {
  /** The chunk memory: a view of the whole pooled buffer (replaced by `adopt`). */
  readonly buffer: Uint8Array;
  /** Takes the memory back after a worker round trip; views of the old buffer are detached. */
  adopt(buffer: ArrayBuffer): void;
  /**
   * Releases the reservation but drops the buffer instead of pooling it: a cut
   * socket write may still reference it, so it must never be handed out again.
   */
  discard(): void;
}

export interface WaitOptions {
  signal: AbortSignal;
  /** Longest wait for memory; then MG_OVERLOADED. Without it the wait ends only with `signal`. */
  timeoutMs?: number;
}

/**
 * A hard cap on chunk memory live in the process (read, being hashed, waiting
 * to be sent, cached), across every transfer. A request that does not fit
 * waits in FIFO order, so a large request is not starved by smaller ones
 * behind it. One request larger than the whole budget is granted only while
 * nothing else is held, so a chunk size above the budget is served one at a
 * time rather than never.
 */
export interface MemoryBudget {
  reserve(bytes: number, options: WaitOptions): Promise<Reservation>;
  /** A reservation of `size` bytes with a pooled buffer of exactly that size. */
  leaseChunk(size: number, options: WaitOptions): Promise<ChunkLease>;
  inUseBytes(): number;
  /** Requests waiting for memory now. */
  waiting(): number;
  /** `reclaim` runs when a request has to wait, to give up memory held only for speed (the chunk cache). */
  onPressure(reclaim: () => void): void;
  stats(): { inUseBytes: number; waiting: number; limitBytes: number; pool: ReturnType<BufferPool['stats']> };
}

interface Waiter {
  bytes: number;
  grant(): void;
}

/** Pairs a reservation with a pooled buffer of its size; the lease is the buffer's only way back to the pool. */
function createLease(pool: BufferPool, held: Reservation): ChunkLease {
  let buffer = pool.take(held.bytes);
  let pooled = true;
  const release = () => {
    if (pooled) pool.give(buffer.buffer as ArrayBuffer);
    pooled = false;
    held.release();
  };
  return {
    bytes: held.bytes,
    get buffer() {
      return buffer;
    },
    adopt(returned) {
      buffer = new Uint8Array(returned);
    },
    discard() {
      pooled = false;
      held.release();
    },
    release,
    [Symbol.dispose]: release,
  };
}

/** Seconds a client refused for memory is asked to wait: paused clients free memory over tens of seconds. */
const RETRY_AFTER_SECONDS = 5;

export function createMemoryBudget(options: {
  maxBytes: number;
  /** Called whenever the bytes in use or the number of waiters change (metrics). */
  observe?(inUseBytes: number, waiting: number): void;
}): MemoryBudget {
  // Free buffers stay inside the budget too: bytes in use plus bytes kept free never exceed maxBytes,
  // so all chunk memory the process allocated (not only what is in use) is bounded by the budget.
  const pool = createBufferPool({ maxFreeBytes: options.maxBytes });
  const queue: Waiter[] = [];
  const reclaimers: Array<() => void> = [];
  let inUse = 0;

  const observe = () => options.observe?.(inUse, queue.length);
  const fits = (bytes: number) => inUse === 0 || inUse + bytes <= options.maxBytes;

  function grantWaiting() {
    for (let head = queue[0]; head && fits(head.bytes); head = queue[0]) {
      queue.shift();
      inUse += head.bytes;
      head.grant();
    }
    observe();
  }

  function reservation(bytes: number): Reservation {
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      inUse -= bytes;
      grantWaiting();
    };
    return { bytes, release, [Symbol.dispose]: release };
  }

  function wait(bytes: number, { signal, timeoutMs }: WaitOptions): Promise<void> {
    signal.throwIfAborted();
    if (queue.length === 0 && fits(bytes)) {
      inUse += bytes;
      observe();
      return Promise.resolve();
    }
    for (const reclaim of reclaimers) reclaim();
    if (queue.length === 0 && fits(bytes)) {
      inUse += bytes;
      observe();
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const leave = (error: unknown) => {
        const at = queue.indexOf(waiter);
        if (at >= 0) queue.splice(at, 1);
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        // Leaving may unblock the requests queued behind this one.
        grantWaiting();
        reject(error);
      };
      const onAbort = () => leave(signal.reason);
      const waiter: Waiter = {
        bytes,
        grant() {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      queue.push(waiter);
      observe();
      signal.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () =>
            leave(
              new ModelgateError(
                'MG_OVERLOADED',
                `no transfer memory free within ${timeoutMs} ms (transfer.maxBufferedBytes ${options.maxBytes})`,
                { headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) } },
              ),
            ),
          timeoutMs,
        );
      }
    });
  }

  return {
    async reserve(bytes, waitOptions) {
      await wait(bytes, waitOptions);
      return reservation(bytes);
    },
    async leaseChunk(size, waitOptions) {
      await wait(size, waitOptions);
      // A new allocation must fit beside what is in use: free buffers of other sizes make room first.
      if (!pool.has(size)) pool.trim(Math.max(0, options.maxBytes - inUse));
      return createLease(pool, reservation(size));
    },
    inUseBytes: () => inUse,
    waiting: () => queue.length,
    onPressure(reclaim) {
      reclaimers.push(reclaim);
    },
    stats: () => ({
      inUseBytes: inUse,
      waiting: queue.length,
      limitBytes: options.maxBytes,
      pool: pool.stats(),
    }),
  };
}
