/**
 * Edges of the chunk fetcher (src/integrity/chunk-fetcher.ts) a mutation run
 * left unguarded: what a chunk result says about a tampered, short or too-long
 * source on both read paths (the file store's direct reads, the GCS store's
 * streamed buffers), when the memory cache is used (only while two transfers
 * of the file run, only verified chunks), when a shared read is aborted (only
 * when its last caller left), tracking, and the verified disk cache.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createChunkCache } from '../../src/cache/index.ts';
import { type FetcherFixture, live, settle, startFetcherFixture } from '../helpers/chunk-fetcher-fixture.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';

const CHUNK = 4096;
const SIZE = 3 * CHUNK + 300;
const BYTES = randomBytesSeeded(SIZE, 91);
const TAMPERED = Buffer.from(BYTES);
TAMPERED[CHUNK + 7] = (TAMPERED[CHUNK + 7] ?? 0) ^ 1;
const OBJECTS: Record<string, Buffer> = {
  'good.bin': BYTES,
  'tampered.bin': TAMPERED,
  'short.bin': BYTES.subarray(0, 2 * CHUNK + 10),
  'long.bin': Buffer.concat([BYTES, Buffer.from('x')]),
};

const hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('the chunk fetcher, at its edges', () => {
  let fx: FetcherFixture;
  before(async () => {
    fx = await startFetcherFixture({ chunkSize: CHUNK, bytes: BYTES, objects: OBJECTS });
  });
  after(() => fx.close());

  const sessionFor = (kind: 'file' | 'gcs', object: string) => fx.sessionFor(kind, object);
  const fetcherWith = (options: { cacheBytes?: number; maxBytes?: number } = {}) => fx.fetcherWith(options);

  for (const kind of ['file', 'gcs'] as const) {
    describe(`when chunks are read from the ${kind} store`, () => {
      it('verifies a good chunk, the last one included, and reports where it came from', async () => {
        const { budget, fetcher } = fetcherWith();
        const session = sessionFor(kind, 'good.bin');
        for (const index of [0, 3]) {
          const chunk = await fetcher.get(session, index, live());
          const expected = BYTES.subarray(index * CHUNK, Math.min(SIZE, (index + 1) * CHUNK));
          assert.equal(chunk.index, index);
          assert.deepEqual(Buffer.from(chunk.data), expected);
          assert.equal(chunk.verified, true);
          assert.equal(chunk.actualHex, hex(expected));
          assert.equal(chunk.short, false);
          assert.equal(chunk.extra, false);
          assert.equal(chunk.store, kind);
          chunk.release();
        }
        assert.equal(budget.inUseBytes(), 0);
      });

      it('marks a tampered chunk unverified with the digest of what arrived', async () => {
        const { fetcher } = fetcherWith();
        const chunk = await fetcher.get(sessionFor(kind, 'tampered.bin'), 1, live());
        assert.equal(chunk.verified, false);
        assert.equal(chunk.short, false);
        assert.equal(chunk.extra, false);
        assert.equal(chunk.actualHex, hex(TAMPERED.subarray(CHUNK, 2 * CHUNK)));
        chunk.release();
      });

      it('marks a chunk the source cut short as short, with the bytes that arrived', async () => {
        const { fetcher } = fetcherWith();
        const chunk = await fetcher.get(sessionFor(kind, 'short.bin'), 2, live());
        assert.equal(chunk.verified, false);
        assert.equal(chunk.short, true);
        assert.equal(chunk.extra, false);
        assert.deepEqual(Buffer.from(chunk.data), BYTES.subarray(2 * CHUNK, 2 * CHUNK + 10));
        chunk.release();
        const missing = await fetcher.get(sessionFor(kind, 'short.bin'), 3, live());
        assert.equal(missing.short, true);
        assert.equal(missing.data.byteLength, 0);
        missing.release();
      });

      it('marks the last chunk of a longer source as extra but keeps exactly its bytes', async () => {
        const { fetcher } = fetcherWith();
        const session = sessionFor(kind, 'long.bin');
        const last = await fetcher.get(session, 3, live());
        assert.equal(last.extra, true);
        assert.equal(last.verified, false);
        assert.equal(last.short, false);
        assert.deepEqual(Buffer.from(last.data), BYTES.subarray(3 * CHUNK));
        last.release();
        // Only the last chunk looks past the end: a middle chunk of the longer object still verifies.
        const middle = await fetcher.get(session, 1, live());
        assert.equal(middle.verified, true);
        assert.equal(middle.extra, false);
        middle.release();
      });
    });
  }

  describe('when only one transfer of the file runs', () => {
    it('does not keep its chunks in the memory cache', async () => {
      const { budget, fetcher } = fetcherWith({ cacheBytes: 1024 * 1024 });
      const session = sessionFor('file', 'good.bin');
      const untrack = fetcher.track(fx.file.digest);
      (await fetcher.get(session, 0, live())).release();
      (await fetcher.get(session, 0, live())).release();
      assert.equal(fetcher.stats().sourceReads, 2);
      assert.equal(fetcher.stats().cacheHits, 0);
      assert.equal(budget.inUseBytes(), 0);
      untrack();
    });
  });

  describe('when a transfer stops tracking twice', () => {
    it('counts it once: the other transfer alone no longer caches', async () => {
      const { fetcher } = fetcherWith({ cacheBytes: 1024 * 1024 });
      const session = sessionFor('file', 'good.bin');
      const untrackA = fetcher.track(fx.file.digest);
      const untrackB = fetcher.track(fx.file.digest);
      (await fetcher.get(session, 0, live())).release();
      (await fetcher.get(session, 0, live())).release();
      assert.equal(fetcher.stats().cacheHits, 1, 'two transfers: cached');
      untrackA();
      untrackA();
      (await fetcher.get(session, 1, live())).release();
      (await fetcher.get(session, 1, live())).release();
      assert.equal(fetcher.stats().cacheHits, 1, 'one transfer left: chunk 1 not cached');
      assert.equal(fetcher.stats().sourceReads, 3);
      untrackB();
      untrackB();
      const untrackC = fetcher.track(fx.file.digest);
      (await fetcher.get(session, 2, live())).release();
      (await fetcher.get(session, 2, live())).release();
      assert.equal(fetcher.stats().sourceReads, 5, 'a single new transfer does not cache either');
      untrackC();
    });
  });

  describe('when two transfers read a tampered chunk', () => {
    it('never caches the unverified chunk', async () => {
      const { fetcher, budget } = fetcherWith({ cacheBytes: 1024 * 1024 });
      const session = sessionFor('file', 'tampered.bin');
      const untrackA = fetcher.track(fx.file.digest);
      const untrackB = fetcher.track(fx.file.digest);
      (await fetcher.get(session, 1, live())).release();
      (await fetcher.get(session, 1, live())).release();
      assert.equal(fetcher.stats().sourceReads, 2);
      assert.equal(fetcher.stats().cacheHits, 0);
      assert.equal(budget.inUseBytes(), 0);
      untrackA();
      untrackB();
    });
  });

  describe('when the same chunk of the file is asked for with other sources', () => {
    it('reads it separately (a shared read is per source list)', async () => {
      const { fetcher } = fetcherWith();
      const [a, b] = await Promise.all([
        fetcher.get(sessionFor('file', 'good.bin'), 0, live()),
        fetcher.get(sessionFor('gcs', 'good.bin'), 0, live()),
      ]);
      assert.equal(fetcher.stats().sourceReads, 2);
      assert.equal(fetcher.stats().shared, 0);
      assert.equal(a.store, 'file');
      assert.equal(b.store, 'gcs');
      a.release();
      b.release();
    });
  });

  describe('when one of two callers of a shared read leaves', () => {
    it('keeps reading for the other; when the last leaves, the read is aborted and its memory returns', async () => {
      fx.gcs.setBodyRate(256);
      try {
        const { budget, fetcher } = fetcherWith();
        const session = sessionFor('gcs', 'good.bin');
        const first = new AbortController();
        const second = new AbortController();
        const a = fetcher.get(session, 0, first.signal);
        const b = fetcher.get(session, 0, second.signal);
        assert.equal(fetcher.stats().shared, 1);
        first.abort(new Error('first client went away'));
        await assert.rejects(a, /first client went away/);
        const chunk = await b;
        assert.equal(chunk.verified, true);
        chunk.release();
        assert.equal(budget.inUseBytes(), 0);

        const c = new AbortController();
        const d = new AbortController();
        const pc = fetcher.get(session, 1, c.signal);
        const pd = fetcher.get(session, 1, d.signal);
        await settle(() => budget.inUseBytes() > 0);
        c.abort(new Error('gone'));
        d.abort(new Error('gone too'));
        await assert.rejects(pc, /gone/);
        await assert.rejects(pd, /gone too/);
        await settle(() => budget.inUseBytes() === 0);
        assert.equal(budget.inUseBytes(), 0);
      } finally {
        fx.gcs.setBodyRate(0);
      }
    });
  });

  describe('when a caller arrives already gone', () => {
    it('rejects with its reason, and the read it started returns its memory', async () => {
      const { budget, fetcher } = fetcherWith();
      const gone = new AbortController();
      gone.abort(new Error('already gone'));
      await assert.rejects(fetcher.get(sessionFor('file', 'good.bin'), 0, gone.signal), /already gone/);
      await settle(() => budget.inUseBytes() === 0 && budget.waiting() === 0);
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when memory is scarce', () => {
    it('is under pressure exactly while a read waits for memory', async () => {
      const { budget, fetcher } = fetcherWith({ maxBytes: CHUNK + 1 });
      const session = sessionFor('file', 'good.bin');
      assert.equal(fetcher.underPressure(), false);
      const held = await fetcher.get(session, 0, live());
      assert.equal(fetcher.underPressure(), false);
      const waiting = fetcher.get(session, 1, live());
      await settle(() => budget.waiting() === 1);
      assert.equal(fetcher.underPressure(), true);
      held.release();
      (await waiting).release();
      assert.equal(fetcher.underPressure(), false);
      assert.equal(fetcher.stats().memory.inUseBytes, 0);
    });

    it('a bounded wait that got its memory in time is not refused later', async () => {
      const { budget, fetcher } = fetcherWith({ maxBytes: CHUNK + 1 });
      const session = sessionFor('file', 'good.bin');
      const held = await fetcher.get(session, 0, live());
      const waiting = fetcher.get(session, 1, live(), { memoryWaitMs: 200 });
      await settle(() => budget.waiting() === 1);
      held.release();
      const chunk = await waiting;
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(chunk.verified, true);
      chunk.release();
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('with the verified disk cache', () => {
    it('writes verified chunks once and serves later reads from disk, never unverified ones', async () => {
      const cacheDir = await mkdtemp(join(tmpdir(), 'modelgate-fetcher-disk-'));
      try {
        const disk = await createChunkCache({ dir: cacheDir, maxBytes: 1024 * 1024 });
        const { budget, fetcher } = fx.fetcherWith({ disk });
        const good = sessionFor('file', 'good.bin');
        const first = await fetcher.get(good, 0, live());
        assert.equal(first.store, 'file');
        first.release();
        await fetcher.flush();
        const again = await fetcher.get(good, 0, live());
        assert.equal(again.store, 'cache');
        assert.equal(again.verified, true);
        assert.deepEqual(Buffer.from(again.data), BYTES.subarray(0, CHUNK));
        again.release();
        assert.equal(fetcher.stats().diskHits, 1);
        assert.equal(fetcher.stats().sourceReads, 1);

        const tampered = sessionFor('file', 'tampered.bin');
        (await fetcher.get(tampered, 1, live())).release();
        await fetcher.flush();
        const stillSource = await fetcher.get(tampered, 1, live());
        assert.equal(stillSource.store, 'file');
        assert.equal(stillSource.verified, false);
        stillSource.release();
        assert.equal(fetcher.stats().diskHits, 1);

        // A failed source read lets its claim go: the next reader is not blocked.
        await assert.rejects(fetcher.get(sessionFor('file', 'missing.bin'), 2, live()), {
          code: 'MG_SOURCE_NOT_FOUND',
        });
        const after = await fetcher.get(good, 2, live());
        assert.equal(after.verified, true);
        after.release();
        await fetcher.flush();
        assert.equal(budget.inUseBytes(), 0);
      } finally {
        await rm(cacheDir, { recursive: true, force: true });
      }
    });
  });
});
