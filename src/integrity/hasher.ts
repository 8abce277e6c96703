import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/** SHA-256 of a chunk, inline or on a worker thread. */
export interface Hasher {
  /**
   * `owned: true` means the caller owns `data.buffer` outright (no other view
   * of it is in use), so a worker may take it by transfer instead of a copy;
   * the returned `data` is then a new view of the same memory, which the
   * caller must use from then on.
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

/**
 * A small pool of worker threads that hash chunk buffers transferred to them,
 * so SHA-256 (about a third of a hashing proxy's CPU time) does not block the
 * event loop that writes sockets (DESIGN.md "Keep the event loop for I/O").
 * Memory the caller does not own outright is copied first: transferring
 * detaches every view of an ArrayBuffer.
 */
export function createWorkerHasher(size = Math.max(1, Math.min(4, availableParallelism()))): Hasher {
  const workers: Array<{ worker: Worker; busy: number }> = [];
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let closed = false;

  for (let i = 0; i < size; i++) {
    const worker = new Worker(new URL('./hash-worker.js', import.meta.url));
    worker.unref();
    const slot = { worker, busy: 0 };
    worker.on('message', (message: { id: number; buffer: ArrayBuffer; digest: ArrayBuffer }) => {
      slot.busy--;
      const waiter = pending.get(message.id);
      if (!waiter) return;
      pending.delete(message.id);
      waiter.resolve({
        data: new Uint8Array(message.buffer, waiter.byteOffset, waiter.byteLength),
        digest: Buffer.from(message.digest),
      });
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
    digest(data, options = {}) {
      if (closed || data.byteLength < INLINE_BELOW_BYTES) {
        return Promise.resolve({ data, digest: createHash('sha256').update(data).digest() });
      }
      let view = data;
      if (!options.owned || !(data.buffer instanceof ArrayBuffer)) {
        view = new Uint8Array(data.byteLength);
        view.set(data);
      }
      const slot = workers.reduce((a, b) => (b.busy < a.busy ? b : a));
      const id = nextId++;
      slot.busy++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject, byteOffset: view.byteOffset, byteLength: view.byteLength });
        const buffer = view.buffer as ArrayBuffer;
        slot.worker.postMessage({ id, buffer, byteOffset: view.byteOffset, byteLength: view.byteLength }, [
          buffer,
        ]);
      });
    },
    async close() {
      closed = true;
      await Promise.all(workers.map((w) => w.worker.terminate()));
    },
  };
}
