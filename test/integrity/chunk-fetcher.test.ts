import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ManifestFile } from '../../src/catalog/release.types.ts';
import { createBufferPool } from '../../src/integrity/buffer-pool.ts';
import { createChunkFetcher } from '../../src/integrity/chunk-fetcher.ts';
import { createInlineHasher } from '../../src/integrity/hasher.ts';
import { createSourceSession } from '../../src/integrity/source-reader.ts';
import { createFileStore } from '../../src/stores/file/file-store.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest } from '../helpers/releases.ts';

const MiB = 1024 * 1024;

describe('the chunk fetcher', () => {
  let dir: string;
  let file: ManifestFile;
  const bytes = randomBytesSeeded(4 * MiB, 31);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-fetcher-'));
    await writeFile(join(dir, 'm.bin'), bytes);
    file = buildManifest({
      model: 'm',
      version: '1',
      environment: 'prod',
      files: [{ path: 'm.bin', bytes, sources: ['file:m.bin'] }],
    }).files[0]!;
  });
  after(() => rm(dir, { recursive: true, force: true }));

  function setup(maxBufferedBytes: number, cacheBytes = 0) {
    const pool = createBufferPool({ maxFreeBytes: 8 * MiB });
    const fetcher = createChunkFetcher({ hasher: createInlineHasher(), cacheBytes, maxBufferedBytes, pool });
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
        hashWorkers: false,
        retries: 0,
        retryBackoffMs: 0,
        retryBackoffMaxMs: 0,
        retryBudgetSeconds: 0,
      },
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger({ level: 'silent' }),
    });
    return { pool, fetcher, session };
  }

  describe('when chunks are held by transfers', () => {
    it('reports pressure at the live-memory limit and frees it once every holder released', async () => {
      const { pool, fetcher, session } = setup(2 * MiB);
      const signal = new AbortController().signal;
      const first = await fetcher.get(session, 0, signal);
      assert.equal(first.verified, true);
      assert.ok(Buffer.from(first.data).equals(bytes.subarray(0, MiB)));
      assert.equal(fetcher.underPressure(), false);
      const second = await fetcher.get(session, 1, signal);
      assert.equal(fetcher.underPressure(), true);
      first.release();
      second.release();
      assert.equal(pool.inUseBytes(), 0);
      assert.equal(fetcher.underPressure(), false);
    });
  });

  describe('when two callers ask for the same chunk at once', () => {
    it('reads it once and returns its buffer to the pool only after both released it', async () => {
      const { pool, fetcher, session } = setup(64 * MiB);
      const signal = new AbortController().signal;
      const untrackA = fetcher.track(file.digest);
      const untrackB = fetcher.track(file.digest);
      const [a, b] = await Promise.all([fetcher.get(session, 2, signal), fetcher.get(session, 2, signal)]);
      assert.equal(fetcher.stats().sourceReads, 1);
      assert.equal(a, b);
      a.release();
      assert.ok(pool.inUseBytes() > 0, 'still held by the second caller');
      b.release();
      assert.equal(pool.inUseBytes(), 0);
      untrackA();
      untrackB();
    });
  });

  describe('when a chunk is cached while two transfers of the file run', () => {
    it('serves a later caller from memory without a source read', async () => {
      const { fetcher, session } = setup(64 * MiB, 16 * MiB);
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
      untrackA();
      untrackB();
    });
  });
});
