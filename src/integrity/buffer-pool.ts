/**
 * Reusable chunk buffers. A chunk-mode transfer of a large file would
 * otherwise allocate a fresh chunk-sized buffer per chunk, and V8 frees
 * external memory only when enough of it piles up: a 2 GiB stream grew the
 * proxy by 100–150 MiB of garbage before pooling (bench/README.md). Buffers
 * come back only when nothing can still read them: after the socket write
 * that carried their bytes completed (see ChunkResult.release).
 */
export interface BufferPool {
  /** A buffer of exactly `size` bytes backed by its own ArrayBuffer (so it can be transferred to a worker). */
  acquire(size: number): Uint8Array;
  /** Returns a buffer's memory for reuse; the caller must hold no view of it any more. */
  release(buffer: ArrayBuffer): void;
  /** Bytes handed out by `acquire` and not yet released: the chunk memory live now. */
  inUseBytes(): number;
  stats(): { allocated: number; reused: number; freeBytes: number; inUseBytes: number };
}

export function createBufferPool(options: { maxFreeBytes: number }): BufferPool {
  const free = new Map<number, ArrayBuffer[]>();
  let freeBytes = 0;
  let inUse = 0;
  let allocated = 0;
  let reused = 0;
  return {
    acquire(size) {
      inUse += size;
      const list = free.get(size);
      const buffer = list?.pop();
      if (buffer && buffer.byteLength === size) {
        freeBytes -= size;
        reused++;
        return new Uint8Array(buffer);
      }
      allocated++;
      return new Uint8Array(new ArrayBuffer(size));
    },
    release(buffer) {
      inUse -= buffer.byteLength;
      // A detached buffer (transferred away and never returned) has length 0: nothing to keep.
      if (buffer.byteLength === 0 || freeBytes + buffer.byteLength > options.maxFreeBytes) return;
      let list = free.get(buffer.byteLength);
      if (!list) {
        list = [];
        free.set(buffer.byteLength, list);
      }
      list.push(buffer);
      freeBytes += buffer.byteLength;
    },
    inUseBytes: () => inUse,
    stats: () => ({ allocated, reused, freeBytes, inUseBytes: inUse }),
  };
}
