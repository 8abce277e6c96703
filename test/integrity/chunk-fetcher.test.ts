import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isChunked } from '../../src/catalog/manifest.ts';
import type { ChunkedFile } from '../../src/catalog/release.types.ts';
import { createChunkFetcher } from '../../src/integrity/chunk-fetcher.ts';
import { createInlineHasher, createWorkerHasher, type Hasher } from '../../src/integrity/hasher.ts';
import { createMemoryBudget } from '../../src/integrity/memory-budget.ts';
import { createSourceSession } from '../../src/integrity/source-reader.ts';
import { createFileStore } from '../../src/stores/file/file-store.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest } from '../helpers/releases.ts';

const MiB = 1024 * 1024;
const CHUNK_BYTES = MiB + 1;
const CRASHING_WORKER = new URL('./crashing-hash-worker.js', import.meta.url);

async function settle(check: () => boolean) {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
}

describe('the chunk fetcher', () => {
  let dir: string;
  let file: ChunkedFile;
  // Chunk 1 makes the crashing test worker die, chunk 2 makes its hash fail (test/integrity/crashing-hash-worker.js).
  const bytes = randomBytesSeeded(4 * MiB, 31);
  bytes.write('CRASH', MiB, 'latin1');
  bytes.write('FAIL!', 2 * MiB, 'latin1');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-fetcher-'));
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

  function setup(maxBufferedBytes: number, options: { cacheBytes?: number; hasher?: Hasher } = {}) {
    const budget = createMemoryBudget({ maxBytes: maxBufferedBytes });
    const cacheBytes = options.cacheBytes ?? 0;
    const fetcher = createChunkFetcher({
      hasher: options.hasher ?? createInlineHasher(),
      cacheBytes,
      budget,
    });
    const store = createFileStore({
      root: dir,
      timeouts: { connectSeconds: 1, firstByteSeconds: 5, idleSeconds: 5 },
    });
    const session = createSourceSession(file, {
      stores: { forLocation: () => store },
      transfer: {
        readAhead: 4,
        chunkCacheBytes: cacheBytes,
        maxBufferedBytes,
        memoryWaitSeconds: 1,
        hashWorkers: false,
        retries: 0,
        retryBackoffMs: 0,
        retryBackoffMaxMs: 0,
        retryBudgetSeconds: 0,
      },
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger({ level: 'silent' }),
    });
    return { budget, fetcher, session };
  }

  describe('when chunks are held by transfers', () => {
    it('stops reading at the memory limit and reads again once a holder released', async () => {
      const { budget, fetcher, session } = setup(2 * CHUNK_BYTES);
      const signal = new AbortController().signal;
      const first = await fetcher.get(session, 0, signal);
      assert.equal(first.verified, true);
      assert.ok(Buffer.from(first.data).equals(bytes.subarray(0, MiB)));
      const second = await fetcher.get(session, 3, signal);
      const waiting = fetcher.get(session, 1, signal);
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(fetcher.stats().sourceReads, 2);
      assert.equal(budget.waiting(), 1);
      first.release();
      (await waiting).release();
      second.release();
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when two callers ask for the same chunk at once', () => {
    it('reads it once and returns its memory only after both released it', async () => {
      const { budget, fetcher, session } = setup(64 * MiB);
      const signal = new AbortController().signal;
      const untrackA = fetcher.track(file.digest);
      const untrackB = fetcher.track(file.digest);
      const [a, b] = await Promise.all([fetcher.get(session, 3, signal), fetcher.get(session, 3, signal)]);
      assert.equal(fetcher.stats().sourceReads, 1);
      assert.equal(a.data, b.data);
      a.release();
      a.release();
      assert.ok(budget.inUseBytes() > 0, 'still held by the second caller');
      b.release();
      assert.equal(budget.inUseBytes(), 0);
      untrackA();
      untrackB();
    });
  });

  describe('when a chunk is cached while two transfers of the file run', () => {
    it('serves a later caller from memory and gives the cache up under memory pressure', async () => {
      const { budget, fetcher, session } = setup(2 * CHUNK_BYTES, { cacheBytes: 16 * MiB });
      const signal = new AbortController().signal;
      const untrackA = fetcher.track(file.digest);
      const untrackB = fetcher.track(file.digest);
      const a = await fetcher.get(session, 3, signal);
      const b = await fetcher.get(session, 3, signal);
      assert.equal(fetcher.stats().sourceReads, 1);
      assert.equal(fetcher.stats().cacheHits, 1);
      assert.ok(Buffer.from(b.data).equals(bytes.subarray(3 * MiB)));
      a.release();
      b.release();
      // Only the cache holds chunk 3 now; chunk 0 fits beside it, chunk 1 only once the cache gave chunk 3 up.
      const c0 = await fetcher.get(session, 0, signal);
      const c1 = await fetcher.get(session, 1, signal);
      assert.equal(c1.verified, true);
      assert.ok(budget.inUseBytes() <= 2 * CHUNK_BYTES);
      c0.release();
      c1.release();
      untrackA();
      untrackB();
    });
  });

  describe('when the hash worker dies while hashing a chunk', () => {
    it('fails that chunk, returns its memory to the budget, and hashes the next chunk', async () => {
      const hasher = createWorkerHasher({ size: 1, workerUrl: CRASHING_WORKER });
      const { budget, fetcher, session } = setup(8 * MiB, { hasher });
      try {
        const signal = new AbortController().signal;
        await assert.rejects(fetcher.get(session, 1, signal));
        assert.equal(budget.inUseBytes(), 0);
        const next = await fetcher.get(session, 3, signal);
        assert.equal(next.verified, true);
        next.release();
        assert.equal(budget.inUseBytes(), 0);
      } finally {
        await hasher.close();
      }
    });
  });

  describe('when the hash of a chunk fails', () => {
    it('fails that chunk and returns its memory to the budget', async () => {
      const hasher = createWorkerHasher({ size: 1, workerUrl: CRASHING_WORKER });
      const { budget, fetcher, session } = setup(8 * MiB, { hasher });
      try {
        await assert.rejects(fetcher.get(session, 2, new AbortController().signal), /hash worker failed/);
        assert.equal(budget.inUseBytes(), 0);
      } finally {
        await hasher.close();
      }
    });
  });

  describe('when the client goes away', () => {
    it('returns the memory of a read in progress and leaves the queue when waiting', async () => {
      const { budget, fetcher, session } = setup(CHUNK_BYTES);
      const reading = new AbortController();
      const inProgress = fetcher.get(session, 0, reading.signal);
      reading.abort(new Error('client went away'));
      await assert.rejects(inProgress, /client went away/);
      await settle(() => budget.inUseBytes() === 0);
      assert.equal(budget.inUseBytes(), 0);

      const held = await fetcher.get(session, 0, new AbortController().signal);
      const waiting = new AbortController();
      const queued = fetcher.get(session, 3, waiting.signal);
      await settle(() => budget.waiting() === 1);
      waiting.abort(new Error('client went away'));
      await assert.rejects(queued, /client went away/);
      assert.equal(budget.waiting(), 0);
      held.release();
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when the wait for memory is bounded and runs out', () => {
    it('rejects with MG_OVERLOADED without reading the chunk', async () => {
      const { budget, fetcher, session } = setup(CHUNK_BYTES);
      const held = await fetcher.get(session, 0, new AbortController().signal);
      await assert.rejects(fetcher.get(session, 3, new AbortController().signal, { memoryWaitMs: 30 }), {
        code: 'MG_OVERLOADED',
      });
      await settle(() => budget.waiting() === 0);
      assert.equal(fetcher.stats().sourceReads, 1);
      held.release();
      assert.equal(budget.inUseBytes(), 0);
    });
  });
});
