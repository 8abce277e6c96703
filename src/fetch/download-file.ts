import { constants, createReadStream } from 'node:fs';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureFolder, moveIntoPlace, openPartial, refuseSymlink } from './dest-paths.ts';
import { FetchError, isFetchError } from './fetch-error.ts';
import { FileVerifier } from './file-verifier.ts';
import type { FetchFile } from './manifest.ts';
import { bodyError, type ProxyClient } from './proxy-client.ts';

/**
 * Bytes gathered before one positional write. Response bodies arrive in
 * socket-sized pieces (16–64 KiB); one `writev` per MiB keeps disk syscalls
 * (and thread-pool round trips) few while bounding memory per file to ~1 MiB.
 */
const WRITE_BATCH_BYTES = 1024 * 1024;
/** Read size when re-hashing files already on disk: large reads keep syscalls few; one buffer per file. */
const READ_BUFFER_BYTES = 1024 * 1024;
/** Longest pause between attempts, whatever the attempt number or `Retry-After`. */
const MAX_DELAY_MS = 30_000;

export interface RetryEvent {
  /** The file being retried; absent for the manifest request. */
  path?: string;
  /** Failed attempts in a row without progress (1 = first retry). */
  attempt: number;
  /** The byte the next request starts from (verified bytes kept). */
  offset: number;
  code: string;
  delayMs: number;
}

export interface FileResult {
  path: string;
  size: number;
  digest: string;
  status: 'downloaded' | 'present';
  seconds: number;
  /** Verified bytes reused from an earlier, interrupted attempt (same run or an earlier run). */
  resumedFrom: number;
  /** Bytes received from the proxy for this file, across attempts. */
  transferred: number;
}

export interface DownloadContext {
  client: ProxyClient;
  model: string;
  /** Files are always requested by release digest, so a version cannot move under a running fetch. */
  releaseDigest: string;
  /** Real path of DEST. */
  dest: string;
  /** Failed attempts in a row without progress before giving up. */
  retries: number;
  /** First retry delay; doubles on each attempt without progress. */
  retryBaseMs: number;
  signal: AbortSignal;
  /** Verified-or-in-flight bytes moved forward (or back, after a rollback). */
  onProgress(delta: number): void;
  /** Bytes received from the proxy (never resumed or already-present bytes): the rate is computed from these. */
  onReceived(bytes: number): void;
  onRetry(event: RetryEvent): void;
}

/** Exponential backoff with jitter (50–100 % of the nominal delay), so replicas of a job do not retry in step. */
export function backoffDelay(baseMs: number, attempt: number): number {
  const nominal = Math.min(baseMs * 2 ** (attempt - 1), MAX_DELAY_MS);
  return Math.round(nominal * (0.5 + Math.random() / 2));
}

function localError(what: string, error: unknown): FetchError {
  if (isFetchError(error)) return error;
  const code = (error as { code?: string }).code;
  return new FetchError('local', 'FETCH_LOCAL_IO', `${what}${code ? ` (${code})` : ''}`, { cause: error });
}

/**
 * True when `path` is a regular file with the manifest's size and digest.
 * A symlink there is refused (FETCH_UNSAFE_DESTINATION), not read.
 */
export async function hasVerifiedFile(path: string, file: FetchFile, signal: AbortSignal): Promise<boolean> {
  const stats = await refuseSymlink(path);
  if (stats === undefined || !stats.isFile() || stats.size !== file.size) return false;
  const verifier = new FileVerifier(file);
  try {
    if (file.size === 0) verifier.update(Buffer.alloc(0));
    for await (const piece of createReadStream(path, { highWaterMark: READ_BUFFER_BYTES, signal })) {
      verifier.update(piece as Buffer);
    }
  } catch (error) {
    if (isFetchError(error) && error.kind === 'integrity') return false;
    if (signal.aborted) throw new FetchError('interrupted', 'FETCH_INTERRUPTED', 'interrupted');
    throw localError(`cannot read ${path}`, error);
  }
  return verifier.complete;
}

/**
 * Re-verifies what an earlier attempt left in the partial file and keeps
 * only whole verified chunks from its start; the rest is cut off. A file
 * without chunks cannot be verified in parts, so its partial file starts
 * over (the proxy would answer a Range request for it with the whole body).
 */
async function keepVerifiedPrefix(handle: FileHandle, verifier: FileVerifier): Promise<void> {
  const { size } = await handle.stat();
  if (verifier.chunked && size > 0) {
    const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    const end = Math.min(size, verifier.file.size);
    try {
      for (let position = 0; position < end; ) {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, end - position), position);
        if (bytesRead === 0) break;
        // update() hashes synchronously, so the buffer can be reused for the next read.
        verifier.update(buffer.subarray(0, bytesRead));
        position += bytesRead;
      }
    } catch (error) {
      if (!isFetchError(error) || error.kind !== 'integrity') throw error;
    }
    verifier.rollback();
  }
  await handle.truncate(verifier.checkpoint);
}

/** Gathers pieces and writes them at increasing positions with one `writev` per batch. */
class PositionalWriter {
  readonly #handle: FileHandle;
  #position: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  constructor(handle: FileHandle, position: number) {
    this.#handle = handle;
    this.#position = position;
  }

  /** Queues a piece; returns true when a flush is due. */
  push(piece: Buffer): boolean {
    this.#pending.push(piece);
    this.#pendingBytes += piece.length;
    return this.#pendingBytes >= WRITE_BATCH_BYTES;
  }

  async flush(): Promise<void> {
    if (this.#pendingBytes === 0) return;
    const pieces = this.#pending;
    const length = this.#pendingBytes;
    this.#pending = [];
    this.#pendingBytes = 0;
    let written = 0;
    while (written < length) {
      const rest = written === 0 ? pieces : [Buffer.concat(pieces).subarray(written)];
      const { bytesWritten } = await this.#handle.writev(rest, this.#position + written);
      written += bytesWritten;
    }
    this.#position += length;
  }
}

interface TransferStats {
  transferred: number;
  /** Offset the last attempt's body started from. */
  resumedFrom: number;
}

/**
 * One GET of the file from the verifier's offset. Bytes are hashed before
 * they are written, and written only to the partial file; returns when the
 * body ended, throws on any failure (the caller decides whether to retry).
 */
async function transferOnce(
  ctx: DownloadContext,
  file: FetchFile,
  handle: FileHandle,
  verifier: FileVerifier,
  stats: TransferStats,
): Promise<void> {
  const response = await ctx.client.getFile(
    ctx.model,
    ctx.releaseDigest,
    file.path,
    verifier.offset,
    ctx.signal,
  );
  let writer: PositionalWriter | undefined;
  try {
    if (response.releaseDigest !== undefined && response.releaseDigest !== ctx.releaseDigest) {
      throw new FetchError(
        'integrity',
        'FETCH_BAD_RESPONSE',
        `${file.path}: expected release ${ctx.releaseDigest}, the proxy answered for ${response.releaseDigest}`,
      );
    }
    if (response.total !== undefined && response.total !== file.size) {
      throw new FetchError(
        'integrity',
        'FETCH_SIZE_MISMATCH',
        `${file.path}: expected ${file.size} bytes, the proxy announced ${response.total}`,
      );
    }
    if (response.status === 200 && verifier.offset > 0) {
      // The proxy ignored the Range (whole-file mode): start over from byte 0.
      ctx.onProgress(-verifier.offset);
      verifier.reset();
      await handle.truncate(0);
    } else if (response.status === 206 && response.start !== verifier.offset) {
      throw new FetchError(
        'integrity',
        'FETCH_BAD_RESPONSE',
        `${file.path}: asked for bytes from ${verifier.offset}, got a range from ${response.start}`,
      );
    }
    stats.resumedFrom = verifier.offset;
    writer = new PositionalWriter(handle, verifier.offset);
    if (file.size === 0) verifier.update(Buffer.alloc(0));
    const body = response.body[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await body.next();
      } catch (error) {
        throw bodyError(error, ctx.signal);
      }
      if (next.done) break;
      const piece = next.value;
      stats.transferred += piece.length;
      verifier.update(piece);
      ctx.onProgress(piece.length);
      ctx.onReceived(piece.length);
      if (writer.push(piece)) await writer.flush();
    }
    await writer.flush();
    if (!verifier.complete) {
      // A body that ends early without a Content-Length the HTTP layer could check.
      throw new FetchError(
        'unavailable',
        'FETCH_TRUNCATED',
        `${file.path}: the body ended after ${verifier.offset} of ${file.size} bytes`,
        { retryable: true },
      );
    }
  } catch (error) {
    response.body.destroy();
    // Verified bytes may still sit in the batch: write them so the checkpoint is on disk.
    if (writer !== undefined && (!isFetchError(error) || error.kind !== 'local')) await writer.flush();
    throw error;
  }
}

/**
 * Downloads one file of the release into DEST: skips it when a verified
 * copy is already there, resumes from the verified prefix of an earlier
 * partial file, retries broken transfers from the last verified chunk, and
 * renames the file into place only once every byte matched the manifest.
 */
export async function downloadFile(ctx: DownloadContext, file: FetchFile, final: string, partial: string) {
  const started = performance.now();
  const seconds = () => Math.round(performance.now() - started) / 1000;
  // The final name's folders are checked (and created) first: a symlinked
  // folder must not even be read through as an "already present" file.
  await ensureFolder(ctx.dest, dirname(final));
  if (await hasVerifiedFile(final, file, ctx.signal)) {
    ctx.onProgress(file.size);
    return result('present', 0, 0);
  }

  const handle = await openPartial(ctx.dest, partial);
  const verifier = new FileVerifier(file);
  const stats: TransferStats = { transferred: 0, resumedFrom: 0 };
  try {
    try {
      await keepVerifiedPrefix(handle, verifier);
    } catch (error) {
      throw localError(`cannot read ${partial}`, error);
    }
    ctx.onProgress(verifier.offset);
    stats.resumedFrom = verifier.offset;

    let integrityFailures = 0;
    let failuresWithoutProgress = 0;
    while (!verifier.complete) {
      const checkpointBefore = verifier.checkpoint;
      stats.resumedFrom = verifier.offset;
      try {
        await transferOnce(ctx, file, handle, verifier, stats);
      } catch (thrown) {
        const error = isFetchError(thrown) ? thrown : localError(`cannot write ${partial}`, thrown);
        ctx.onProgress(verifier.checkpoint - verifier.offset);
        verifier.rollback();
        await handle.truncate(verifier.checkpoint).catch(() => {});

        if (error.kind === 'integrity') {
          // Fail closed: nothing of this attempt is trusted, and a second mismatch is final.
          ctx.onProgress(-verifier.offset);
          verifier.reset();
          await handle.truncate(0).catch(() => {});
          integrityFailures += 1;
          if (integrityFailures > 1) throw error;
          ctx.onRetry({
            path: file.path,
            attempt: integrityFailures,
            offset: 0,
            code: error.code,
            delayMs: 0,
          });
          continue;
        }
        if (!error.retryable) throw error;
        if (verifier.checkpoint > checkpointBefore) failuresWithoutProgress = 0;
        failuresWithoutProgress += 1;
        if (failuresWithoutProgress > ctx.retries) throw error;
        const delayMs = Math.min(
          error.retryAfterMs ?? backoffDelay(ctx.retryBaseMs, failuresWithoutProgress),
          MAX_DELAY_MS,
        );
        ctx.onRetry({
          path: file.path,
          attempt: failuresWithoutProgress,
          offset: verifier.offset,
          code: error.code,
          delayMs,
        });
        try {
          await sleep(delayMs, undefined, { signal: ctx.signal });
        } catch (abort) {
          throw new FetchError('interrupted', 'FETCH_INTERRUPTED', 'interrupted', { cause: abort });
        }
      }
    }

    try {
      await handle.sync();
    } catch (error) {
      throw localError(`cannot flush ${partial} to disk`, error);
    }
  } catch (error) {
    await handle.close().catch(() => {});
    if (isFetchError(error) && error.kind === 'integrity') await rm(partial, { force: true }).catch(() => {});
    throw error;
  }
  await handle.close().catch(() => {});

  await moveIntoPlace(ctx.dest, partial, final);
  await syncFolder(dirname(final));
  return result('downloaded', stats.resumedFrom, stats.transferred);

  function result(status: FileResult['status'], from: number, transferred: number): FileResult {
    return {
      path: file.path,
      size: file.size,
      digest: file.digest,
      status,
      seconds: seconds(),
      resumedFrom: from,
      transferred,
    };
  }
}

/** fsyncs a folder so a rename in it survives a crash; not every platform allows it, so failures are ignored. */
export async function syncFolder(folder: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(folder, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    await handle.sync();
  } catch {
    // Best effort: the file itself was fsynced before the rename.
  } finally {
    await handle?.close().catch(() => {});
  }
}
