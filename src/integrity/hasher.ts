import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * SHA-256 of a chunk. `digest` may take ownership of the buffer's memory for
 * the duration of the call (worker transfer) and returns a view over the same
 * bytes, which the caller must use from then on.
 */
export interface Hasher {
  digest(data: Uint8Array): Promise<{ data: Uint8Array; digest: Buffer }>;
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
}

/**
 * A small pool of worker threads that hash chunk buffers transferred to them,
 * so SHA-256 (about a third of a hashing proxy's CPU time) does not block the
 * event loop that writes sockets (DESIGN.md "Keep the event loop for I/O").
 * Buffers that share their ArrayBuffer with other data are copied first: only
 * a whole ArrayBuffer can be transferred.
 */
export function createWorkerHasher(size = Math.max(1, Math.min(4, availableParallelism()))): Hasher {
  const workers: Array<{ worker: Worker; busy: number }> = [];
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let closed = false;

  for (let i = 0; i < size; i++) {
    const worker = new Worker(new URL('./hash-worker.ts', import.meta.url));
    worker.unref();
    const slot = { worker, busy: 0 };
    worker.on('message', (message: { id: number; buffer: ArrayBuffer; digest: ArrayBuffer }) => {
      slot.busy--;
      const waiter = pending.get(message.id);
      if (!waiter) return;
      pending.delete(message.id);
      waiter.resolve({ data: new Uint8Array(message.buffer), digest: Buffer.from(message.digest) });
    });
    worker.on('error', (error) => {
      for (const [id, waiter] of pending) {
        pending.delete(id);
        waiter.reject(error);
      }
    });
    workers.push(slot);
  }

  return {
    digest(data) {
      if (closed || data.byteLength < INLINE_BELOW_BYTES) {
        return Promise.resolve({ data, digest: createHash('sha256').update(data).digest() });
      }
      let owned = data;
      if (
        data.byteOffset !== 0 ||
        data.byteLength !== data.buffer.byteLength ||
        !(data.buffer instanceof ArrayBuffer)
      ) {
        owned = new Uint8Array(data.byteLength);
        owned.set(data);
      }
      const slot = workers.reduce((a, b) => (b.busy < a.busy ? b : a));
      const id = nextId++;
      slot.busy++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        const buffer = owned.buffer as ArrayBuffer;
        slot.worker.postMessage({ id, buffer, byteOffset: 0, byteLength: owned.byteLength }, [buffer]);
      });
    },
    async close() {
      closed = true;
      await Promise.all(workers.map((w) => w.worker.terminate()));
    },
  };
}
