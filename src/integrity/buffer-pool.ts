/**
 * Free chunk buffers kept for reuse. A chunk-mode transfer of a large file
 * would otherwise allocate a fresh chunk-sized buffer per chunk, and V8 frees
 * external memory only when enough of it piles up: a 2 GiB stream grew the
 * proxy by 100–150 MiB of garbage before pooling (bench/README.md).
 *
 * The pool only keeps free buffers; it does no accounting of memory in use.
 * The memory budget does that, by reservation size, and a chunk lease is the
 * only caller of `give` (memory-budget.ts).
 */
export interface BufferPool {
  /** A buffer of exactly `size` bytes backed by its own ArrayBuffer (so it can be transferred to a worker). */
  take(size: number): Uint8Array;
  /** Keeps a buffer for reuse; nothing may read or write it any more. A detached buffer is dropped. */
  give(buffer: ArrayBuffer): void;
  /** Drops free buffers until at most `maxFreeBytes` are kept (they become garbage). */
  trim(maxFreeBytes: number): void;
  /** True when a free buffer of exactly `size` bytes is kept. */
  has(size: number): boolean;
  stats(): { allocated: number; reused: number; freeBytes: number };
}

export function createBufferPool(options: { maxFreeBytes: number }): BufferPool {
  const free = new Map<number, ArrayBuffer[]>();
  let freeBytes = 0;
  let allocated = 0;
  let reused = 0;
  return {
    take(size) {
      const buffer = free.get(size)?.pop();
      if (buffer && buffer.byteLength === size) {
        freeBytes -= size;
        reused++;
        return new Uint8Array(buffer);
      }
      allocated++;
      return new Uint8Array(new ArrayBuffer(size));
    },
    give(buffer) {
      // A detached buffer (transferred to a worker that died) has length 0: nothing to keep.
      if (buffer.byteLength === 0 || freeBytes + buffer.byteLength > options.maxFreeBytes) return;
      let list = free.get(buffer.byteLength);
      if (!list) {
        list = [];
        free.set(buffer.byteLength, list);
      }
      list.push(buffer);
      freeBytes += buffer.byteLength;
    },
    trim(limit) {
      for (const [size, list] of free) {
        while (freeBytes > limit && list.length > 0) {
          list.pop();
          freeBytes -= size;
        }
        if (list.length === 0) free.delete(size);
      }
    },
    has: (size) => (free.get(size)?.length ?? 0) > 0,
    stats: () => ({ allocated, reused, freeBytes }),
  };
}
