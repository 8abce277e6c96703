/**
 * The file store against a real temp folder. Overwrites replace the file by
 * rename (a new inode), as a deploy pipeline would.
 */
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createFileStore } from '../../src/stores/file/file-store.ts';
import { runStoreConformance } from './conformance.ts';

const timeouts = { connectSeconds: 2, firstByteSeconds: 5, idleSeconds: 5 };

runStoreConformance('file', async () => {
  const root = await mkdtemp(join(tmpdir(), 'modelgate-file-store-'));
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
    malformedLocations: ['file:../outside.bin', 'file:/etc/passwd', 'file:a//b', 's3://bucket/key'],
  };
});
