import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

/** Size, whole-file digest and chunk digests of one file, as a manifest lists them. */
export interface FileDigests {
  size: number;
  /** `sha256:` + 64 lowercase hex. */
  digest: string;
  /** Hex SHA-256 of each consecutive `chunkSize` slice (empty for an empty file); absent when chunkSize is null. */
  chunks?: string[];
}

/**
 * Hashes the whole content and each `chunkSize` slice in one pass. Feed it
 * buffers of any size in order; memory stays at one hash state per kind.
 */
export class DigestAccumulator {
  private readonly whole = createHash('sha256');
  private readonly chunkSize: number | null;
  private chunk: Hash | undefined;
  private inChunk = 0;
  private size = 0;
  private readonly chunks: string[] = [];

  constructor(chunkSize: number | null) {
    this.chunkSize = chunkSize;
  }

  update(bytes: Uint8Array): void {
    this.whole.update(bytes);
    this.size += bytes.length;
    const { chunkSize } = this;
    if (chunkSize === null) return;
    let offset = 0;
    while (offset < bytes.length) {
      const take = Math.min(chunkSize - this.inChunk, bytes.length - offset);
      this.chunk ??= createHash('sha256');
      this.chunk.update(bytes.subarray(offset, offset + take));
      this.inChunk += take;
      offset += take;
      if (this.inChunk === chunkSize) {
        this.chunks.push(this.chunk.digest('hex'));
        this.chunk = undefined;
        this.inChunk = 0;
      }
    }
  }

  finish(): FileDigests {
    const digest = `sha256:${this.whole.digest('hex')}`;
    if (this.chunkSize === null) return { size: this.size, digest };
    if (this.chunk !== undefined) this.chunks.push(this.chunk.digest('hex'));
    return { size: this.size, digest, chunks: this.chunks };
  }
}

/** Digests of bytes already in memory (tests, small files). `chunkSize` null = whole-file mode. */
export function digestBytes(bytes: Uint8Array, chunkSize: number | null): FileDigests {
  const accumulator = new DigestAccumulator(chunkSize);
  accumulator.update(bytes);
  return accumulator.finish();
}

/**
 * 1 MiB reads: few syscalls, and the buffer is reused, so hashing a
 * multi-GiB file uses the same memory as hashing a small one.
 */
const READ_SIZE = 1024 * 1024;

/** Digests of an open file, read once from the start with a fixed-size buffer. */
export async function digestFile(handle: FileHandle, chunkSize: number | null): Promise<FileDigests> {
  const accumulator = new DigestAccumulator(chunkSize);
  const buffer = Buffer.allocUnsafe(READ_SIZE);
  let position = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, READ_SIZE, position);
    if (bytesRead === 0) break;
    // update() copies into the hash state synchronously, so reusing `buffer` next turn is safe.
    accumulator.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  return accumulator.finish();
}
