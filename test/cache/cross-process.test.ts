import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createChunkCache } from '../../src/cache/index.ts';
import { entryFolder, entryPath } from '../../src/cache/layout.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { startCacheChild } from './child.ts';
import { startCountingOrigin } from './origin.ts';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Bytes of every entry file under the cache directory (what is really on disk). */
async function bytesOnDisk(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(join(dir, 'sha256'), { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && !entry.name.startsWith('.tmp.'))
      total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

describe('the disk cache shared by processes', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mg-cache-x-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('when a writer is killed with SIGKILL in the middle of a large put, a new cache never serves that entry', async () => {
    const dir = join(root, 'killed');
    const size = 512 * 1024 * 1024;
    const hex = sha256(Buffer.alloc(size, 7));
    const folder = entryFolder(dir, hex);
    const child = startCacheChild(['put-large', dir, hex, String(size)]);
    await child.waitFor('writing');
    // Kill as soon as a file in the entry's folder (the temp file, or the entry itself if writes were not
    // atomic) holds some bytes, long before 512 MiB are written and synced.
    let killedMidWrite = false;
    for (let i = 0; i < 20_000 && !killedMidWrite; i++) {
      for (const name of await readdir(folder).catch(() => [] as string[])) {
        const written = (await stat(join(folder, name)).catch(() => undefined))?.size ?? 0;
        if (written > 0 && written < size && !killedMidWrite) {
          child.process.kill('SIGKILL');
          killedMidWrite = true;
        }
      }
      await sleep(1);
    }
    await child.exited;
    assert.ok(killedMidWrite, 'the writer was killed while its temp file was partly written');
    // Nothing half-written is ever at the entry's address.
    await assert.rejects(stat(entryPath(dir, hex)), { code: 'ENOENT' });

    const metrics = createMetrics({ defaultMetrics: false });
    const cache = await createChunkCache({ dir, maxBytes: 4 * 1024 ** 3, metrics });
    assert.equal(await cache.get(hex, size, AbortSignal.timeout(30_000)), undefined);
    const results = (await metrics.cacheRequests.get()).values.map((v) => [v.labels.result, v.value]);
    assert.deepEqual(results, [['miss', 1]]);
    assert.deepEqual(
      (await readdir(folder)).filter((name) => name.startsWith('.tmp.')),
      [],
      'the dead writer’s temp file was swept at start',
    );
    assert.equal(cache.bytes(), 0);
    await cache.close();
  });

  it('when two processes keep writing distinct entries, the shared directory stays within maxBytes plus their unseen slices', async () => {
    const dir = join(root, 'bounded');
    const maxBytes = 2 * 1024 * 1024;
    const each = 64 * 1024;
    const args = ['put-many', dir, String(maxBytes), '200', String(each)];
    const children = [startCacheChild(args), startCacheChild(args)];
    await Promise.all(children.map((child) => child.waitFor('ready')));
    for (const child of children) child.process.stdin?.write('go\n');
    await Promise.all(children.map((child) => child.waitFor('done')));
    await Promise.all(children.map((child) => child.exited));
    // 2 × 200 × 64 KiB = 25 MiB were written; each writer rescans after maxBytes/16 of its own writes.
    const onDisk = await bytesOnDisk(dir);
    assert.ok(onDisk <= maxBytes + 2 * (maxBytes / 16), `${onDisk} bytes on disk`);
    assert.ok(onDisk >= maxBytes / 2, `${onDisk} bytes on disk: eviction is by need, not wholesale`);
    // A restart counts what is really there, and brings it within maxBytes.
    const cache = await createChunkCache({ dir, maxBytes });
    assert.ok(cache.bytes() <= maxBytes);
    assert.equal(cache.bytes(), await bytesOnDisk(dir));
    await cache.close();
  });

  it('when two processes miss the same chunk at once, the source is read once and both get verified bytes', async () => {
    const dir = join(root, 'shared');
    const body = randomBytes(2 * 1024 * 1024);
    const hex = sha256(body);
    // The origin answers late so the second process certainly asks while the first one reads.
    const origin = await startCountingOrigin(body, 1_000);
    try {
      const args = ['read-through', dir, hex, String(body.length), origin.url];
      const children = [startCacheChild(args), startCacheChild(args)];
      await Promise.all(children.map((child) => child.waitFor('ready')));
      for (const child of children) child.process.stdin?.write('go\n');
      const done = await Promise.all(children.map((child) => child.waitFor('done')));
      await Promise.all(children.map((child) => child.exited));
      assert.equal(origin.gets(), 1, 'one source read for the chunk');
      assert.deepEqual(done.map((line) => line.digest).sort(), [hex, hex]);
      assert.deepEqual(done.map((line) => line.fromSource).sort(), [false, true]);
    } finally {
      await origin.close();
    }
  });
});
