import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createChunkCache } from '../../src/cache/index.ts';
import { isChunked } from '../../src/catalog/manifest.ts';
import type { ChunkedFile, WholeFile } from '../../src/catalog/release.types.ts';
import { createChunkFetcher } from '../../src/integrity/chunk-fetcher.ts';
import { createInlineHasher } from '../../src/integrity/hasher.ts';
import { createMemoryBudget } from '../../src/integrity/memory-budget.ts';
import { createSourceSession } from '../../src/integrity/source-reader.ts';
import {
  sendChunked,
  sendWholeFile,
  type TransferTarget,
  type WholeFileCache,
} from '../../src/integrity/transfer.ts';
import { createFileStore } from '../../src/stores/file/file-store.ts';
import type { Store } from '../../src/stores/store.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest } from '../helpers/releases.ts';
import { transferConfig } from '../helpers/transfer-config.ts';

const MiB = 1024 * 1024;
const CHUNKS = 8;

/** The file store, counting the reads it is asked for. */
function countingStore(store: Store) {
  const counter = { reads: 0 };
  const counted: Store = {
    ...store,
    read: (...args) => {
      counter.reads++;
      return store.read(...args);
    },
    ...(store.readInto
      ? {
          readInto: (...args: Parameters<NonNullable<Store['readInto']>>) => {
            counter.reads++;
            return store.readInto?.(...args) ?? Promise.reject(new Error('no readInto'));
          },
        }
      : {}),
  };
  return { store: counted, counter };
}

/** A client that stops reading: each write completes only when the test lets it. */
function pausedTarget() {
  const received: Buffer[] = [];
  let open: () => void = () => {};
  let gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  let paused = true;
  const target: TransferTarget = {
    headersSent: false,
    async write(bytes) {
      if (paused) await gate;
      received.push(Buffer.from(bytes));
    },
    async end() {},
  };
  return {
    target,
    received,
    resume() {
      paused = false;
      open();
      gate = Promise.resolve();
    },
  };
}

describe('a chunk-mode transfer under memory pressure', () => {
  let dir: string;
  let file: ChunkedFile;
  const bytes = randomBytesSeeded(CHUNKS * MiB, 41);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-transfer-'));
    await writeFile(join(dir, 'm.bin'), bytes);
    const entry = buildManifest({
      model: 'm',
      version: '1',
      environment: 'prod',
      files: [{ path: 'm.bin', bytes, sources: ['file:m.bin'] }],
    }).files[0];
    assert.ok(entry && isChunked(entry));
    file = entry;
  });
  after(() => rm(dir, { recursive: true, force: true }));

  describe('when its client stops reading and the budget holds two chunks', () => {
    it('stops reading from the source at two chunks, then finishes once the client reads again', async () => {
      const budget = createMemoryBudget({ maxBytes: 2 * (MiB + 1) });
      const fetcher = createChunkFetcher({ hasher: createInlineHasher(), cacheBytes: 0, budget });
      const { store, counter } = countingStore(
        createFileStore({ root: dir, timeouts: { connectSeconds: 1, firstByteSeconds: 5, idleSeconds: 5 } }),
      );
      const session = createSourceSession(file, {
        stores: { forLocation: () => store },
        transfer: transferConfig({
          readAhead: CHUNKS,
          maxBufferedBytes: 2 * (MiB + 1),
          memoryWaitSeconds: 5,
        }),
        metrics: createMetrics({ defaultMetrics: false }),
        logger: createLogger({ level: 'silent' }),
      });
      const client = pausedTarget();
      const done = sendChunked({
        session,
        target: client.target,
        signal: new AbortController().signal,
        onMismatch: 'fail',
        onViolation: () => assert.fail('no violation expected'),
        memoryWaitMs: 5000,
        fetcher,
        range: { start: 0, end: file.size },
      });
      await new Promise((r) => setTimeout(r, 300));
      // Chunk 0 waits for the socket, chunk 1 was read ahead; nothing more fits, so nothing more is read.
      assert.equal(counter.reads, 2);
      assert.ok(budget.inUseBytes() <= 2 * (MiB + 1));
      client.resume();
      assert.deepEqual(await done, { bytes: CHUNKS * MiB });
      assert.ok(Buffer.concat(client.received).equals(bytes));
      assert.equal(counter.reads, CHUNKS);
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when the client goes away while chunks are held and read ahead', () => {
    it('returns every byte of the budget', async () => {
      const budget = createMemoryBudget({ maxBytes: 4 * (MiB + 1) });
      const fetcher = createChunkFetcher({ hasher: createInlineHasher(), cacheBytes: 0, budget });
      const store = createFileStore({
        root: dir,
        timeouts: { connectSeconds: 1, firstByteSeconds: 5, idleSeconds: 5 },
      });
      const session = createSourceSession(file, {
        stores: { forLocation: () => store },
        transfer: transferConfig({ readAhead: 4, maxBufferedBytes: 4 * (MiB + 1), memoryWaitSeconds: 5 }),
        metrics: createMetrics({ defaultMetrics: false }),
        logger: createLogger({ level: 'silent' }),
      });
      const client = new AbortController();
      const target: TransferTarget = {
        headersSent: true,
        write: () =>
          new Promise((_resolve, reject) => {
            client.signal.addEventListener('abort', () => reject(client.signal.reason), { once: true });
          }),
        async end() {},
      };
      const done = sendChunked({
        session,
        target,
        signal: client.signal,
        onMismatch: 'fail',
        onViolation: () => {},
        memoryWaitMs: 5000,
        fetcher,
        range: { start: 0, end: file.size },
      });
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(budget.inUseBytes() > 0);
      client.abort(new Error('client went away'));
      await assert.rejects(done, /client went away/);
      for (let i = 0; i < 100 && budget.inUseBytes() > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(budget.inUseBytes(), 0);
      assert.equal(budget.waiting(), 0);
    });
  });
});

describe('a whole-file transfer with the disk cache', () => {
  let dir: string;
  let file: WholeFile;
  const bytes = randomBytesSeeded(3 * MiB + 17, 43);
  const hex = createHash('sha256').update(bytes).digest('hex');
  const timeouts = { connectSeconds: 1, firstByteSeconds: 5, idleSeconds: 5 };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-whole-'));
    const entry = buildManifest({
      model: 'm',
      version: '1',
      environment: 'prod',
      files: [{ path: 'm.bin', bytes, sources: ['file:m.bin'], chunkSize: null }],
    }).files[0];
    assert.ok(entry && !isChunked(entry));
    file = entry;
  });
  after(() => rm(dir, { recursive: true, force: true }));

  function start(
    root: string,
    cache: WholeFileCache,
    target: TransferTarget,
    logger = createLogger({ level: 'silent' }),
  ) {
    const { store, counter } = countingStore(createFileStore({ root, timeouts }));
    const session = createSourceSession(file, {
      stores: { forLocation: () => store },
      transfer: transferConfig({ readAhead: 4, maxBufferedBytes: 8 * MiB, memoryWaitSeconds: 5 }),
      metrics: createMetrics({ defaultMetrics: false }),
      logger,
    });
    const done = sendWholeFile({
      session,
      target,
      signal: new AbortController().signal,
      onMismatch: 'fail',
      onViolation: () => {},
      memoryWaitMs: 5000,
      budget: createMemoryBudget({ maxBytes: 8 * MiB }),
      cache,
    });
    return { done, counter };
  }

  /** A client that keeps every piece with the origin it was labelled with. */
  function collect() {
    const pieces: Array<{ bytes: Buffer; store: string }> = [];
    const target: TransferTarget = {
      headersSent: true,
      async write(piece, store) {
        pieces.push({ bytes: Buffer.from(piece), store });
      },
      async end() {},
    };
    return {
      target,
      body: () => Buffer.concat(pieces.map((p) => p.bytes)),
      stores: () => new Set(pieces.map((p) => p.store)),
    };
  }

  /** A source folder `name` under the test folder holding m.bin. */
  async function sourceRoot(name: string, content: Buffer = bytes) {
    const root = join(dir, name);
    await mkdir(root, { recursive: true });
    await writeFile(join(root, 'm.bin'), content);
    return root;
  }

  /** A logger at warn level whose lines are kept, parsed. */
  function warningLog() {
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger({
      level: 'warn',
      destination: { write: (line: string) => lines.push(JSON.parse(line)) },
    });
    return { logger, lines };
  }

  describe('when the source holds other bytes than the manifest', () => {
    it('fails the transfer and caches nothing', async () => {
      const wrong = Buffer.from(bytes);
      wrong[MiB] = (wrong[MiB] ?? 0) ^ 1;
      const root = await sourceRoot('wrong', wrong);
      const cacheDir = join(dir, 'cache-wrong');
      const cache = await createChunkCache({ dir: cacheDir, maxBytes: 64 * MiB });
      const { done } = start(root, cache, collect().target);
      await assert.rejects(done, (error: { code?: string }) => error.code === 'MG_DIGEST_MISMATCH');
      const left = await readdir(join(cacheDir, 'sha256'), { recursive: true, withFileTypes: true });
      assert.deepEqual(
        left.filter((entry) => entry.isFile()).map((entry) => entry.name),
        [],
        'no entry and no temp file remain',
      );
      await cache.close();
    });
  });

  describe('when the cached copy vanishes after it was checked', () => {
    it('reads the sources instead and sends the verified bytes', async () => {
      const root = await sourceRoot('right');
      const real = await createChunkCache({ dir: join(dir, 'cache-vanish'), maxBytes: 64 * MiB });
      await real.putFile(hex, join(root, 'm.bin'));
      const cache: WholeFileCache = {
        async getFile(...args) {
          const path = await real.getFile(...args);
          if (path !== undefined) await unlink(path); // evicted by another process right after the check
          return path;
        },
        openFile: (...args) => real.openFile(...args),
      };
      const client = collect();
      const { done, counter } = start(root, cache, client.target);
      assert.deepEqual(await done, { bytes: bytes.length });
      assert.ok(client.body().equals(bytes));
      assert.equal(counter.reads, 1);
      await real.close();
    });
  });

  describe('when the client goes away while the cached copy is sent', () => {
    it('fails the transfer without reading the sources', async () => {
      const root = await sourceRoot('gone');
      const cache = await createChunkCache({ dir: join(dir, 'cache-gone'), maxBytes: 64 * MiB });
      await cache.putFile(hex, join(root, 'm.bin'));
      let writes = 0;
      const target: TransferTarget = {
        headersSent: true,
        async write() {
          if (++writes === 2) throw new Error('client went away');
        },
        async end() {},
      };
      const { done, counter } = start(root, cache, target);
      await assert.rejects(done, /client went away/);
      assert.equal(counter.reads, 0, 'a failed send is not a reason to read the sources');
      await cache.close();
    });
  });
  describe('when a whole file is read from its source with the cache on', () => {
    it('keeps a verified copy once the digest matched, and the next transfer reads only that copy', async () => {
      const root = await sourceRoot('fill');
      const { logger, lines: warnings } = warningLog();
      const cache = await createChunkCache({ dir: join(dir, 'cache-fill'), maxBytes: 64 * MiB });
      const cold = collect();
      const first = start(root, cache, cold.target, logger);
      assert.deepEqual(await first.done, { bytes: bytes.length });
      assert.ok(cold.body().equals(bytes));
      assert.deepEqual([...cold.stores()], ['file']);
      assert.equal(first.counter.reads, 1);
      assert.deepEqual(warnings, [], 'a cache miss is not a failed cache read');

      const path = await cache.getFile(hex, bytes.length, new AbortController().signal);
      assert.ok(path !== undefined, 'the verified file was committed to the cache');

      const warm = collect();
      const second = start(root, cache, warm.target, logger);
      assert.deepEqual(await second.done, { bytes: bytes.length });
      assert.ok(warm.body().equals(bytes));
      assert.deepEqual([...warm.stores()], ['cache'], 'every piece comes from the cached copy');
      assert.equal(second.counter.reads, 0, 'the source is not read again');
      await cache.close();
    });
  });

  describe('when the cached copy cannot be read', () => {
    it('logs cache_read_failed once and sends the verified bytes from the source', async () => {
      const root = await sourceRoot('unreadable');
      const real = await createChunkCache({ dir: join(dir, 'cache-unreadable'), maxBytes: 64 * MiB });
      // A checked copy that is a folder by the time it is read: the read fails with EISDIR.
      const folder = join(dir, 'not-a-file');
      await mkdir(folder, { recursive: true });
      const cache: WholeFileCache = {
        getFile: async () => folder,
        openFile: (...args) => real.openFile(...args),
      };
      const { logger, lines: warnings } = warningLog();
      const client = collect();
      const { done, counter } = start(root, cache, client.target, logger);
      assert.deepEqual(await done, { bytes: bytes.length });
      assert.ok(client.body().equals(bytes));
      assert.deepEqual([...client.stores()], ['file']);
      assert.equal(counter.reads, 1);
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0]?.event, 'cache_read_failed');
      assert.equal(warnings[0]?.file, 'm.bin');
      await real.close();
    });
  });
});
