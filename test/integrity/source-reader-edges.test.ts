/**
 * Edges of the source reader (src/integrity/source-reader.ts), found by a
 * mutation run: the retry wait's arithmetic, which failures are retried on
 * the same location and which move on, mirror order and `preferred`, version
 * pins, the per-outcome request counts, and the bytes read from each store.
 * Real stores only: the file store on a temporary folder and the GCS store
 * against the local GCS JSON API server (test/helpers/gcs-server.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ManifestFile } from '../../src/catalog/release.types.ts';
import { isModelgateError } from '../../src/errors.ts';
import {
  createSourceSession,
  type PieceSink,
  readFromSources,
  retryDelayMs,
  type StoreLookup,
} from '../../src/integrity/source-reader.ts';
import { createFileStore } from '../../src/stores/file/file-store.ts';
import { createGcsStore } from '../../src/stores/gcs/gcs-store.ts';
import type { Store } from '../../src/stores/store.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { collectingSink } from '../helpers/collecting-sink.ts';
import { type GcsServer, startGcsServer } from '../helpers/gcs-server.ts';
import { seriesValue } from '../helpers/metric-values.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { transferConfig } from '../helpers/transfer-config.ts';

const BYTES = randomBytesSeeded(64 * 1024 + 17, 5);

function fileEntry(sources: string[], size = BYTES.length): ManifestFile {
  return { path: 'm.bin', size, sha256: `sha256:${'0'.repeat(64)}`, sources } as unknown as ManifestFile;
}

describe('the retry wait (retryDelayMs)', () => {
  const transfer = transferConfig({ retryBackoffMs: 100, retryBackoffMaxMs: 1000 });
  const samples = (retry: number, retryAfterMs?: number) =>
    Array.from({ length: 300 }, () => retryDelayMs(transfer, retry, retryAfterMs));

  it('waits a random time below retryBackoffMs on the first retry, spread over that range', () => {
    const waits = samples(0);
    assert.ok(
      waits.every((w) => w >= 0 && w < 100),
      `max ${Math.max(...waits)}`,
    );
    assert.ok(Math.max(...waits) > 50, 'jitter spreads over the whole range');
    assert.ok(new Set(waits).size > 100, 'the waits are random, not one fixed value');
  });

  it('doubles the ceiling with every retry (2^retry), not linearly', () => {
    const third = samples(3);
    // 100 × 2^3 = 800: a linear (100 × 2 × 3 = 600) or constant ceiling would keep every wait below 600.
    assert.ok(third.every((w) => w < 800));
    assert.ok(Math.max(...third) > 650, `max ${Math.max(...third)}`);
  });

  it('never waits longer than retryBackoffMaxMs, however many retries', () => {
    const late = samples(12);
    assert.ok(late.every((w) => w <= 1000));
    assert.ok(Math.max(...late) > 900, 'the cap is the ceiling, not a lower bound');
  });

  it("waits at least the source's Retry-After, but not beyond the cap", () => {
    assert.ok(samples(0, 700).every((w) => w === 700));
    assert.ok(samples(0, 5000).every((w) => w === 1000));
    assert.ok(samples(0, 0).every((w) => w >= 0 && w < 100));
  });
});

describe('reading a piece from its sources', () => {
  let dir: string;
  let gcs: GcsServer;
  let fileStore: Store;
  let gcsStore: Store;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-sources-'));
    await writeFile(join(dir, 'm.bin'), BYTES);
    gcs = await startGcsServer();
    gcs.putObject('models', 'm.bin', BYTES);
    fileStore = createFileStore({
      root: dir,
      timeouts: { connectSeconds: 1, firstByteSeconds: 5, idleSeconds: 5 },
    });
    gcsStore = createGcsStore({
      apiEndpoint: gcs.url,
      maxSockets: 4,
      timeouts: { connectSeconds: 2, firstByteSeconds: 5, idleSeconds: 5 },
    });
  });
  after(async () => {
    await gcsStore.close();
    await fileStore.close();
    await gcs.close();
    await rm(dir, { recursive: true, force: true });
  });

  const lookup: StoreLookup = {
    forLocation: (location) =>
      location.startsWith('file:') ? fileStore : location.startsWith('gs://') ? gcsStore : undefined,
  };

  function session(sources: string[], transfer = transferConfig(), size = BYTES.length) {
    const metrics = createMetrics({ defaultMetrics: false });
    return createSourceSession(fileEntry(sources, size), {
      stores: lookup,
      transfer,
      metrics,
      logger: createLogger({ level: 'silent' }),
    });
  }

  describe('when a range is read from the file store', () => {
    it('delivers exactly those bytes at the right offsets, pins the version and counts the bytes', async () => {
      const s = session(['file:m.bin']);
      const { sink, bytes } = collectingSink(1000);
      const kind = await readFromSources(s, { start: 1000, end: 40_000 }, sink, new AbortController().signal);
      assert.equal(kind, 'file');
      assert.deepEqual(bytes(), BYTES.subarray(1000, 40_000));
      assert.ok(s.pins.get('file:m.bin'), 'the version first seen is pinned');
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'file', outcome: 'ok' }), 1);
      assert.equal(await seriesValue(s.metrics.sourceBytes, { store: 'file' }), 39_000);
    });

    it('fills the target directly when the sink offers one, and reports the count once', async () => {
      const s = session(['file:m.bin']);
      const target = new Uint8Array(5000);
      const direct: number[] = [];
      const sink: PieceSink = {
        target,
        onDirect: (count, kind) => {
          direct.push(count);
          assert.equal(kind, 'file');
        },
        onData: () => assert.fail('no buffers on the direct path'),
        resumeOffset: () => 200,
      };
      await readFromSources(s, { start: 200, end: 5200 }, sink, new AbortController().signal);
      assert.deepEqual(direct, [5000]);
      assert.deepEqual(Buffer.from(target), BYTES.subarray(200, 5200));
      assert.ok(s.pins.get('file:m.bin'));
      assert.equal(await seriesValue(s.metrics.sourceBytes, { store: 'file' }), 5000);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'file', outcome: 'ok' }), 1);
    });

    it('reads only to the end of the object when asked for one byte more (the final piece)', async () => {
      const s = session(['file:m.bin']);
      const { sink, bytes } = collectingSink(BYTES.length - 10);
      await readFromSources(
        s,
        { start: BYTES.length - 10, end: BYTES.length + 1 },
        sink,
        new AbortController().signal,
      );
      assert.deepEqual(bytes(), BYTES.subarray(BYTES.length - 10));
    });
  });

  describe('when the pinned version no longer matches', () => {
    it('fails MG_SOURCE_CHANGED at once and never asks the mirror', async () => {
      const s = session(['file:m.bin', 'gs://models/m.bin']);
      s.pins.set('file:m.bin', 'some-other-version');
      gcs.clearRequests();
      const { sink } = collectingSink(0);
      await assert.rejects(
        readFromSources(s, { start: 0, end: 100 }, sink, new AbortController().signal),
        (error) => isModelgateError(error, 'MG_SOURCE_CHANGED'),
      );
      assert.equal(gcs.requests().length, 0);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'file', outcome: 'changed' }), 1);
    });
  });

  describe('when the first source does not hold the object', () => {
    it('moves on to the mirror, remembers it as preferred, and counts not_found', async () => {
      const s = session(['file:missing.bin', 'gs://models/m.bin'], transferConfig({ retries: 3 }));
      const { sink, bytes } = collectingSink(0);
      const kind = await readFromSources(s, { start: 0, end: 3000 }, sink, new AbortController().signal);
      assert.equal(kind, 'gcs');
      assert.deepEqual(bytes(), BYTES.subarray(0, 3000));
      assert.equal(s.preferred, 1);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'file', outcome: 'not_found' }), 1);
      assert.equal(await seriesValue(s.metrics.sourceRetries, { store: 'file', reason: 'connection' }), 0);
      assert.equal(await seriesValue(s.metrics.sourceBytes, { store: 'gcs' }), 3000);
    });

    it('starts at the preferred source next time and wraps around to the others', async () => {
      const s = session(['gs://models/missing.bin', 'file:m.bin']);
      s.preferred = 1;
      gcs.clearRequests();
      const { sink } = collectingSink(0);
      assert.equal(
        await readFromSources(s, { start: 0, end: 10 }, sink, new AbortController().signal),
        'file',
      );
      assert.equal(gcs.requests().length, 0, 'the preferred source answered first');
      assert.equal(s.preferred, 1);
    });
  });

  describe('when no source holds the object', () => {
    it('answers MG_SOURCE_NOT_FOUND, not a generic failure', async () => {
      const s = session(['file:missing.bin', 'gs://models/missing.bin']);
      const { sink } = collectingSink(0);
      await assert.rejects(
        readFromSources(s, { start: 0, end: 10 }, sink, new AbortController().signal),
        (error) => isModelgateError(error, 'MG_SOURCE_NOT_FOUND'),
      );
    });
  });

  describe('when one source is missing and another has no configured store', () => {
    it('answers MG_SOURCE_FAILED naming every source of the file', async () => {
      const s = session(['file:missing.bin', 'az://acct/c/m.bin']);
      const { sink } = collectingSink(0);
      await assert.rejects(
        readFromSources(s, { start: 0, end: 10 }, sink, new AbortController().signal),
        (error) => {
          assert.ok(isModelgateError(error, 'MG_SOURCE_FAILED'));
          assert.match(error.message, /every source of m\.bin failed/);
          assert.ok(isModelgateError(error.cause, 'MG_SOURCE_FAILED'));
          assert.match((error.cause as Error).message, /no store is configured for az: sources/);
          return true;
        },
      );
    });
  });

  describe('when the source answers 503 fewer times than the retries allow', () => {
    it('retries the same location and delivers the bytes, counting each retry', async () => {
      const s = session(['gs://models/m.bin', 'file:m.bin'], transferConfig({ retries: 2 }));
      gcs.failNext(2, 503);
      const { sink, bytes } = collectingSink(0);
      assert.equal(
        await readFromSources(s, { start: 0, end: 2000 }, sink, new AbortController().signal),
        'gcs',
      );
      assert.deepEqual(bytes(), BYTES.subarray(0, 2000));
      assert.equal(await seriesValue(s.metrics.sourceRetries, { store: 'gcs', reason: 'throttled' }), 2);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'gcs', outcome: 'error' }), 2);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'gcs', outcome: 'ok' }), 1);
    });
  });

  describe('when the source keeps failing past its retries', () => {
    it('tries it 1 + retries times, then fails over to the mirror', async () => {
      const s = session(['gs://models/m.bin', 'file:m.bin'], transferConfig({ retries: 1 }));
      gcs.failNext(2, 503);
      gcs.clearRequests();
      const { sink, bytes } = collectingSink(0);
      assert.equal(
        await readFromSources(s, { start: 0, end: 100 }, sink, new AbortController().signal),
        'file',
      );
      assert.deepEqual(bytes(), BYTES.subarray(0, 100));
      assert.equal(gcs.requests().length, 2);
      assert.equal(await seriesValue(s.metrics.sourceRetries, { store: 'gcs', reason: 'throttled' }), 1);
      assert.equal(s.preferred, 1);
    });

    it('with retries 0, fails at once with MG_SOURCE_FAILED when there is no mirror', async () => {
      const s = session(['gs://models/m.bin'], transferConfig({ retries: 0 }));
      gcs.failNext(1, 503);
      gcs.clearRequests();
      const { sink } = collectingSink(0);
      await assert.rejects(
        readFromSources(s, { start: 0, end: 100 }, sink, new AbortController().signal),
        (error) => isModelgateError(error, 'MG_SOURCE_FAILED'),
      );
      assert.equal(gcs.requests().length, 1);
    });
  });

  describe('when the next retry would end past the retry budget', () => {
    it('stops retrying and fails over at once', async () => {
      // The wait is at least Retry-After-free jitter below 60 s; a budget of 0 s leaves no room for any wait > 0.
      const s = session(
        ['gs://models/m.bin', 'file:m.bin'],
        transferConfig({
          retries: 5,
          retryBackoffMs: 60_000,
          retryBackoffMaxMs: 60_000,
          retryBudgetSeconds: 0,
        }),
      );
      gcs.failNext(1, 503);
      gcs.clearRequests();
      const { sink } = collectingSink(0);
      const started = performance.now();
      assert.equal(
        await readFromSources(s, { start: 0, end: 100 }, sink, new AbortController().signal),
        'file',
      );
      assert.ok(performance.now() - started < 20_000, 'did not sleep the backoff');
      assert.equal(gcs.requests().length, 1);
      assert.equal(await seriesValue(s.metrics.sourceRetries, { store: 'gcs', reason: 'throttled' }), 0);
    });
  });

  describe('when the source answers 403', () => {
    it('does not retry it and moves on', async () => {
      const s = session(['gs://models/m.bin', 'file:m.bin'], transferConfig({ retries: 3 }));
      gcs.failNext(1, 403);
      gcs.clearRequests();
      const { sink } = collectingSink(0);
      assert.equal(
        await readFromSources(s, { start: 0, end: 100 }, sink, new AbortController().signal),
        'file',
      );
      assert.equal(gcs.requests().length, 1);
    });
  });

  describe('when the source sends no first byte within firstByteSeconds', () => {
    it('fails MG_SOURCE_TIMEOUT and counts a timeout', async () => {
      const slow = createGcsStore({
        apiEndpoint: gcs.url,
        maxSockets: 2,
        timeouts: { connectSeconds: 2, firstByteSeconds: 0.2, idleSeconds: 5 },
      });
      const metrics = createMetrics({ defaultMetrics: false });
      const s = createSourceSession(fileEntry(['gs://models/m.bin']), {
        stores: { forLocation: () => slow },
        transfer: transferConfig(),
        metrics,
        logger: createLogger({ level: 'silent' }),
      });
      gcs.setDelay(2000);
      try {
        const { sink } = collectingSink(0);
        await assert.rejects(
          readFromSources(s, { start: 0, end: 100 }, sink, new AbortController().signal),
          (error) => isModelgateError(error, 'MG_SOURCE_TIMEOUT'),
        );
        assert.equal(await seriesValue(metrics.sourceRequests, { store: 'gcs', outcome: 'timeout' }), 1);
      } finally {
        gcs.setDelay(0);
        await slow.close();
      }
    });
  });

  describe('when the object changes between two pieces of one transfer', () => {
    for (const direct of [false, true]) {
      it(`fails the second piece MG_SOURCE_CHANGED (${direct ? 'direct reads' : 'streamed reads'})`, async () => {
        const name = direct ? 'changing-direct.bin' : 'changing-stream.bin';
        await writeFile(join(dir, name), BYTES);
        const s = session([`file:${name}`]);
        const sinkFor = (start: number): PieceSink => {
          if (!direct) return collectingSink(start).sink;
          return {
            target: new Uint8Array(100),
            onDirect: () => {},
            onData: () => {},
            resumeOffset: () => start,
          };
        };
        await readFromSources(s, { start: 0, end: 100 }, sinkFor(0), new AbortController().signal);
        const pinned = s.pins.get(`file:${name}`);
        assert.ok(pinned);
        await new Promise((r) => setTimeout(r, 20));
        await writeFile(join(dir, name), Buffer.concat([BYTES, Buffer.from('new')]));
        await assert.rejects(
          readFromSources(s, { start: 100, end: 200 }, sinkFor(100), new AbortController().signal),
          (error) => isModelgateError(error, 'MG_SOURCE_CHANGED'),
        );
        assert.equal(s.pins.get(`file:${name}`), pinned, 'the pin is kept');
      });
    }
  });

  describe('when one source failed and the other does not hold the object', () => {
    it('answers MG_SOURCE_FAILED: not every source said not found', async () => {
      const s = session(['gs://models/m.bin', 'file:missing.bin']);
      gcs.failNext(1, 503);
      const { sink } = collectingSink(0);
      await assert.rejects(
        readFromSources(s, { start: 0, end: 10 }, sink, new AbortController().signal),
        (error) => isModelgateError(error, 'MG_SOURCE_FAILED'),
      );
    });
  });

  describe('when the retry budget is zero and the wait is zero', () => {
    it('still retries: a retry that ends exactly at the budget is allowed', async () => {
      const s = session(['gs://models/m.bin'], transferConfig({ retries: 1, retryBudgetSeconds: 0 }));
      gcs.failNext(1, 503);
      gcs.clearRequests();
      const { sink, bytes } = collectingSink(0);
      await readFromSources(s, { start: 0, end: 100 }, sink, new AbortController().signal);
      assert.deepEqual(bytes(), BYTES.subarray(0, 100));
      assert.equal(gcs.requests().length, 2);
    });
  });

  describe('when a retry is logged', () => {
    it('logs source_error with the attempt, the reason and the wait', async () => {
      const lines: Array<Record<string, unknown>> = [];
      const s = createSourceSession(fileEntry(['gs://models/m.bin']), {
        stores: lookup,
        transfer: transferConfig({ retries: 1 }),
        metrics: createMetrics({ defaultMetrics: false }),
        logger: createLogger({
          level: 'warn',
          destination: { write: (line: string) => lines.push(JSON.parse(line)) },
        }),
      });
      gcs.failNext(1, 503);
      const { sink } = collectingSink(0);
      await readFromSources(s, { start: 0, end: 100 }, sink, new AbortController().signal);
      assert.equal(lines.length, 1);
      const line = lines[0] ?? {};
      assert.equal(line.event, 'source_error');
      assert.equal(line.location, 'gs://models/m.bin');
      assert.equal(line.store, 'gcs');
      assert.equal(line.code, 'MG_SOURCE_FAILED');
      assert.equal(line.retry, 1);
      assert.equal(line.retryReason, 'throttled');
      assert.equal(line.retryInMs, 0);
      assert.equal(line.msg, 'source read failed, retrying');
    });
  });

  describe('when the body arrives slowly but steadily', () => {
    it('is not cut by the first-byte timeout: every buffer re-arms the idle timer', async () => {
      const steady = createGcsStore({
        apiEndpoint: gcs.url,
        maxSockets: 2,
        timeouts: { connectSeconds: 2, firstByteSeconds: 0.3, idleSeconds: 5 },
      });
      const s = createSourceSession(fileEntry(['gs://models/m.bin']), {
        stores: { forLocation: () => steady },
        transfer: transferConfig(),
        metrics: createMetrics({ defaultMetrics: false }),
        logger: createLogger({ level: 'silent' }),
      });
      gcs.setBodyRate(50);
      try {
        const { sink, bytes } = collectingSink(0);
        await readFromSources(s, { start: 0, end: 5000 }, sink, new AbortController().signal);
        assert.deepEqual(bytes(), BYTES.subarray(0, 5000));
      } finally {
        gcs.setBodyRate(0);
        await steady.close();
      }
    });
  });

  describe('when the caller goes away during a slow read', () => {
    it('stops the source read: the rest of the body is never received', async () => {
      const s = session(['gs://models/m.bin']);
      const gone = new AbortController();
      let received = 0;
      const sink: PieceSink = {
        onData(buffer) {
          received += buffer.length;
          if (received >= 500) gone.abort(new Error('client went away'));
        },
        resumeOffset: () => 0,
      };
      gcs.setBodyRate(100);
      try {
        await assert.rejects(
          readFromSources(s, { start: 0, end: 20_000 }, sink, gone.signal),
          /client went away/,
        );
        const atAbort = received;
        await new Promise((r) => setTimeout(r, 200));
        assert.ok(received < 20_000, `received ${received}`);
        assert.equal(received, atAbort, 'no buffers after the abort');
      } finally {
        gcs.setBodyRate(0);
      }
    });
  });

  describe('when the caller has already gone', () => {
    it("rejects with the caller's reason and reads nothing", async () => {
      const s = session(['gs://models/m.bin']);
      const gone = new AbortController();
      gone.abort(new Error('client went away'));
      gcs.clearRequests();
      const { sink } = collectingSink(0);
      await assert.rejects(readFromSources(s, { start: 0, end: 100 }, sink, gone.signal), /client went away/);
      assert.equal(gcs.requests().length, 0);
    });
  });

  describe('when the caller goes away while the sink is writing', () => {
    it("rejects with the caller's reason and does not try the mirror", async () => {
      const s = session(['file:m.bin', 'gs://models/m.bin'], transferConfig({ retries: 3 }));
      const gone = new AbortController();
      gcs.clearRequests();
      const sink: PieceSink = {
        onData() {
          gone.abort(new Error('client went away'));
          throw new Error('write after abort');
        },
        resumeOffset: () => 0,
      };
      await assert.rejects(readFromSources(s, { start: 0, end: 100 }, sink, gone.signal), /client went away/);
      assert.equal(gcs.requests().length, 0);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'file', outcome: 'error' }), 0);
    });
  });

  describe('when the stream breaks after bytes arrived', () => {
    it('retries the same location from the resume offset, as a connection retry', async () => {
      const s = session(['file:m.bin'], transferConfig({ retries: 1 }));
      const parts: Buffer[] = [];
      let received = 0;
      let broke = false;
      const sink: PieceSink = {
        onData(buffer) {
          // The first buffer counts as received by the reader before the sink refuses it: bytes arrived.
          if (!broke) {
            broke = true;
            throw new Error('connection reset');
          }
          parts.push(Buffer.from(buffer));
          received += buffer.length;
        },
        resumeOffset: () => received,
      };
      await readFromSources(s, { start: 0, end: BYTES.length }, sink, new AbortController().signal);
      assert.ok(broke, 'the test broke the stream');
      assert.deepEqual(Buffer.concat(parts), BYTES);
      assert.equal(await seriesValue(s.metrics.sourceRetries, { store: 'file', reason: 'connection' }), 1);
      // Bytes are counted as read from the source, the re-read included.
      assert.ok((await seriesValue(s.metrics.sourceBytes, { store: 'file' })) > BYTES.length);
    });
  });
});
