/**
 * Promises of the chunk fetcher (src/integrity/chunk-fetcher.ts) that a
 * mutation run found unguarded (issue 18): discarded chunk memory is never
 * pooled again, MG_OVERLOADED asks clients to come back, streamed chunks that
 * arrive in several pieces land at the right offsets, the verified disk cache
 * serves the short last chunk and shares one source read between processes,
 * a read that got its memory refuses none of its callers, and the memory
 * cache counts transfers and bytes correctly. Chunks are 256 KiB, larger than
 * one stream piece and large enough for the hash worker.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createChunkCache } from '../../src/cache/index.ts';
import type { ChunkedFile } from '../../src/catalog/release.types.ts';
import { createInlineHasher, createWorkerHasher, type Hasher } from '../../src/integrity/hasher.ts';
import { type FetcherFixture, live, settle, startFetcherFixture } from '../helpers/chunk-fetcher-fixture.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';

const CHUNK = 256 * 1024;
/** The last chunk (index 3) is short, and still several stream pieces long. */
const SIZE = 3 * CHUNK + 100_000;
const LEASE = CHUNK + 1;
const BYTES = randomBytesSeeded(SIZE, 18);
const TAMPERED = Buffer.from(BYTES);
TAMPERED[CHUNK + 7] = (TAMPERED[CHUNK + 7] ?? 0) ^ 1;
const OBJECTS: Record<string, Buffer> = {
  'good.bin': BYTES,
  'tampered.bin': TAMPERED,
  'long.bin': Buffer.concat([BYTES, Buffer.from('x')]),
  // Two source lists whose locations run together into the same text: ['file:a', 'file:b'] and ['file:afile:b'].
  a: BYTES,
  'afile:b': BYTES,
};

const hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const chunkOf = (index: number) => BYTES.subarray(index * CHUNK, Math.min(SIZE, (index + 1) * CHUNK));

async function withCacheDir<T>(run: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'modelgate-fetcher-survivors-disk-'));
  try {
    return await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('the chunk fetcher, guarding what a mutation run found unguarded', () => {
  let fx: FetcherFixture;
  before(async () => {
    fx = await startFetcherFixture({ chunkSize: CHUNK, bytes: BYTES, objects: OBJECTS });
  });
  after(() => fx.close());

  /** Sends GCS bodies in pieces of `bytesPerTick` every 10 ms while `run` runs. */
  async function withSlowGcs<T>(bytesPerTick: number, run: () => Promise<T>): Promise<T> {
    fx.gcs.setBodyRate(bytesPerTick);
    try {
      return await run();
    } finally {
      fx.gcs.setBodyRate(0);
    }
  }

  describe('when a chunk is released', () => {
    it('gives its memory back to the pool, and the next read reuses it', async () => {
      const { budget, fetcher } = fx.fetcherWith();
      const session = fx.sessionFor('file', 'good.bin');
      (await fetcher.get(session, 0, live())).release();
      assert.equal(budget.inUseBytes(), 0);
      assert.equal(budget.stats().pool.freeBytes, LEASE);
      const next = await fetcher.get(session, 1, live());
      assert.deepEqual(Buffer.from(next.data), chunkOf(1));
      next.release();
      assert.deepEqual(budget.stats().pool, { allocated: 1, reused: 1, freeBytes: LEASE });
    });
  });

  describe('when one holder of a shared chunk discards it', () => {
    it('never pools that memory again, even though another holder releases last', async () => {
      const { budget, fetcher } = fx.fetcherWith();
      const session = fx.sessionFor('file', 'good.bin');
      const [cut, finished] = await Promise.all([
        fetcher.get(session, 0, live()),
        fetcher.get(session, 0, live()),
      ]);
      assert.equal(fetcher.stats().shared, 1);
      cut.discard();
      cut.release();
      assert.equal(budget.inUseBytes(), LEASE, 'the other holder still has the chunk');
      assert.deepEqual(Buffer.from(finished.data), chunkOf(0));
      finished.release();
      assert.equal(budget.inUseBytes(), 0);
      assert.equal(
        budget.stats().pool.freeBytes,
        0,
        'a cut socket write may still read the discarded memory',
      );
      (await fetcher.get(session, 1, live())).release();
      assert.deepEqual(budget.stats().pool, { allocated: 2, reused: 0, freeBytes: LEASE });
    });

    it('returns the reservation of a lone discarded chunk to the budget', async () => {
      const { budget, fetcher } = fx.fetcherWith();
      const chunk = await fetcher.get(fx.sessionFor('file', 'good.bin'), 0, live());
      chunk.discard();
      assert.equal(budget.inUseBytes(), 0);
      assert.equal(budget.stats().pool.freeBytes, 0);
    });
  });

  describe('when a chunk was hashed on a hash worker', () => {
    it('takes its memory back from the worker, so a released chunk is pooled whole', async () => {
      const hasher = createWorkerHasher({ size: 1 });
      try {
        const { budget, fetcher } = fx.fetcherWith({ hasher });
        const session = fx.sessionFor('file', 'good.bin');
        const first = await fetcher.get(session, 0, live());
        assert.equal(first.verified, true);
        assert.deepEqual(Buffer.from(first.data), chunkOf(0));
        first.release();
        assert.equal(budget.stats().pool.freeBytes, LEASE);
        (await fetcher.get(session, 1, live())).release();
        assert.deepEqual(budget.stats().pool, { allocated: 1, reused: 1, freeBytes: LEASE });
      } finally {
        await hasher.close();
      }
    });
  });

  describe('when no chunk memory frees up within memoryWaitMs', () => {
    it('refuses with MG_OVERLOADED, a Retry-After of 5 seconds and the wait in its message', async () => {
      const { budget, fetcher } = fx.fetcherWith({ maxBytes: LEASE });
      const session = fx.sessionFor('file', 'good.bin');
      const held = await fetcher.get(session, 0, live());
      await assert.rejects(fetcher.get(session, 1, live(), { memoryWaitMs: 50 }), (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.equal((error as { code?: string }).code, 'MG_OVERLOADED');
        assert.equal((error as { status?: number }).status, 503);
        assert.deepEqual((error as { headers?: unknown }).headers, { 'Retry-After': '5' });
        assert.match(error.message, /within 50 ms/);
        return true;
      });
      await settle(() => budget.waiting() === 0);
      assert.equal(budget.waiting(), 0, 'the refused read stopped waiting for memory');
      held.release();
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when a streamed chunk arrives in several pieces', () => {
    it('puts every piece at its offset, the short last chunk included', async () => {
      await withSlowGcs(32 * 1024, async () => {
        const { budget, fetcher } = fx.fetcherWith();
        const session = fx.sessionFor('gcs', 'good.bin');
        for (const index of [1, 3]) {
          const chunk = await fetcher.get(session, index, live());
          assert.equal(chunk.store, 'gcs');
          assert.equal(chunk.data.byteLength, chunkOf(index).byteLength);
          assert.ok(Buffer.from(chunk.data).equals(chunkOf(index)), `chunk ${index} holds exactly its bytes`);
          assert.equal(chunk.verified, true);
          assert.equal(chunk.extra, false);
          assert.equal(chunk.short, false);
          chunk.release();
        }
        assert.equal(budget.inUseBytes(), 0);
      });
    });

    it('marks the last chunk extra when its final piece carries a byte past the file, and keeps only its bytes', async () => {
      await withSlowGcs(32 * 1024, async () => {
        const { fetcher } = fx.fetcherWith();
        const last = await fetcher.get(fx.sessionFor('gcs', 'long.bin'), 3, live());
        assert.equal(last.extra, true);
        assert.equal(last.short, false);
        assert.equal(last.verified, false);
        assert.equal(last.data.byteLength, SIZE - 3 * CHUNK);
        assert.ok(Buffer.from(last.data).equals(chunkOf(3)));
        assert.equal(last.actualHex, hex(chunkOf(3)));
        last.release();
      });
    });
  });

  describe('with the verified disk cache', () => {
    it('serves the short last chunk from disk on a later read, as a whole verified chunk', async () => {
      await withCacheDir(async (dir) => {
        const disk = await createChunkCache({ dir, maxBytes: 16 * CHUNK });
        const { budget, fetcher } = fx.fetcherWith({ disk });
        const session = fx.sessionFor('file', 'good.bin');
        (await fetcher.get(session, 3, live())).release();
        await fetcher.flush();
        const again = await fetcher.get(session, 3, live());
        assert.equal(again.store, 'cache');
        assert.equal(again.verified, true);
        assert.equal(again.short, false);
        assert.equal(again.extra, false);
        assert.equal(again.actualHex, hex(chunkOf(3)));
        assert.ok(Buffer.from(again.data).equals(chunkOf(3)));
        again.release();
        assert.equal(fetcher.stats().diskHits, 1);
        assert.equal(fetcher.stats().sourceReads, 1);
        assert.equal(budget.inUseBytes(), 0);
        await disk.close();
      });
    });

    it('writes nothing for a chunk that failed verification', async () => {
      await withCacheDir(async (dir) => {
        const disk = await createChunkCache({ dir, maxBytes: 16 * CHUNK });
        const { fetcher } = fx.fetcherWith({ disk });
        const chunk = await fetcher.get(fx.sessionFor('file', 'tampered.bin'), 1, live());
        assert.equal(chunk.verified, false);
        chunk.release();
        await fetcher.flush();
        assert.equal(disk.bytes(), 0);
        await disk.close();
      });
    });

    it('reads a chunk whose manifest digest is not hex from the source, unverified, and caches nothing', async () => {
      await withCacheDir(async (dir) => {
        const disk = await createChunkCache({ dir, maxBytes: 16 * CHUNK });
        const { budget, fetcher } = fx.fetcherWith({ disk });
        const odd: ChunkedFile = {
          ...fx.file,
          sources: [fx.locationOf('file', 'good.bin')],
          chunks: fx.file.chunks.map((digest, index) => (index === 0 ? digest.toUpperCase() : digest)),
        };
        const chunk = await fetcher.get(fx.sessionOf(odd), 0, live());
        assert.equal(chunk.store, 'file');
        assert.equal(chunk.verified, false);
        assert.equal(chunk.actualHex, hex(chunkOf(0)));
        chunk.release();
        await fetcher.flush();
        assert.equal(disk.bytes(), 0);
        assert.equal(budget.inUseBytes(), 0);
        await disk.close();
      });
    });

    it('lets one of two processes sharing the folder read a chunk both want, and the other take it from disk', async () => {
      await withCacheDir(async (dir) => {
        const diskA = await createChunkCache({ dir, maxBytes: 16 * CHUNK, pollMs: 5 });
        const diskB = await createChunkCache({ dir, maxBytes: 16 * CHUNK, pollMs: 5 });
        const a = fx.fetcherWith({ disk: diskA });
        const b = fx.fetcherWith({ disk: diskB });
        await withSlowGcs(16 * 1024, async () => {
          const [fromA, fromB] = await Promise.all([
            a.fetcher.get(fx.sessionFor('gcs', 'good.bin'), 0, live()),
            b.fetcher.get(fx.sessionFor('gcs', 'good.bin'), 0, live()),
          ]);
          for (const chunk of [fromA, fromB]) {
            assert.equal(chunk.verified, true);
            assert.ok(Buffer.from(chunk.data).equals(chunkOf(0)));
            chunk.release();
          }
        });
        await Promise.all([a.fetcher.flush(), b.fetcher.flush()]);
        const reads = a.fetcher.stats().sourceReads + b.fetcher.stats().sourceReads;
        const diskHits = a.fetcher.stats().diskHits + b.fetcher.stats().diskHits;
        assert.equal(reads, 1, 'one source read between the two processes');
        assert.equal(diskHits, 1);
        assert.equal(a.budget.inUseBytes() + b.budget.inUseBytes(), 0);
        await Promise.all([diskA.close(), diskB.close()]);
      });
    });
  });

  describe('when a shared read already holds its memory', () => {
    it('refuses none of its callers for memoryWaitMs, neither the first nor one that joins later', async () => {
      await withSlowGcs(8 * 1024, async () => {
        const { budget, fetcher } = fx.fetcherWith();
        const session = fx.sessionFor('gcs', 'good.bin');
        // The first caller's memory timer starts before the read takes its memory; the read ends after ~320 ms.
        fx.gcs.clearRequests();
        const first = fetcher.get(session, 0, live(), { memoryWaitMs: 40 });
        // The source is being asked: the read took its memory before that (the budget counts it a tick earlier).
        await settle(() => fx.gcs.requests().some((request) => request.url.includes('alt=media')));
        assert.ok(budget.inUseBytes() > 0);
        const later = fetcher.get(session, 0, live(), { memoryWaitMs: 40 });
        assert.equal(fetcher.stats().shared, 1);
        const chunks = await Promise.all([first, later]);
        for (const chunk of chunks) {
          assert.equal(chunk.verified, true);
          chunk.release();
        }
        assert.equal(fetcher.stats().sourceReads, 1);
        assert.equal(budget.inUseBytes(), 0);
      });
    });
  });

  describe('when every caller leaves while the read is being hashed', () => {
    it('still returns the finished read’s memory to the budget', async () => {
      const inline = createInlineHasher();
      const caller = new AbortController();
      // Delegates to the real hasher; only leaves the read at the one moment no signal is checked.
      const hasher: Hasher = {
        digest(data, options) {
          caller.abort(new Error('left while hashing'));
          return inline.digest(data, options);
        },
        close: () => inline.close(),
      };
      const { budget, fetcher } = fx.fetcherWith({ hasher });
      await assert.rejects(
        fetcher.get(fx.sessionFor('file', 'good.bin'), 0, caller.signal),
        /left while hashing/,
      );
      await settle(() => budget.inUseBytes() === 0);
      assert.equal(budget.inUseBytes(), 0);
      assert.equal(budget.stats().pool.freeBytes, LEASE);
    });
  });

  describe('when two source lists run together into the same text', () => {
    it('reads the chunk once for each list (the flight key keeps the locations apart)', async () => {
      const { fetcher } = fx.fetcherWith();
      const split = fx.sessionOf({ ...fx.file, sources: ['file:a', 'file:b'] });
      const joined = fx.sessionOf({ ...fx.file, sources: ['file:afile:b'] });
      const chunks = await Promise.all([fetcher.get(split, 0, live()), fetcher.get(joined, 0, live())]);
      assert.equal(fetcher.stats().shared, 0);
      assert.equal(fetcher.stats().sourceReads, 2);
      for (const chunk of chunks) {
        assert.equal(chunk.verified, true);
        chunk.release();
      }
    });
  });

  describe('when three transfers of a file run and one stops tracking twice', () => {
    it('counts it once: the two left still share cached chunks, and caching stops only when one is left', async () => {
      const { fetcher } = fx.fetcherWith({ cacheBytes: 16 * CHUNK });
      const session = fx.sessionFor('file', 'good.bin');
      const untrack = [0, 1, 2].map(() => fetcher.track(fx.file.digest));
      untrack[0]?.();
      untrack[0]?.();
      (await fetcher.get(session, 0, live())).release();
      (await fetcher.get(session, 0, live())).release();
      assert.equal(fetcher.stats().cacheHits, 1, 'two transfers still run: chunk 0 cached');
      untrack[1]?.();
      (await fetcher.get(session, 1, live())).release();
      (await fetcher.get(session, 1, live())).release();
      assert.equal(fetcher.stats().cacheHits, 1, 'one transfer left: chunk 1 not cached');
      untrack[2]?.();
    });
  });

  describe('when the memory cache is full', () => {
    it('counts each chunk by its bytes and evicts the least recently used one', async () => {
      const { budget, fetcher } = fx.fetcherWith({ cacheBytes: 2 * CHUNK });
      const session = fx.sessionFor('file', 'good.bin');
      const untrackA = fetcher.track(fx.file.digest);
      const untrackB = fetcher.track(fx.file.digest);
      for (const index of [0, 1, 2]) (await fetcher.get(session, index, live())).release();
      assert.equal(budget.inUseBytes(), 2 * LEASE, 'two chunks fill the cache');
      (await fetcher.get(session, 0, live())).release();
      assert.equal(fetcher.stats().cacheHits, 0, 'chunk 0 was evicted');
      assert.equal(fetcher.stats().sourceReads, 4);
      (await fetcher.get(session, 2, live())).release();
      assert.equal(fetcher.stats().cacheHits, 1, 'chunk 2 stayed');
      untrackA();
      untrackB();
    });
  });
});
