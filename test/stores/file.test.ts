/**
 * The file store against a real temp folder. Overwrites replace the file by
 * rename (a new inode), as a deploy pipeline would.
 */
import { mkdir, mkdtemp, readdir, readlink, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createFileStore } from '../../src/stores/file/file-store.ts';
import { runStoreConformance } from './conformance.ts';

const timeouts = { connectSeconds: 2, firstByteSeconds: 5, idleSeconds: 5 };

runStoreConformance('file', async () => {
  // The real path: /proc/self/fd links name files by their resolved path.
  const root = await realpath(await mkdtemp(join(tmpdir(), 'modelgate-file-store-')));
  const pathOf = (location: string) => join(root, location.slice('file:'.length));
  const write = async (path: string, bytes: Uint8Array) => {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(`${path}.tmp`, bytes);
    await rename(`${path}.tmp`, path);
  };
  return {
    store: createFileStore({ root, timeouts }),
    async put(key, bytes) {
      await write(join(root, key), bytes);
      return `file:${key}`;
    },
    overwrite: (location, bytes) => write(pathOf(location), bytes),
    remove: (location) => rm(pathOf(location)),
    teardown: () => rm(root, { recursive: true, force: true }),
    // Real descriptors of this process that point at the object's file (Linux /proc).
    async openHandles(location) {
      const target = pathOf(location);
      const fds = await readdir('/proc/self/fd');
      const links = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
      return links.filter((link) => link === target).length;
    },
    malformedLocations: ['file:../outside.bin', 'file:/etc/passwd', 'file:a//b', 's3://bucket/key'],
  };
});
