import { LRUCache } from 'lru-cache';
import type { StoreKind } from '../stores/store.ts';
import { type BufferPool, createBufferPool } from './buffer-pool.ts';
import { digestEquals } from './digest.ts';
import type { Hasher } from './hasher.ts';
import { readFromSources, type SourceSession } from './source-reader.ts';

/**
 * One chunk as read from a source and checked against the manifest. Its
 * memory is pooled and reference-counted: every holder (each transfer that
 * got it from `get`, and the cache) calls `release` exactly once, a transfer
 * only after the socket write carrying its bytes completed.
 */
export interface ChunkResult {
  index: number;
  /** The bytes read (at most the chunk's length; fewer when the source was short). */
  data: Uint8Array;
  /** True when the bytes have the chunk's exact length and digest (and, for the last chunk, nothing follows). */
  verified: boolean;
  actualHex: string;
  /** The source sent fewer bytes than the chunk holds. */
  short: boolean;
  /** The source holds bytes beyond the file's size (checked on the last chunk only). */
  extra: boolean;
  store: StoreKind;
  release(): void;
}

/** A chunk with its reference count exposed to the fetcher (the cache takes extra references). */
interface CountedChunk extends ChunkResult {
  retain(): CountedChunk;
}

interface Waiter {
  resolve(value: ChunkResult): void;
  reject(error: unknown): void;
}

interface InFlight {
  controller: AbortController;
  waiters: Set<Waiter>;
}

export interface ChunkFetcher {
  /**
   * The chunk, verified or not (the caller decides what a mismatch means),
   * with one reference for the caller. Shared by concurrent callers.
   */
  get(session: SourceSession, index: number, signal: AbortSignal): Promise<ChunkResult>;
  /**
   * Marks a transfer of this file as running until the returned function is
   * called. Verified chunks are cached only while two or more transfers of a
   * file run: a lone stream never re-reads a chunk, so caching it would only
   * grow memory (one 2 GiB stream stays at about readAhead × chunkSize).
   */
  track(fileDigest: string): () => void;
  /**
   * True while the chunk memory live in the process (read, being hashed,
   * waiting to be sent, or cached) is at or above `maxBufferedBytes`:
   * transfers then read only the chunk they need next instead of reading ahead,
   * so many concurrent transfers of different files cannot multiply memory
   * by their read-ahead windows.
   */
  underPressure(): boolean;
  stats(): {
    sourceReads: number;
    cacheHits: number;
    shared: number;
    buffers: ReturnType<BufferPool['stats']>;
  };
}

/**
 * Reads chunks for every transfer of the process. Concurrent requests for the
 * same chunk share one source read (fan-out of many pods to one model costs
 * one read per chunk), and while several transfers of a file run, verified
 * chunks stay in a byte-bounded LRU so a pod slightly behind is served from
 * memory. Only verified chunks are cached; a shared read is aborted when its
 * last waiter goes away.
 */
export function createChunkFetcher(options: {
  hasher: Hasher;
  cacheBytes: number;
  /** Live chunk memory above which transfers stop reading ahead (see `underPressure`). */
  maxBufferedBytes: number;
  pool?: BufferPool;
}): ChunkFetcher {
  // Free buffers kept for reuse: one transfer's read-ahead window of 8 MiB chunks.
  const pool = options.pool ?? createBufferPool({ maxFreeBytes: 32 * 1024 * 1024 });
  const cache =
    options.cacheBytes > 0
      ? new LRUCache<string, CountedChunk>({
          maxSize: options.cacheBytes,
          sizeCalculation: (value) => Math.max(1, value.data.byteLength),
          dispose: (value) => value.release(),
        })
      : undefined;
  const inflight = new Map<string, InFlight>();
  const running = new Map<string, number>();
  let sourceReads = 0;
  let cacheHits = 0;
  let shared = 0;

  async function read(session: SourceSession, index: number, signal: AbortSignal) {
    const file = session.file;
    const chunkSize = file.chunkSize!;
    const start = index * chunkSize;
    const length = Math.min(chunkSize, file.size - start);
    const last = index === file.chunks!.length - 1;
    // One byte of room past the chunk: on the last chunk we ask for it to prove the object ends there.
    let buffer = pool.acquire(chunkSize + 1);
    let filled = 0;
    let extra = false;
    sourceReads++;
    try {
      const store = await readFromSources(
        session,
        { start, end: start + length + (last ? 1 : 0) },
        {
          target: buffer,
          onDirect(bytesRead) {
            filled = Math.min(bytesRead, length);
            extra = bytesRead > length;
          },
          onData(bytes, offset) {
            const at = offset - start;
            const room = length - at;
            if (bytes.length > room) extra = true;
            const take = Math.min(bytes.length, Math.max(room, 0));
            if (take > 0) buffer.set(take === bytes.length ? bytes : bytes.subarray(0, take), at);
            filled = Math.max(filled, at + take);
          },
          resumeOffset() {
            // A retried chunk is read again from its first byte: only whole chunks are verified.
            filled = 0;
            extra = false;
            return start;
          },
        },
        signal,
      );
      const short = filled < length;
      const hashed = await options.hasher.digest(buffer.subarray(0, filled), { owned: true });
      buffer = new Uint8Array(hashed.data.buffer as ArrayBuffer);
      const expected = file.chunks![index]!;
      return {
        index,
        data: hashed.data,
        verified: !short && !extra && digestEquals(hashed.digest, expected),
        actualHex: hashed.digest.toString('hex'),
        short,
        extra,
        store,
        backing: hashed.data.buffer as ArrayBuffer,
      };
    } catch (error) {
      pool.release(buffer.buffer as ArrayBuffer);
      throw error;
    }
  }

  /** Wraps a read result with a reference count that returns its memory to the pool at zero. */
  function counted(result: Awaited<ReturnType<typeof read>>, references: number): CountedChunk {
    let refs = references;
    const { backing, ...rest } = result;
    if (refs === 0) pool.release(backing);
    return {
      ...rest,
      retain() {
        refs++;
        return this;
      },
      release() {
        refs--;
        if (refs === 0) pool.release(backing);
      },
    };
  }

  return {
    get(session, index, signal) {
      const file = session.file;
      const cacheKey = `${file.digest}/${file.chunkSize}/${index}`;
      const hit = cache?.get(cacheKey);
      if (hit) {
        cacheHits++;
        return Promise.resolve(hit.retain());
      }
      const flightKey = `${cacheKey}/${file.sources.join(' ')}`;
      let flight = inflight.get(flightKey);
      if (flight) {
        shared++;
      } else {
        const created: InFlight = { controller: new AbortController(), waiters: new Set() };
        flight = created;
        inflight.set(flightKey, created);
        read(session, index, created.controller.signal).then(
          (result) => {
            inflight.delete(flightKey);
            const cacheIt = result.verified && cache !== undefined && (running.get(file.digest) ?? 0) > 1;
            // Every waiter still attached gets its own reference, the cache one more.
            const chunk = counted(result, created.waiters.size + (cacheIt ? 1 : 0));
            if (cacheIt) cache!.set(cacheKey, chunk);
            for (const waiter of created.waiters) waiter.resolve(chunk);
          },
          (error: unknown) => {
            inflight.delete(flightKey);
            for (const waiter of created.waiters) waiter.reject(error);
          },
        );
      }
      const joined = flight;
      return new Promise<ChunkResult>((resolve, reject) => {
        const onAbort = () => {
          joined.waiters.delete(waiter);
          if (joined.waiters.size === 0) joined.controller.abort(signal.reason);
          reject(signal.reason);
        };
        const waiter: Waiter = {
          resolve(value) {
            signal.removeEventListener('abort', onAbort);
            resolve(value);
          },
          reject(error) {
            signal.removeEventListener('abort', onAbort);
            reject(error);
          },
        };
        joined.waiters.add(waiter);
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
      });
    },
    track(fileDigest) {
      running.set(fileDigest, (running.get(fileDigest) ?? 0) + 1);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        const left = (running.get(fileDigest) ?? 1) - 1;
        if (left > 0) running.set(fileDigest, left);
        else running.delete(fileDigest);
      };
    },
    underPressure: () => pool.inUseBytes() >= options.maxBufferedBytes,
    stats: () => ({ sourceReads, cacheHits, shared, buffers: pool.stats() }),
  };
}
