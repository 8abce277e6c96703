import { createHash, type Hash } from 'node:crypto';
import { FetchError } from './fetch-error.ts';
import { type FetchFile, sameDigest } from './manifest.ts';

/**
 * Hashes a file's bytes in order, checks each chunk (docs/releases.md `chunks`) as
 * soon as its last byte arrives, and keeps a checkpoint: the offset up to
 * which every byte is verified, with the whole-file hash state at that
 * offset. After a broken transfer the download rolls back to the checkpoint
 * and resumes from there; nothing past it is trusted.
 *
 * For a file without `chunks` the only checkpoints are 0 and the end: its
 * bytes cannot be trusted until the whole-file digest matched.
 */
export class FileVerifier {
  readonly file: FetchFile;
  /** Bytes fed so far. */
  offset = 0;
  /** Bytes verified so far (a chunk boundary, or the end of the file). */
  checkpoint = 0;
  #fileHash: Hash = createHash('sha256');
  #checkpointHash: Hash = createHash('sha256');
  #chunkHash: Hash = createHash('sha256');
  #wholeVerified = false;

  constructor(file: FetchFile) {
    this.file = file;
  }

  get chunked(): boolean {
    return this.file.chunks !== undefined && this.file.chunkSize !== undefined;
  }

  /** True once every byte arrived and the whole-file digest matched. */
  get complete(): boolean {
    return this.checkpoint === this.file.size && this.#wholeVerified;
  }

  /**
   * Feeds the next bytes. Throws FETCH_CHUNK_MISMATCH when a chunk completes
   * with the wrong hash, FETCH_SIZE_MISMATCH past the manifest size, and
   * FETCH_DIGEST_MISMATCH when the last byte arrives and the file digest is wrong.
   */
  update(bytes: Buffer): void {
    const { size } = this.file;
    if (this.offset + bytes.length > size) {
      throw new FetchError(
        'integrity',
        'FETCH_SIZE_MISMATCH',
        `${this.file.path}: expected ${size} bytes, got more than ${this.offset + bytes.length - 1}`,
      );
    }
    const { chunkSize, chunks } = this.file;
    if (chunkSize === undefined || chunks === undefined) {
      this.#fileHash.update(bytes);
      this.offset += bytes.length;
      if (this.offset === size) this.#finish();
      return;
    }
    let at = 0;
    while (at < bytes.length) {
      const chunkEnd = Math.min((Math.floor(this.offset / chunkSize) + 1) * chunkSize, size);
      const take = Math.min(bytes.length - at, chunkEnd - this.offset);
      const piece = bytes.subarray(at, at + take);
      this.#fileHash.update(piece);
      this.#chunkHash.update(piece);
      this.offset += take;
      at += take;
      if (this.offset === chunkEnd) this.#verifyChunk(chunks, Math.floor((chunkEnd - 1) / chunkSize));
    }
    if (this.offset === size) this.#finish();
  }

  /** Forgets every byte past the checkpoint. */
  rollback(): void {
    if (this.offset === this.checkpoint) return;
    this.offset = this.checkpoint;
    this.#fileHash = this.#checkpointHash.copy();
    this.#chunkHash = createHash('sha256');
  }

  /** Forgets everything: the file is downloaded again from byte 0. */
  reset(): void {
    this.offset = 0;
    this.checkpoint = 0;
    this.#wholeVerified = false;
    this.#fileHash = createHash('sha256');
    this.#checkpointHash = createHash('sha256');
    this.#chunkHash = createHash('sha256');
  }

  #verifyChunk(chunks: readonly string[], index: number): void {
    // A chunk the manifest does not list cannot match: fail closed.
    const expected = chunks[index] ?? '';
    const actual = this.#chunkHash.digest('hex');
    this.#chunkHash = createHash('sha256');
    if (!sameDigest(actual, expected)) {
      throw new FetchError(
        'integrity',
        'FETCH_CHUNK_MISMATCH',
        `${this.file.path}: chunk ${index} expected sha256 ${expected}, got ${actual}`,
      );
    }
    this.checkpoint = this.offset;
    this.#checkpointHash = this.#fileHash.copy();
  }

  #finish(): void {
    const actual = `sha256:${this.#fileHash.copy().digest('hex')}`;
    if (!sameDigest(actual, this.file.digest)) {
      throw new FetchError(
        'integrity',
        'FETCH_DIGEST_MISMATCH',
        `${this.file.path}: expected ${this.file.digest}, got ${actual}`,
      );
    }
    this.checkpoint = this.offset;
    this.#checkpointHash = this.#fileHash.copy();
    this.#wholeVerified = true;
  }
}
