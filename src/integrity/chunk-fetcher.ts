import { LRUCache } from 'lru-cache';
import type { ModelgateError } from '../errors.ts';
import type { StoreKind } from '../stores/store.ts';
import { digestEquals } from './digest.ts';
import type { Hasher } from './hasher.ts';
import { readFromSources, type SourceSession } from './source-reader.ts';

/** One chunk as read from a source and checked against the manifest. */
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
}

interface InFlight {
  promise: Promise<ChunkResult>;
  controller: AbortController;
  waiters: number;
}

export interface ChunkFetcher {
  /** The chunk, verified or not (the caller decides what a mismatch means). Shared by concurrent callers. */
  get(session: SourceSession, index: number, signal: AbortSignal): Promise<ChunkResult>;
  /**
   * Marks a transfer of this file as running until the returned function is
   * called. Verified chunks are cached only while two or more transfers of a
   * file run: a lone stream never re-reads a chunk, so caching it would only
   * grow memory (one 2 GiB stream stays at about readAhead × chunkSize).
   */
  track(fileDigest: string): () => void;
  stats(): { sourceReads: number; cacheHits: number; shared: number };
}

/**
 * Reads chunks for every transfer of the process. Concurrent requests for the
 * same chunk share one source read (fan-out of many pods to one model costs
 * one read per chunk), and verified chunks stay in a byte-bounded LRU so a
 * pod that starts a little later is served from memory. Only verified chunks
 * are cached; a shared read is aborted when its last waiter goes away.
 */
export function createChunkFetcher(options: { hasher: Hasher; cacheBytes: number }): ChunkFetcher {
  const cache =
    options.cacheBytes > 0
      ? new LRUCache<string, ChunkResult>({
          maxSize: options.cacheBytes,
          sizeCalculation: (value) => Math.max(1, value.data.byteLength),
        })
      : undefined;
  const inflight = new Map<string, InFlight>();
  const running = new Map<string, number>();
  let sourceReads = 0;
  let cacheHits = 0;
  let shared = 0;

  async function read(session: SourceSession, index: number, signal: AbortSignal): Promise<ChunkResult> {
    const file = session.file;
    const chunkSize = file.chunkSize!;
    const start = index * chunkSize;
    const length = Math.min(chunkSize, file.size - start);
    const last = index === file.chunks!.length - 1;
    const buffer = new Uint8Array(length);
    let filled = 0;
    let extra = false;
    sourceReads++;
    const store = await readFromSources(
      session,
      // On the last chunk ask for one byte past the end: a longer object is a size mismatch.
      { start, end: start + length + (last ? 1 : 0) },
      {
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
    const hashed = await options.hasher.digest(short ? buffer.slice(0, filled) : buffer);
    const expected = file.chunks![index]!;
    return {
      index,
      data: hashed.data,
      verified: !short && !extra && digestEquals(hashed.digest, expected),
      actualHex: hashed.digest.toString('hex'),
      short,
      extra,
      store,
    };
  }

  return {
    get(session, index, signal) {
      const file = session.file;
      const cacheKey = `${file.digest}/${file.chunkSize}/${index}`;
      const hit = cache?.get(cacheKey);
      if (hit) {
        cacheHits++;
        return Promise.resolve(hit);
      }
      const flightKey = `${cacheKey}/${file.sources.join(' ')}`;
      let entry = inflight.get(flightKey);
      if (entry) {
        shared++;
      } else {
        const controller = new AbortController();
        const promise = read(session, index, controller.signal).then((result) => {
          if (result.verified && (running.get(file.digest) ?? 0) > 1) cache?.set(cacheKey, result);
          return result;
        });
        const created: InFlight = { promise, controller, waiters: 0 };
        entry = created;
        inflight.set(flightKey, created);
        const forget = () => {
          if (inflight.get(flightKey) === created) inflight.delete(flightKey);
        };
        promise.then(forget, forget);
      }
      const flight = entry;
      flight.waiters++;
      return new Promise<ChunkResult>((resolve, reject) => {
        let settled = false;
        const leave = () => {
          if (settled) return;
          settled = true;
          flight.waiters--;
          signal.removeEventListener('abort', onAbort);
        };
        const onAbort = () => {
          leave();
          if (flight.waiters === 0) flight.controller.abort(signal.reason);
          reject(signal.reason);
        };
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        flight.promise.then(
          (value) => {
            leave();
            resolve(value);
          },
          (error: ModelgateError) => {
            leave();
            reject(error);
          },
        );
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
    stats: () => ({ sourceReads, cacheHits, shared }),
  };
}
