import { constants, createReadStream } from 'node:fs';
import { type FileHandle, open, opendir, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import type { FileStoreConfig } from '../../config/config.types.ts';
import { ModelgateError } from '../../errors.ts';
import type { ByteRange, ObjectVersion, ReadIntoResult, ReadOptions, ReadResult, Store } from '../store.ts';

/** Read size from disk. 1 MiB keeps syscalls few and matches the socket side's write size. */
const READ_HIGH_WATER_MARK = 1024 * 1024;

/**
 * `file:relative/path` under a root folder. The relative path is
 * attacker-influenced (manifest content): absolute paths, `..`, empty
 * segments, backslashes and NUL are refused, and after resolving symlinks the
 * file must still lie inside the root.
 */
export function createFileStore(config: FileStoreConfig): Store {
  let rootReal: Promise<string> | undefined;
  const root = () => {
    rootReal ??= realpath(config.root);
    return rootReal;
  };

  async function resolveLocation(location: string): Promise<string> {
    if (!location.startsWith('file:')) {
      throw new ModelgateError('MG_SOURCE_FAILED', `not a file: location: ${location}`);
    }
    const relativePath = location.slice('file:'.length);
    const segments = relativePath.split('/');
    if (
      relativePath === '' ||
      isAbsolute(relativePath) ||
      relativePath.includes('\\') ||
      relativePath.includes('\0') ||
      segments.some((s) => s === '' || s === '.' || s === '..')
    ) {
      throw new ModelgateError(
        'MG_SOURCE_FAILED',
        `file: location escapes the store root: ${JSON.stringify(location)}`,
      );
    }
    const base = await root().catch((error: unknown) => {
      rootReal = undefined;
      throw new ModelgateError('MG_SOURCE_FAILED', `file store root is unreadable: ${config.root}`, {
        cause: error,
      });
    });
    let real: string;
    try {
      real = await realpath(join(base, ...segments));
    } catch (error) {
      throw notFoundOrFailed(error, location);
    }
    const inside = relative(base, real);
    if (inside === '' || inside.startsWith(`..${sep}`) || inside === '..' || isAbsolute(inside)) {
      throw new ModelgateError(
        'MG_SOURCE_FAILED',
        `file: location resolves outside the store root: ${location}`,
      );
    }
    return real;
  }

  /** Opens a location and checks the version pin against the open handle (no race with a rename over it). */
  async function openPinned(location: string, options: ReadOptions) {
    const path = await resolveLocation(location);
    options.signal.throwIfAborted();
    let handle: FileHandle;
    try {
      // O_NOFOLLOW: the final component was checked by realpath above; refuse a swap to a symlink since.
      handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      throw notFoundOrFailed(error, location);
    }
    try {
      const info = await handle.stat({ bigint: true });
      const version = versionOf(info);
      if (options.pin !== undefined && options.pin !== version) {
        throw new ModelgateError(
          'MG_SOURCE_CHANGED',
          `${location} changed: expected version ${options.pin}, got ${version}`,
        );
      }
      return { handle, version, size: Number(info.size) };
    } catch (error) {
      await handle.close().catch(() => {});
      throw error instanceof ModelgateError ? error : notFoundOrFailed(error, location);
    }
  }

  return {
    kind: 'file',
    timeouts: config.timeouts,

    async stat(location: string): Promise<ObjectVersion> {
      const path = await resolveLocation(location);
      try {
        const info = await stat(path, { bigint: true });
        if (!info.isFile())
          throw new ModelgateError('MG_SOURCE_NOT_FOUND', `not a regular file: ${location}`);
        return { size: Number(info.size), version: versionOf(info) };
      } catch (error) {
        throw notFoundOrFailed(error, location);
      }
    },

    async read(location: string, range: ByteRange, options: ReadOptions): Promise<ReadResult> {
      const { handle, version, size } = await openPinned(location, options);
      try {
        if (range.start >= size || range.end <= range.start) {
          await handle.close();
          return { stream: Readable.from([]), version, size };
        }
        const stream = createReadStream('', {
          fd: handle,
          start: range.start,
          end: Math.min(range.end, size) - 1,
          highWaterMark: READ_HIGH_WATER_MARK,
          signal: options.signal,
          autoClose: true,
        });
        return { stream, version, size };
      } catch (error) {
        await handle.close().catch(() => {});
        throw error instanceof ModelgateError ? error : notFoundOrFailed(error, location);
      }
    },

    async readInto(
      location: string,
      range: ByteRange,
      target: Uint8Array,
      options: ReadOptions,
    ): Promise<ReadIntoResult> {
      const { handle, version, size } = await openPinned(location, options);
      try {
        const want = Math.max(0, Math.min(range.end, size) - range.start, 0);
        const length = Math.min(want, target.byteLength);
        let filled = 0;
        while (filled < length) {
          options.signal.throwIfAborted();
          const { bytesRead } = await handle.read(target, filled, length - filled, range.start + filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
        return { bytesRead: filled, version, size };
      } catch (error) {
        throw error instanceof ModelgateError || options.signal.aborted
          ? error
          : notFoundOrFailed(error, location);
      } finally {
        await handle.close().catch(() => {});
      }
    },

    async probe(_locations: readonly string[], signal: AbortSignal): Promise<void> {
      // Opening the folder proves it exists, is a directory and is readable by this process.
      const folder = await opendir(config.root).catch((error: unknown) => {
        const code = (error as NodeJS.ErrnoException).code ?? String(error);
        throw new Error(`root ${config.root} is not a readable folder (${code})`);
      });
      await folder.close();
      signal.throwIfAborted();
    },

    async close(): Promise<void> {},
  };
}

/** Identity of a file's content generation: a rewrite in place or a rename over it changes it. */
function versionOf(info: { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${info.ino.toString(16)}-${info.size.toString(16)}-${info.mtimeNs.toString(16)}-${info.ctimeNs.toString(16)}`;
}

function notFoundOrFailed(error: unknown, location: string): ModelgateError {
  if (error instanceof ModelgateError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new ModelgateError('MG_SOURCE_NOT_FOUND', `no such object: ${location}`, { cause: error });
  }
  if (code === 'ELOOP') {
    return new ModelgateError('MG_SOURCE_FAILED', `symlink refused: ${location}`, { cause: error });
  }
  return new ModelgateError('MG_SOURCE_FAILED', `cannot read ${location}: ${code ?? String(error)}`, {
    cause: error,
  });
}
