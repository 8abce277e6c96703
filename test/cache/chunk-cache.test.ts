import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createChunkCache } from '../../src/cache/index.ts';
import { entryFolder, entryPath, HOST_TAG } from '../../src/cache/layout.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { startCountingOrigin } from './origin.ts';
import { readThrough } from './read-through.ts';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const signal = () => AbortSignal.timeout(30_000);

async function counted(metrics: ReturnType<typeof createMetrics>, result: string): Promise<number> {
  const values = (await metrics.cacheRequests.get()).values;
  return values.find((value) => value.labels.result === result)?.value ?? 0;
}

/** Bytes of every entry file under the cache directory (what is really on disk). */
async function bytesOnDisk(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(join(dir, 'sha256'), { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

describe('the verified disk cache', () => {
  let root: string;
  let n = 0;
  const freshDir = () => join(root, `cache-${++n}`);
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mg-cache-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('when a chunk was put, returns the same bytes at its content address, and a restarted cache still has them', async () => {
    const dir = freshDir();
    const bytes = randomBytes(100_000);
    const hex = sha256(bytes);
    const first = await createChunkCache({ dir, maxBytes: 1 << 20 });
    await first.put(hex, bytes);
    assert.deepEqual(await readFile(join(dir, 'sha256', hex.slice(0, 2), hex.slice(2, 4), hex)), bytes);
    await first.close();

    const metrics = createMetrics({ defaultMetrics: false });
    const restarted = await createChunkCache({ dir, maxBytes: 1 << 20, metrics });
    assert.equal(restarted.bytes(), bytes.length);
    assert.equal((await metrics.cacheBytes.get()).values[0]?.value, bytes.length);
    assert.deepEqual(await restarted.get(hex, bytes.length, signal()), bytes);
    assert.equal(await counted(metrics, 'hit'), 1);
    await restarted.close();
  });

  it('when an entry is absent, answers a miss and counts it', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const cache = await createChunkCache({ dir: freshDir(), maxBytes: 1 << 20, metrics });
    assert.equal(await cache.get(sha256(Buffer.from('nothing')), 7, signal()), undefined);
    assert.equal(await counted(metrics, 'miss'), 1);
  });

  it('when a byte of an entry is flipped on disk, deletes it, counts corrupt, and the next read goes to the source', async () => {
    const dir = freshDir();
    const bytes = randomBytes(64 * 1024);
    const hex = sha256(bytes);
    const origin = await startCountingOrigin(bytes);
    const metrics = createMetrics({ defaultMetrics: false });
    const cache = await createChunkCache({ dir, maxBytes: 1 << 20, metrics });
    try {
      await cache.put(hex, bytes);
      const onDisk = await readFile(entryPath(dir, hex));
      onDisk[1234] = (onDisk[1234] ?? 0) ^ 0x01;
      await writeFile(entryPath(dir, hex), onDisk);

      const source = async () => new Uint8Array(await (await fetch(origin.url)).arrayBuffer());
      const first = await readThrough(cache, hex, bytes.length, source, signal());
      assert.equal(first.fromSource, true, 'the corrupt entry must not be served');
      assert.deepEqual(Buffer.from(first.bytes), bytes);
      assert.equal(await counted(metrics, 'corrupt'), 1);
      assert.equal(origin.gets(), 1);

      // The source read re-published a good entry: the next read is a verified hit.
      const second = await readThrough(cache, hex, bytes.length, source, signal());
      assert.equal(second.fromSource, false);
      assert.equal(origin.gets(), 1);
    } finally {
      await cache.close();
      await origin.close();
    }
  });

  it('when an entry was truncated on disk, deletes it and answers a miss', async () => {
    const dir = freshDir();
    const bytes = randomBytes(10_000);
    const hex = sha256(bytes);
    const metrics = createMetrics({ defaultMetrics: false });
    const cache = await createChunkCache({ dir, maxBytes: 1 << 20, metrics });
    await cache.put(hex, bytes);
    await writeFile(entryPath(dir, hex), bytes.subarray(0, 9_000));
    assert.equal(await cache.get(hex, bytes.length, signal()), undefined);
    assert.equal(await counted(metrics, 'corrupt'), 1);
    await assert.rejects(stat(entryPath(dir, hex)), { code: 'ENOENT' });
    assert.equal(cache.bytes(), 0);
  });

  it('when distinct entries keep arriving, never holds more than maxBytes on disk and keeps the recently used ones', async () => {
    const dir = freshDir();
    const maxBytes = 1 << 20;
    const cache = await createChunkCache({ dir, maxBytes });
    const chunk = 100 * 1024;
    const first = randomBytes(chunk);
    const firstHex = sha256(first);
    await cache.put(firstHex, first);
    let last = '';
    for (let i = 0; i < 40; i++) {
      // Keep the first entry in use: LRU, not FIFO, must spare it.
      assert.ok(await cache.get(firstHex, chunk, signal()), `entry used before put ${i} is still there`);
      const bytes = randomBytes(chunk);
      last = sha256(bytes);
      await cache.put(last, bytes);
      const onDisk = await bytesOnDisk(dir);
      assert.ok(onDisk <= maxBytes, `after put ${i}: ${onDisk} bytes on disk > ${maxBytes}`);
    }
    assert.equal(await bytesOnDisk(dir), 10 * chunk);
    assert.equal(cache.bytes(), 10 * chunk);
    assert.ok(await cache.get(last, chunk, signal()));
  });

  it('when a whole-mode file was cached, getFile hashes it all and returns its path; a flipped byte makes it a counted miss', async () => {
    const dir = freshDir();
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    const hex = sha256(bytes);
    const source = join(root, `whole-${n}.bin`);
    await writeFile(source, bytes);
    const metrics = createMetrics({ defaultMetrics: false });
    const cache = await createChunkCache({ dir, maxBytes: 1 << 24, metrics });
    await cache.putFile(hex, source);
    const path = await cache.getFile(hex, bytes.length, signal());
    assert.equal(path, entryPath(dir, hex));
    assert.deepEqual(await readFile(path ?? ''), bytes);
    assert.equal(cache.bytes(), bytes.length);

    const onDisk = await readFile(entryPath(dir, hex));
    onDisk[onDisk.length - 1] = (onDisk[onDisk.length - 1] ?? 0) ^ 0x80;
    await writeFile(entryPath(dir, hex), onDisk);
    assert.equal(await cache.getFile(hex, bytes.length, signal()), undefined);
    assert.equal(await counted(metrics, 'corrupt'), 1);
    await assert.rejects(stat(entryPath(dir, hex)), { code: 'ENOENT' });
    assert.equal(cache.bytes(), 0);
  });

  it('when a whole file is written through openFile, only a committed complete file becomes an entry', async () => {
    const dir = freshDir();
    const bytes = randomBytes(300_000);
    const hex = sha256(bytes);
    const cache = await createChunkCache({ dir, maxBytes: 1 << 20 });
    const folderFiles = async () => readdir(entryFolder(dir, hex)).catch((): string[] => []);

    const aborted = await cache.openFile(hex, bytes.length);
    assert.ok(aborted);
    await aborted.write(bytes.subarray(0, 1000));
    await aborted.abort();
    assert.deepEqual(await folderFiles(), [], 'an aborted write leaves nothing behind');

    const short = await cache.openFile(hex, bytes.length);
    assert.ok(short);
    await short.write(bytes.subarray(0, bytes.length - 1));
    await short.commit();
    assert.deepEqual(await folderFiles(), [], 'a write shorter than the size is not committed');

    const writer = await cache.openFile(hex, bytes.length);
    assert.ok(writer);
    await writer.write(bytes.subarray(0, 100_000));
    assert.ok(!(await folderFiles()).includes(hex), 'invisible until committed');
    await writer.write(bytes.subarray(100_000));
    await writer.commit();
    assert.deepEqual(await folderFiles(), [hex]);
    assert.equal(await cache.getFile(hex, bytes.length, signal()), entryPath(dir, hex));
    assert.equal(await cache.openFile(hex, 2 << 20), undefined, 'a file over maxBytes is not cached');
    await cache.close();
  });

  it('when a crashed writer left a temp file, sweeps it at start and never lists it as an entry', async () => {
    const dir = freshDir();
    const hex = sha256(Buffer.from('x'));
    // pid 2^22+1 is above Linux's pid_max limit: no such process.
    const orphan = join(entryFolder(dir, hex), `.tmp.${HOST_TAG}.4194305.abcdef`);
    await (await createChunkCache({ dir, maxBytes: 1 << 20 })).close();
    await import('node:fs/promises').then(({ mkdir }) => mkdir(entryFolder(dir, hex), { recursive: true }));
    await writeFile(orphan, 'partial');
    const cache = await createChunkCache({ dir, maxBytes: 1 << 20 });
    await assert.rejects(stat(orphan), { code: 'ENOENT' });
    assert.equal(cache.bytes(), 0);
  });

  it('when a claim was left by a process that died, breaks it and owns the read', async () => {
    const dir = freshDir();
    const hex = sha256(Buffer.from('y'));
    const cache = await createChunkCache({ dir, maxBytes: 1 << 20 });
    await import('node:fs/promises').then(({ mkdir }) => mkdir(join(dir, 'claims'), { recursive: true }));
    await writeFile(join(dir, 'claims', hex), `${HOST_TAG} 4194305\n`);
    const claim = await cache.claim(hex, signal());
    assert.equal(claim.owner, true);
    if (claim.owner) await claim.release();
    await assert.rejects(stat(join(dir, 'claims', hex)), { code: 'ENOENT' });
  });

  it('when a fresh claim names a process of another host (another pod), waits instead of judging its pid', async () => {
    const dir = freshDir();
    const hex = sha256(Buffer.from('w'));
    const cache = await createChunkCache({ dir, maxBytes: 1 << 20, staleMs: 60_000 });
    await import('node:fs/promises').then(({ mkdir }) => mkdir(join(dir, 'claims'), { recursive: true }));
    const path = join(dir, 'claims', hex);
    await writeFile(path, 'ffffffff 4194305\n');
    const waiting = AbortSignal.timeout(300);
    await assert.rejects(cache.claim(hex, waiting), { name: 'TimeoutError' });
    await rm(path);
    const claim = await cache.claim(hex, signal());
    assert.equal(claim.owner, true);
    if (claim.owner) await claim.release();
  });

  it('when a live claim is not refreshed within staleMs, breaks it', async () => {
    const dir = freshDir();
    const hex = sha256(Buffer.from('z'));
    const cache = await createChunkCache({ dir, maxBytes: 1 << 20, staleMs: 500 });
    await import('node:fs/promises').then(({ mkdir }) => mkdir(join(dir, 'claims'), { recursive: true }));
    const path = join(dir, 'claims', hex);
    await writeFile(path, `${HOST_TAG} ${process.ppid}\n`); // a live pid that never refreshes it
    const old = new Date(Date.now() - 10_000);
    await utimes(path, old, old);
    const claim = await cache.claim(hex, signal());
    assert.equal(claim.owner, true);
    if (claim.owner) await claim.release();
  });
  it('when several writes land at once while another write rescans the folder, every entry stays', async () => {
    // An entry being written is counted before it is visible: a rescan or a miss meanwhile must not drop it.
    const dir = freshDir();
    // maxBytes / 16 = 512 KiB: every write below triggers a rescan while the others are in flight.
    const cache = await createChunkCache({ dir, maxBytes: 8 << 20 });
    const chunks = Array.from({ length: 6 }, () => randomBytes(1 << 20));
    const misses = chunks.map((bytes) => cache.get(sha256(bytes), bytes.length, signal()));
    await Promise.all([...chunks.map((bytes) => cache.put(sha256(bytes), bytes)), ...misses]);
    for (const bytes of chunks) {
      assert.equal((await stat(entryPath(dir, sha256(bytes)))).size, bytes.length, 'the entry is on disk');
    }
    assert.equal(await bytesOnDisk(dir), 6 << 20);
    assert.equal(cache.bytes(), 6 << 20);
    await cache.close();
  });
});
