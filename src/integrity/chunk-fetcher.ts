import { LRUCache } from 'lru-cache';
import type { ChunkCache } from '../cache/index.ts';
import type { ChunkedFile } from '../catalog/release.types.ts';
import { ModelgateError } from '../errors.ts';
import type { StoreKind } from '../stores/store.ts';
import { digestEquals, isSha256Hex } from './digest.ts';
import type { Hasher } from './hasher.ts';
import type { ChunkLease, MemoryBudget } from './memory-budget.ts';
import { readFromSources, type SourceSession } from './source-reader.ts';

/**
 * One chunk as read from a source and checked against the manifest. Its
 * memory is one ChunkLease shared by reference count: every holder (each
 * transfer that got it from `get`, and the cache) drops its reference exactly
 * once, a transfer only after the socket is done with its bytes (`using`).
 * The lease goes back to the pool when the last reference is dropped.
 */
export interface ChunkResult extends Disposable {
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
  /** Where the bytes came from: a source store, or the verified disk cache. */
  store: ChunkOrigin;
  /** Drops this holder's reference (again: a no-op). */
  release(): void;
  /** Drops this holder's reference and forbids reuse of the memory: a cut socket write may still read it. */
  discard(): void;
}

/** A source store, or the verified disk cache (its entries are hashed again on every read). */
export type ChunkOrigin = StoreKind | 'cache';

/** A chunk with its reference count exposed to the fetcher (the cache takes extra references). */
interface CountedChunk {
  /** A new holder's handle on the chunk. */
  retain(): ChunkResult;
}

/** A cached chunk: the cache's own reference, and the count to take more from. */
interface CacheEntry {
  chunk: CountedChunk;
  handle: ChunkResult;
}

interface Waiter {
  resolve(value: ChunkResult): void;
  reject(error: unknown): void;
  /** Ends a wait for memory that took too long (cleared once the read got its memory). */
  memoryTimer?: NodeJS.Timeout;
}

interface InFlight {
  controller: AbortController;
  waiters: Set<Waiter>;
  /** The read holds its memory: waiting for the budget is over. */
  leased: boolean;
}

export interface GetOptions {
  /**
   * Longest wait for chunk memory before giving up with MG_OVERLOADED (a
   * transfer that has not sent headers yet answers 503). Without it the wait
   * ends only with the signal (the client going away).
   */
  memoryWaitMs?: number;
}

export interface ChunkFetcher {
  /**
   * The chunk, verified or not (the caller decides what a mismatch means),
   * with one reference for the caller. Shared by concurrent callers. Memory
   * is taken from the budget before the source is read.
   */
  get(
    session: SourceSession<ChunkedFile>,
    index: number,
    signal: AbortSignal,
    options?: GetOptions,
  ): Promise<ChunkResult>;
  /**
   * Marks a transfer of this file as running until the returned function is
   * called. Verified chunks are cached only while two or more transfers of a
   * file run: a lone stream never re-reads a chunk, so caching it would only
   * grow memory (one 2 GiB stream stays at about readAhead × chunkSize).
   */
  track(fileDigest: string): () => void;
  /**
   * True while reads wait for memory: transfers then read only the chunk they
   * need next instead of reading ahead, so the memory there is goes to more
   * transfers rather than to deeper windows.
   */
  underPressure(): boolean;
  /** Resolves once every disk cache write started so far is done (shutdown, a finished prefetch). */
  flush(): Promise<void>;
  stats(): {
    sourceReads: number;
    cacheHits: number;
    diskHits: number;
    shared: number;
    memory: ReturnType<MemoryBudget['stats']>;
  };
}

interface ReadResult {
  index: number;
  data: Uint8Array;
  verified: boolean;
  actualHex: string;
  short: boolean;
  extra: boolean;
  store: ChunkOrigin;
  lease: ChunkLease;
}

/** A finished read, and the disk cache write that follows it once the waiters have the chunk. */
interface Read {
  result: ReadResult;
  /** Writes the verified chunk to the disk cache, then lets the claim go (off the response path). */
  publish?: () => Promise<void>;
}

/** Wraps a read result with a reference count; the lease is released (or discarded) when it reaches zero. */
function counted(result: ReadResult): CountedChunk {
  const { lease, ...chunk } = result;
  let refs = 0;
  let reusable = true;
  const drop = () => {
    refs--;
    if (refs > 0) return;
    if (reusable) lease.release();
    else lease.discard();
  };
  return {
    retain() {
      refs++;
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        drop();
      };
      return {
        ...chunk,
        release,
        discard() {
          reusable = false;
          release();
        },
        [Symbol.dispose]: release,
      };
    },
  };
}

function overloaded(ms: number) {
  return new ModelgateError('MG_OVERLOADED', `no transfer memory free within ${ms} ms`, {
    headers: { 'Retry-After': '5' },
  });
}

/** Reads chunk `index` of the file from its sources into `lease.buffer`. */
async function readChunkInto(
  session: SourceSession<ChunkedFile>,
  index: number,
  lease: ChunkLease,
  signal: AbortSignal,
) {
  const file = session.file;
  const start = index * file.chunkSize;
  const length = Math.min(file.chunkSize, file.size - start);
  const last = index === file.chunks.length - 1;
  const buffer = lease.buffer;
  let filled = 0;
  let extra = false;
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
  return { store, filled, extra, short: filled < length };
}

/**
 * Read-through the disk cache (docs/scaling.md): a verified hit is served as is (the
 * cache hashed it again); on a miss one process (the claim's owner) reads the
 * source while the others wait and look again. The owner's `publish` writes
 * the chunk (only a verified one) and only then lets the claim go, so the
 * waiting processes find it; the caller runs it after handing the chunk to
 * its own waiters, holding a reference so the memory stays until written.
 */
async function readThroughDisk(
  cache: ChunkCache,
  session: SourceSession<ChunkedFile>,
  index: number,
  lease: ChunkLease,
  signal: AbortSignal,
  readSource: () => Promise<ReadResult>,
): Promise<Read> {
  const file = session.file;
  const hex = file.chunks[index] ?? '';
  const length = Math.min(file.chunkSize, file.size - index * file.chunkSize);
  for (;;) {
    // The lease lends its memory: a hash worker may take it by transfer and hand it back to the lease.
    const data = await cache.get(hex, length, signal, lease);
    if (data !== undefined) {
      return {
        result: {
          index,
          data,
          verified: true,
          actualHex: hex,
          short: false,
          extra: false,
          store: 'cache',
          lease,
        },
      };
    }
    const claim = await cache.claim(hex, signal);
    if (!claim.owner) continue;
    let result: ReadResult;
    try {
      result = await readSource();
    } catch (error) {
      await claim.release();
      throw error;
    }
    const publish = async () => {
      try {
        if (result.verified) await cache.put(hex, result.data);
      } finally {
        await claim.release();
      }
    };
    return { result, publish };
  }
}

/** Adds a caller to a read in flight; the read is aborted when its last caller goes away. */
function joinFlight(flight: InFlight, signal: AbortSignal, getOptions: GetOptions) {
  return new Promise<ChunkResult>((resolve, reject) => {
    const leave = (error: unknown) => {
      clearTimeout(waiter.memoryTimer);
      flight.waiters.delete(waiter);
      signal.removeEventListener('abort', onAbort);
      if (flight.waiters.size === 0) flight.controller.abort(error);
      reject(error);
    };
    const onAbort = () => leave(signal.reason);
    const waiter: Waiter = {
      resolve(value) {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      reject(error) {
        clearTimeout(waiter.memoryTimer);
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    };
    flight.waiters.add(waiter);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    const wait = getOptions.memoryWaitMs;
    if (wait !== undefined && !flight.leased) {
      waiter.memoryTimer = setTimeout(() => leave(overloaded(wait)), wait);
    }
  });
}

/**
 * Reads chunks for every transfer of the process. Concurrent requests for the
 * same chunk share one source read (fan-out of many pods to one model costs
 * one read per chunk), and while several transfers of a file run, verified
 * chunks stay in a byte-bounded LRU so a pod slightly behind is served from
 * memory. Only verified chunks are cached; a shared read is aborted when its
 * last waiter goes away. Every read first takes its memory from the budget,
 * so reading stops (instead of memory growing) when transfers hold it all.
 */
export function createChunkFetcher(options: {
  hasher: Hasher;
  cacheBytes: number;
  budget: MemoryBudget;
  /** The verified disk cache (`cache:`), shared with the other processes of this `serve`. */
  disk?: ChunkCache;
}): ChunkFetcher {
  const { budget, hasher, disk } = options;
  const cache =
    options.cacheBytes > 0
      ? new LRUCache<string, CacheEntry>({
          maxSize: options.cacheBytes,
          sizeCalculation: (entry) => Math.max(1, entry.handle.data.byteLength),
          dispose: (entry) => entry.handle.release(),
        })
      : undefined;
  // The cache only saves source reads: under memory pressure it gives its references up first.
  if (cache) budget.onPressure(() => cache.clear());
  const inflight = new Map<string, InFlight>();
  /** Disk cache writes under way (after their chunks were handed out). */
  const writes = new Set<Promise<void>>();
  const running = new Map<string, number>();
  let sourceReads = 0;
  let cacheHits = 0;
  let diskHits = 0;
  let shared = 0;

  /** Reads the chunk from its sources into `lease` and hashes it; the lease stays the caller's. */
  async function readSource(
    session: SourceSession<ChunkedFile>,
    index: number,
    lease: ChunkLease,
    signal: AbortSignal,
  ): Promise<ReadResult> {
    const file = session.file;
    sourceReads++;
    const { store, filled, extra, short } = await readChunkInto(session, index, lease, signal);
    const hashed = await hasher.digest(lease.buffer.subarray(0, filled), { owned: true });
    lease.adopt(hashed.data.buffer as ArrayBuffer);
    const expected = file.chunks[index] ?? '';
    return {
      index,
      data: hashed.data,
      verified: !short && !extra && digestEquals(hashed.digest, expected),
      actualHex: hashed.digest.toString('hex'),
      short,
      extra,
      store,
      lease,
    };
  }

  async function read(session: SourceSession<ChunkedFile>, index: number, flight: InFlight): Promise<Read> {
    const file = session.file;
    const signal = flight.controller.signal;
    // One byte of room past the chunk: on the last chunk we ask for it to prove the object ends there.
    const lease = await budget.leaseChunk(file.chunkSize + 1, { signal });
    flight.leased = true;
    for (const waiter of flight.waiters) clearTimeout(waiter.memoryTimer);
    try {
      const hex = file.chunks[index];
      if (disk !== undefined && hex !== undefined && isSha256Hex(hex)) {
        const done = await readThroughDisk(disk, session, index, lease, signal, () =>
          readSource(session, index, lease, signal),
        );
        if (done.result.store === 'cache') diskHits++;
        return done;
      }
      return { result: await readSource(session, index, lease, signal) };
    } catch (error) {
      lease.release();
      throw error;
    }
  }

  function startFlight(session: SourceSession<ChunkedFile>, index: number, key: string, cacheKey: string) {
    const flight: InFlight = { controller: new AbortController(), waiters: new Set(), leased: false };
    inflight.set(key, flight);
    const fileDigest = session.file.digest;
    read(session, index, flight).then(
      ({ result, publish }) => {
        inflight.delete(key);
        const chunk = counted(result);
        // The disk write reads the chunk's memory: it holds a reference until the entry is written.
        const writing = publish && chunk.retain();
        const cacheIt = result.verified && cache !== undefined && (running.get(fileDigest) ?? 0) > 1;
        // Every waiter still attached gets its own reference, the cache one more.
        if (cacheIt) cache.set(cacheKey, { chunk, handle: chunk.retain() });
        const waiters = [...flight.waiters];
        if (waiters.length === 0 && !cacheIt) chunk.retain().release();
        for (const waiter of waiters) waiter.resolve(chunk.retain());
        // Best effort like every cache write (the cache logs its failures); clients already have the bytes.
        if (publish) {
          const write = publish()
            .catch(() => undefined)
            .finally(() => {
              writing?.release();
              writes.delete(write);
            });
          writes.add(write);
        }
      },
      (error: unknown) => {
        inflight.delete(key);
        for (const waiter of flight.waiters) waiter.reject(error);
      },
    );
    return flight;
  }

  return {
    get(session, index, signal, getOptions = {}) {
      const file = session.file;
      const cacheKey = `${file.digest}/${file.chunkSize}/${index}`;
      const hit = cache?.get(cacheKey);
      if (hit) {
        cacheHits++;
        // The cache's own handle stays with the cache; the caller gets a new reference.
        return Promise.resolve(hit.chunk.retain());
      }
      const flightKey = `${cacheKey}/${file.sources.join(' ')}`;
      let flight = inflight.get(flightKey);
      if (flight) shared++;
      else flight = startFlight(session, index, flightKey, cacheKey);
      return joinFlight(flight, signal, getOptions);
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
    underPressure: () => budget.waiting() > 0,
    async flush() {
      while (writes.size > 0) await Promise.all([...writes]);
    },
    stats: () => ({ sourceReads, cacheHits, diskHits, shared, memory: budget.stats() }),
  };
}
