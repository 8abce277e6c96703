import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { CacheFileWriter } from '../cache/index.ts';
import type { ChunkedFile, ManifestFile, WholeFile } from '../catalog/release.types.ts';
import { ModelgateError } from '../errors.ts';
import type { ByteRange, StoreKind } from '../stores/store.ts';
import type { ChunkFetcher, ChunkOrigin, ChunkResult } from './chunk-fetcher.ts';
import { digestEquals } from './digest.ts';
import type { MemoryBudget } from './memory-budget.ts';
import { type PieceSink, readFromSources, type SourceSession } from './source-reader.ts';

/**
 * Where verified bytes go: the HTTP response. `write` sends the headers first
 * if they are not sent yet and resolves only once the socket is done with the
 * bytes (written to the kernel): the caller may then reuse their memory. It
 * rejects when the client went away or was dropped as too slow; the bytes may
 * then still be referenced by a cut write and must not be reused. The
 * integrity engine never sees the socket itself.
 */
export interface TransferTarget {
  readonly headersSent: boolean;
  write(bytes: Uint8Array, store: ChunkOrigin): Promise<void>;
  end(): Promise<void>;
}

/**
 * What happens on a mismatch: `fail` stops (before headers the caller answers
 * 502, after headers it destroys the connection); `report` (audit mode)
 * reports the violation and sends the bytes anyway, except that bytes the
 * source never sent cannot be invented: a short source still breaks the body.
 */
export type MismatchPolicy = 'fail' | 'report';

export interface TransferOptions<F extends ManifestFile = ManifestFile> {
  session: SourceSession<F>;
  target: TransferTarget;
  signal: AbortSignal;
  onMismatch: MismatchPolicy;
  /** Called for each mismatch found (before it is thrown or, in report mode, before the bytes are sent). */
  onViolation(error: ModelgateError): void;
  /**
   * Longest wait for transfer memory before the first byte; then MG_OVERLOADED
   * (503 + Retry-After, nothing sent yet). Later waits end only with `signal`.
   */
  memoryWaitMs: number;
}

/**
 * Budget share of one whole-file transfer: the source stream's buffered data
 * (Node streams and the cloud SDKs buffer at most 64 KiB–1 MiB), the buffer
 * held back until the digest matched, and the one being written.
 */
const WHOLE_FILE_RESERVE_BYTES = 2 * 1024 * 1024;

function mismatchError(
  session: SourceSession,
  what: string,
  expected: string,
  actual: string,
  store: ChunkOrigin,
) {
  return new ModelgateError(
    'MG_DIGEST_MISMATCH',
    `${what} of ${session.file.path} does not match: expected ${expected}, got ${actual}`,
    {
      details: { file: session.file.path, expectedDigest: expected, actualDigest: actual, store },
    },
  );
}

function sizeError(session: SourceSession, detail: string, store: ChunkOrigin) {
  return new ModelgateError(
    'MG_SIZE_MISMATCH',
    `${session.file.path}: expected ${session.file.size} bytes, ${detail}`,
    { details: { file: session.file.path, expectedSize: session.file.size, store } },
  );
}

function chunkProblem(session: SourceSession<ChunkedFile>, chunk: ChunkResult): ModelgateError | undefined {
  if (chunk.verified) return undefined;
  const size = session.file.size;
  const chunkSize = session.file.chunkSize;
  if (chunk.short) {
    return sizeError(
      session,
      `the source ended at byte ${chunk.index * chunkSize + chunk.data.byteLength}`,
      chunk.store,
    );
  }
  if (chunk.extra) return sizeError(session, `the source holds more than ${size} bytes`, chunk.store);
  return mismatchError(
    session,
    `chunk ${chunk.index}`,
    session.file.chunks[chunk.index] ?? '',
    chunk.actualHex,
    chunk.store,
  );
}

/**
 * Sends one chunk's part of the range, then drops the transfer's reference
 * (`using`): only after the socket is done with the bytes. A write that was
 * cut discards the memory instead, since the socket may still reference it.
 */
async function sendChunk(
  options: TransferOptions<ChunkedFile> & { range: ByteRange },
  chunk: ChunkResult,
): Promise<number> {
  using held = chunk;
  const { session, target, range } = options;
  const problem = chunkProblem(session, held);
  if (problem) {
    options.onViolation(problem);
    if (options.onMismatch === 'fail' || held.short) throw problem;
  }
  const chunkStart = held.index * session.file.chunkSize;
  const from = Math.max(range.start - chunkStart, 0);
  const to = Math.min(range.end - chunkStart, held.data.byteLength);
  const slice = from === 0 && to === held.data.byteLength ? held.data : held.data.subarray(from, to);
  try {
    await target.write(slice, held.store);
  } catch (error) {
    held.discard();
    throw error;
  }
  return slice.byteLength;
}

/**
 * Chunk mode (README "HTTP API"): chunk i is read from the source, hashed and compared,
 * and only then written, in order. Up to `readAhead` chunks are held per
 * transfer (being read, waiting, or being written), each read on its own
 * source request, so throughput is not capped by one source stream. Each read
 * first takes its memory from the process budget: when other transfers hold
 * it all, this one stops reading (and, while others wait, reads only the
 * chunk it needs next). A byte range is served from the chunks that cover it.
 */
export async function sendChunked(
  options: TransferOptions<ChunkedFile> & { fetcher: ChunkFetcher; range: ByteRange },
) {
  const { session, target, signal, fetcher, range } = options;
  const chunkSize = session.file.chunkSize;
  if (range.end <= range.start) {
    await target.end();
    return { bytes: 0 };
  }
  const first = Math.floor(range.start / chunkSize);
  const last = Math.floor((range.end - 1) / chunkSize);
  const readAhead = Math.max(1, session.transfer.readAhead);
  // A local controller stops the read-ahead when this transfer fails, without touching the caller's signal.
  const local = new AbortController();
  const linked = AbortSignal.any([signal, local.signal]);
  const untrack = fetcher.track(session.file.digest);
  const window: Array<Promise<ChunkResult>> = [];
  let next = first;
  const fill = () => {
    const depth = fetcher.underPressure() ? 1 : readAhead;
    while (next <= last && window.length < depth) {
      // Only the first chunk's wait is bounded: before headers a refusal is still a clean 503.
      const wait = next === first ? { memoryWaitMs: options.memoryWaitMs } : {};
      const pending = fetcher.get(session, next++, linked, wait);
      pending.catch(() => {}); // observed when its turn comes; avoid unhandled rejections meanwhile
      window.push(pending);
    }
  };
  let bytes = 0;
  try {
    for (let index = first; index <= last; index++) {
      fill();
      const pending = window.shift();
      if (pending === undefined) throw new Error(`chunk ${index} was never requested`);
      bytes += await sendChunk(options, await pending);
    }
    await target.end();
    return { bytes };
  } finally {
    untrack();
    local.abort(new Error('transfer finished'));
    // Chunks fetched ahead but never sent still hold a reference each.
    for (const pending of window)
      pending.then(
        (chunk) => chunk.release(),
        () => {},
      );
  }
}

/** The verified disk cache as whole-file mode uses it (src/cache). */
export interface WholeFileCache {
  /** The path of a cached copy whose SHA-256 was just checked, or undefined (a corrupt copy is deleted and counted). */
  getFile(hex: string, size: number, signal: AbortSignal): Promise<string | undefined>;
  /** Where the bytes read from a source go, to be committed once the digest matched. */
  openFile(hex: string, size: number): Promise<CacheFileWriter | undefined>;
}

/**
 * Reads a cached copy into the sink from `sink.resumeOffset()`, as one more
 * source tried before the configured ones (no pin needed: the entry is
 * content-addressed, and its bytes are hashed again on the way out). False
 * when it could not be read (evicted meanwhile, an I/O error): the sources
 * then take over from the bytes already hashed.
 */
async function readCachedCopy(
  path: string,
  sink: { onData(buffer: Buffer, store: ChunkOrigin): Promise<void>; resumeOffset(): number },
  session: SourceSession,
  signal: AbortSignal,
): Promise<boolean> {
  // A failure to send (the client went away) is the transfer's, not the copy's: never a reason to read the sources.
  let sending = false;
  try {
    // To the end of the file: a copy longer than the manifest says shows as extra bytes.
    const stream = createReadStream(path, { start: sink.resumeOffset(), highWaterMark: 1024 * 1024, signal });
    for await (const buffer of stream as AsyncIterable<Buffer>) {
      sending = true;
      await sink.onData(buffer, 'cache');
      sending = false;
    }
    return true;
  } catch (error) {
    if (signal.aborted) throw signal.reason ?? error;
    if (sending) throw error;
    session.logger.warn(
      { event: 'cache_read_failed', file: session.file.path, err: String(error) },
      'cached whole file could not be read; reading the sources',
    );
    return false;
  }
}

/**
 * Whole-file mode (no `chunks`): one sequential read, hashed as it streams,
 * with the last buffer held back until the whole-file digest and size
 * matched, so a client never receives a complete body that did not verify.
 * A broken or stalled source is resumed from the bytes already hashed. Its
 * memory is the source stream's buffers plus the one held back, not pooled
 * chunks; it reserves a fixed share of the budget for them.
 *
 * With the disk cache, a verified cached copy is read first (store label
 * `cache`), through the same hashing and held-back tail; bytes read from a
 * source are written to the cache as they stream and kept only when the
 * digest matched.
 */
export async function sendWholeFile(
  options: TransferOptions<WholeFile> & { budget: MemoryBudget; cache?: WholeFileCache },
) {
  const { session, target, signal, cache } = options;
  using _memory = await options.budget.reserve(WHOLE_FILE_RESERVE_BYTES, {
    signal,
    timeoutMs: options.memoryWaitMs,
  });
  const size = session.file.size;
  const hex = session.file.digest.slice(7);
  const hash = createHash('sha256');
  let offset = 0;
  let extra = false;
  let held: { bytes: Uint8Array; store: ChunkOrigin } | undefined;
  let bytes = 0;
  const send = async (next: { bytes: Uint8Array; store: ChunkOrigin } | undefined) => {
    if (held) {
      await target.write(held.bytes, held.store);
      bytes += held.bytes.byteLength;
    }
    held = next;
  };
  const cachedPath = await cache?.getFile(hex, size, signal);
  const writer = cachedPath === undefined ? await cache?.openFile(hex, size) : undefined;
  const sink = {
    async onData(buffer: Buffer, from: ChunkOrigin) {
      let piece = buffer;
      if (offset + piece.length > size) {
        extra = true;
        piece = piece.subarray(0, size - offset);
      }
      if (piece.length === 0) return;
      hash.update(piece);
      offset += piece.length;
      if (from !== 'cache') await writer?.write(piece);
      await send({ bytes: piece, store: from });
    },
    resumeOffset: () => offset,
  };
  let committed = false;
  try {
    const fromCache = cachedPath !== undefined && (await readCachedCopy(cachedPath, sink, session, signal));
    const store = fromCache ? 'cache' : await readSources(session, size, sink, signal);
    const problem = wholeFileProblem(session, { offset, extra, actual: hash.digest(), store });
    if (problem) {
      options.onViolation(problem);
      if (options.onMismatch === 'fail' || offset < size) throw problem;
    }
    await send(undefined);
    await target.end();
    if (writer && !problem && !fromCache) {
      committed = true;
      await writer.commit();
    }
    return { bytes };
  } finally {
    if (writer && !committed) await writer.abort();
  }
}

/** The configured sources, from the bytes already hashed to one byte past the end. */
function readSources(
  session: SourceSession,
  size: number,
  sink: { onData(buffer: Buffer, store: ChunkOrigin): Promise<void>; resumeOffset(): number },
  signal: AbortSignal,
): Promise<StoreKind> {
  const pieces: PieceSink = {
    onData: (buffer, _offset, from) => sink.onData(buffer, from),
    resumeOffset: sink.resumeOffset,
  };
  // One byte past the end proves the object is not longer than the manifest says.
  return readFromSources(session, { start: 0, end: size + 1 }, pieces, signal);
}

function wholeFileProblem(
  session: SourceSession<WholeFile>,
  read: { offset: number; extra: boolean; actual: Buffer; store: ChunkOrigin },
): ModelgateError | undefined {
  const { offset, extra, actual, store } = read;
  const size = session.file.size;
  if (offset < size) return sizeError(session, `the source ended at byte ${offset}`, store);
  if (extra) return sizeError(session, `the source holds more than ${size} bytes`, store);
  if (!digestEquals(actual, session.file.digest.slice(7))) {
    return mismatchError(session, 'the file', session.file.digest, `sha256:${actual.toString('hex')}`, store);
  }
  return undefined;
}
