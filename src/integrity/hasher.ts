import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ModelgateError } from '../errors.ts';

/** SHA-256 of a chunk, inline or on a worker thread. */
export interface Hasher {
  /**
   * `owned: true` means the caller owns `data.buffer` outright (no other view
   * of it is in use), so a worker may take it by transfer instead of a copy;
   * the returned `data` is then a new view of the same memory, which the
   * caller must use from then on. When the hash fails after a transfer the
   * memory may be lost with the worker: `data.buffer` is then detached.
   */
  digest(data: Uint8Array, options?: { owned?: boolean }): Promise<{ data: Uint8Array; digest: Buffer }>;
  close(): Promise<void>;
}

/** Buffers below this are hashed inline: a worker round trip costs more than hashing them. */
const INLINE_BELOW_BYTES = 256 * 1024;

export function createInlineHasher(): Hasher {
  return {
    async digest(data) {
      return { data, digest: createHash('sha256').update(data).digest() };
    },
    async close() {},
  };
}

interface Pending {
  resolve: (value: { data: Uint8Array; digest: Buffer }) => void;
  reject: (error: Error) => void;
  byteOffset: number;
  byteLength: number;
}

type WorkerReply = { id: number; buffer: ArrayBuffer } & ({ digest: ArrayBuffer } | { error: string });

/** One worker thread and the requests it holds; a slot outlives its worker (see `replace`). */
interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
  /** Worker deaths since this slot last hashed successfully. */
  failures: number;
}

/** Consecutive deaths without a successful hash after which a slot stops restarting its worker. */
const MAX_CONSECUTIVE_FAILURES = 5;

export interface WorkerHasherOptions {
  size?: number;
  /** The worker script (tests pass one that can be made to crash). */
  workerUrl?: URL;
  /** Called each time a dead worker is replaced (metrics, logs). */
  onWorkerExit?(reason: string): void;
}

function hashError(message: string, cause?: unknown) {
  return new ModelgateError('MG_INTERNAL', message, cause === undefined ? {} : { cause });
}

/**
 * A small pool of worker threads that hash chunk buffers transferred to them,
 * so SHA-256 (about a third of a hashing proxy's CPU time) does not block the
 * event loop that writes sockets (DESIGN.md "Keep the event loop for I/O").
 * Memory the caller does not own outright is copied first: transferring
 * detaches every view of an ArrayBuffer. A worker that dies fails only the
 * requests it held and is replaced, so one crash does not leave a dead thread
 * in the pool that every later chunk would wait on forever.
 */
export function createWorkerHasher(options: WorkerHasherOptions = {}): Hasher {
  const size = options.size ?? Math.max(1, Math.min(4, availableParallelism()));
  const workerUrl = options.workerUrl ?? new URL('./hash-worker.js', import.meta.url);
  const slots: Slot[] = [];
  let nextId = 1;
  let closed = false;

  function failAll(slot: Slot, error: Error) {
    for (const waiter of slot.pending.values()) waiter.reject(error);
    slot.pending.clear();
  }

  function onReply(slot: Slot, message: WorkerReply) {
    const waiter = slot.pending.get(message.id);
    if (!waiter) return;
    slot.pending.delete(message.id);
    const data = new Uint8Array(message.buffer, waiter.byteOffset, waiter.byteLength);
    if ('error' in message) {
      waiter.reject(hashError(`hash worker failed: ${message.error}`));
      return;
    }
    slot.failures = 0;
    waiter.resolve({ data, digest: Buffer.from(message.digest) });
  }

  /** `slotOf` is read only from the worker's events, after the slot exists. */
  function start(slotOf: () => Slot): Worker {
    const worker = new Worker(workerUrl);
    worker.unref();
    worker.on('message', (message: WorkerReply) => onReply(slotOf(), message));
    worker.on('error', (error) => failAll(slotOf(), hashError('hash worker crashed', error)));
    worker.once('exit', (code) => {
      const slot = slotOf();
      failAll(slot, hashError(`hash worker exited with code ${code}`));
      if (closed) return;
      slot.failures++;
      options.onWorkerExit?.(`exit code ${code}`);
      // A worker that cannot even start (a broken install) must not respawn in a tight loop.
      if (slot.failures < MAX_CONSECUTIVE_FAILURES) slot.worker = start(slotOf);
    });
    return worker;
  }

  for (let i = 0; i < size; i++) {
    const slot: Slot = { pending: new Map(), failures: 0, worker: start(() => slot) };
    slots.push(slot);
  }

  const live = () => slots.filter((s) => s.failures < MAX_CONSECUTIVE_FAILURES);

  return {
    digest(data, digestOptions = {}) {
      const candidates = live();
      if (closed || data.byteLength < INLINE_BELOW_BYTES || candidates.length === 0) {
        return Promise.resolve({ data, digest: createHash('sha256').update(data).digest() });
      }
      let view = data;
      if (!digestOptions.owned || !(data.buffer instanceof ArrayBuffer)) {
        view = new Uint8Array(data.byteLength);
        view.set(data);
      }
      const slot = candidates.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
      const id = nextId++;
      return new Promise((resolve, reject) => {
        slot.pending.set(id, { resolve, reject, byteOffset: view.byteOffset, byteLength: view.byteLength });
        const buffer = view.buffer as ArrayBuffer;
        slot.worker.postMessage({ id, buffer, byteOffset: view.byteOffset, byteLength: view.byteLength }, [
          buffer,
        ]);
      });
    },
    async close() {
      closed = true;
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
