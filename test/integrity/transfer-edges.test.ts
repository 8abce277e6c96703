/**
 * Edges of verified sending (src/integrity/transfer.ts and the chunk reads of
 * chunk-fetcher.ts) a mutation run left unguarded: byte-range arithmetic over
 * chunk boundaries, an empty range, a tampered, short or too-long source in
 * `fail` and `report` mode, a cut client write, and whole-file mode holding
 * back its last buffer until the digest matched. Both read paths run: the
 * file store fills chunk buffers directly (`readInto`), the GCS store (local
 * GCS JSON API server) streams buffers.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isChunked } from '../../src/catalog/manifest.ts';
import type { ChunkedFile, WholeFile } from '../../src/catalog/release.types.ts';
import { isModelgateError, type ModelgateError } from '../../src/errors.ts';
import { createChunkFetcher } from '../../src/integrity/chunk-fetcher.ts';
import { createInlineHasher } from '../../src/integrity/hasher.ts';
import { createMemoryBudget } from '../../src/integrity/memory-budget.ts';
import { createSourceSession } from '../../src/integrity/source-reader.ts';
import {
  type MismatchPolicy,
  sendChunked,
  sendWholeFile,
  type TransferTarget,
} from '../../src/integrity/transfer.ts';
import { createFileStore } from '../../src/stores/file/file-store.ts';
import { createGcsStore } from '../../src/stores/gcs/gcs-store.ts';
import type { Store } from '../../src/stores/store.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { type GcsServer, startGcsServer } from '../helpers/gcs-server.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest } from '../helpers/releases.ts';
import { transferConfig } from '../helpers/transfer-config.ts';

const CHUNK = 4096;
const SIZE = 4 * CHUNK + 100;
const BYTES = randomBytesSeeded(SIZE, 77);
const TAMPERED = Buffer.from(BYTES);
TAMPERED[2 * CHUNK + 10] = (TAMPERED[2 * CHUNK + 10] ?? 0) ^ 1;
const SHORT = BYTES.subarray(0, 3 * CHUNK + 5);
const LONG = Buffer.concat([BYTES, Buffer.from('more')]);
const OBJECTS: Record<string, Buffer> = {
  'good.bin': BYTES,
  'tampered.bin': TAMPERED,
  'short.bin': SHORT,
  'long.bin': LONG,
};

const transfer = transferConfig({
  readAhead: 3,
  maxBufferedBytes: 64 * CHUNK,
  memoryWaitSeconds: 5,
});

function recordingTarget() {
  const writes: Array<{ bytes: Buffer; store: string }> = [];
  let ended = 0;
  const target: TransferTarget = {
    headersSent: false,
    async write(bytes, store) {
      writes.push({ bytes: Buffer.from(bytes), store });
    },
    async end() {
      ended++;
    },
  };
  return { target, writes, body: () => Buffer.concat(writes.map((w) => w.bytes)), ended: () => ended };
}

describe('verified sending, at its edges', () => {
  let dir: string;
  let gcs: GcsServer;
  let stores: Record<'file' | 'gcs', Store>;
  const chunked = buildManifest({
    model: 'm',
    version: '1',
    environment: 'prod',
    files: [{ path: 'm.bin', bytes: BYTES, sources: ['x'], chunkSize: CHUNK }],
  }).files[0];
  const whole = buildManifest({
    model: 'm',
    version: '1',
    environment: 'prod',
    files: [{ path: 'm.bin', bytes: BYTES, sources: ['x'], chunkSize: null }],
  }).files[0];
  assert.ok(chunked && isChunked(chunked));
  assert.ok(whole && !isChunked(whole));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-transfer-edges-'));
    gcs = await startGcsServer();
    for (const [name, bytes] of Object.entries(OBJECTS)) {
      await writeFile(join(dir, name), bytes);
      gcs.putObject('models', name, bytes);
    }
    stores = {
      file: createFileStore({
        root: dir,
        timeouts: { connectSeconds: 1, firstByteSeconds: 5, idleSeconds: 5 },
      }),
      gcs: createGcsStore({
        apiEndpoint: gcs.url,
        maxSockets: 8,
        timeouts: { connectSeconds: 2, firstByteSeconds: 5, idleSeconds: 5 },
      }),
    };
  });
  after(async () => {
    await stores.gcs.close();
    await stores.file.close();
    await gcs.close();
    await rm(dir, { recursive: true, force: true });
  });

  function location(kind: 'file' | 'gcs', object: string) {
    return kind === 'file' ? `file:${object}` : `gs://models/${object}`;
  }

  function chunkedRun(kind: 'file' | 'gcs', object: string) {
    const file: ChunkedFile = { ...(chunked as ChunkedFile), sources: [location(kind, object)] };
    const budget = createMemoryBudget({ maxBytes: transfer.maxBufferedBytes });
    const fetcher = createChunkFetcher({ hasher: createInlineHasher(), cacheBytes: 0, budget });
    const session = createSourceSession(file, {
      stores: { forLocation: () => stores[kind] },
      transfer,
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger({ level: 'silent' }),
    });
    const violations: ModelgateError[] = [];
    const client = recordingTarget();
    const send = (range: { start: number; end: number }, onMismatch: MismatchPolicy = 'fail') =>
      sendChunked({
        session,
        target: client.target,
        signal: new AbortController().signal,
        onMismatch,
        onViolation: (error) => violations.push(error),
        memoryWaitMs: 5000,
        fetcher,
        range,
      });
    return { budget, fetcher, client, violations, send };
  }

  for (const kind of ['file', 'gcs'] as const) {
    describe(`when byte ranges are read in chunk mode from the ${kind} store`, () => {
      const ranges: Array<[number, number]> = [
        [0, SIZE],
        [0, 1],
        [CHUNK - 1, CHUNK + 1],
        [CHUNK, 2 * CHUNK],
        [10, 3 * CHUNK + 7],
        [4 * CHUNK, SIZE],
        [SIZE - 1, SIZE],
        [2 * CHUNK + 5, 2 * CHUNK + 6],
      ];
      it('sends exactly the bytes of each range, labelled with the store, and returns the memory', async () => {
        for (const [start, end] of ranges) {
          const run = chunkedRun(kind, 'good.bin');
          const result = await run.send({ start, end });
          assert.deepEqual(result, { bytes: end - start }, `range ${start}-${end}`);
          assert.deepEqual(run.client.body(), BYTES.subarray(start, end), `range ${start}-${end}`);
          assert.ok(run.client.writes.every((w) => w.store === kind));
          assert.equal(run.client.ended(), 1);
          assert.equal(run.violations.length, 0);
          assert.equal(run.budget.inUseBytes(), 0);
          // Only the chunks that cover the range are read.
          const chunks = Math.floor((end - 1) / CHUNK) - Math.floor(start / CHUNK) + 1;
          assert.equal(run.fetcher.stats().sourceReads, chunks, `range ${start}-${end}`);
        }
      });
    });

    describe(`when a chunk read from the ${kind} store was tampered with`, () => {
      it('in fail mode sends the chunks before it, then fails MG_DIGEST_MISMATCH naming the chunk', async () => {
        const run = chunkedRun(kind, 'tampered.bin');
        await assert.rejects(run.send({ start: 0, end: SIZE }), (error) => {
          assert.ok(isModelgateError(error, 'MG_DIGEST_MISMATCH'));
          assert.match(error.message, /^chunk 2 of m\.bin does not match/);
          assert.equal(error.details.store, kind);
          assert.equal(error.details.expectedDigest, (chunked as ChunkedFile).chunks[2]);
          return true;
        });
        assert.deepEqual(run.client.body(), BYTES.subarray(0, 2 * CHUNK));
        assert.equal(run.client.ended(), 0);
        assert.equal(run.violations.length, 1);
        for (let i = 0; i < 100 && run.budget.inUseBytes() > 0; i++)
          await new Promise((r) => setTimeout(r, 10));
        assert.equal(run.budget.inUseBytes(), 0);
      });

      it('in report mode reports the chunk and sends the bytes the source holds', async () => {
        const run = chunkedRun(kind, 'tampered.bin');
        assert.deepEqual(await run.send({ start: 0, end: SIZE }, 'report'), { bytes: SIZE });
        assert.deepEqual(run.client.body(), TAMPERED);
        assert.equal(run.violations.length, 1);
        assert.ok(isModelgateError(run.violations[0], 'MG_DIGEST_MISMATCH'));
        assert.equal(run.client.ended(), 1);
      });

      it('a range that avoids the tampered chunk is sent without a violation', async () => {
        const run = chunkedRun(kind, 'tampered.bin');
        assert.deepEqual(await run.send({ start: 3 * CHUNK, end: SIZE }), { bytes: SIZE - 3 * CHUNK });
        assert.equal(run.violations.length, 0);
      });
    });

    describe(`when the ${kind} source is shorter than the manifest says`, () => {
      it('fails MG_SIZE_MISMATCH at the short chunk even in report mode (bytes cannot be invented)', async () => {
        const run = chunkedRun(kind, 'short.bin');
        await assert.rejects(run.send({ start: 0, end: SIZE }, 'report'), (error) => {
          assert.ok(isModelgateError(error, 'MG_SIZE_MISMATCH'));
          assert.match(error.message, new RegExp(`the source ended at byte ${3 * CHUNK + 5}$`));
          return true;
        });
        assert.deepEqual(run.client.body(), BYTES.subarray(0, 3 * CHUNK));
        assert.equal(run.violations.length, 1);
      });
    });

    describe(`when the ${kind} source holds more bytes than the manifest says`, () => {
      it('fails MG_SIZE_MISMATCH on the last chunk in fail mode', async () => {
        const run = chunkedRun(kind, 'long.bin');
        await assert.rejects(run.send({ start: 0, end: SIZE }), (error) => {
          assert.ok(isModelgateError(error, 'MG_SIZE_MISMATCH'));
          assert.match(error.message, new RegExp(`holds more than ${SIZE} bytes`));
          return true;
        });
        assert.deepEqual(run.client.body(), BYTES.subarray(0, 4 * CHUNK));
      });

      it('in report mode sends exactly the manifest size and reports it', async () => {
        const run = chunkedRun(kind, 'long.bin');
        assert.deepEqual(await run.send({ start: 0, end: SIZE }, 'report'), { bytes: SIZE });
        assert.deepEqual(run.client.body(), BYTES);
        assert.equal(run.violations.length, 1);
        assert.ok(isModelgateError(run.violations[0], 'MG_SIZE_MISMATCH'));
      });

      it('a range that ends before the last chunk does not look past the end', async () => {
        const run = chunkedRun(kind, 'long.bin');
        assert.deepEqual(await run.send({ start: 0, end: 2 * CHUNK }), { bytes: 2 * CHUNK });
        assert.equal(run.violations.length, 0);
      });
    });
  }

  describe('when the range is empty', () => {
    it('ends the response without reading anything', async () => {
      const run = chunkedRun('file', 'good.bin');
      assert.deepEqual(await run.send({ start: 100, end: 100 }), { bytes: 0 });
      assert.equal(run.client.ended(), 1);
      assert.equal(run.client.writes.length, 0);
      assert.equal(run.fetcher.stats().sourceReads, 0);
    });
  });

  describe('when a write to the client is cut', () => {
    it('rejects with the write error, never ends the body, and returns every byte of the budget', async () => {
      const run = chunkedRun('file', 'good.bin');
      const budget = run.budget;
      const file: ChunkedFile = { ...(chunked as ChunkedFile), sources: ['file:good.bin'] };
      const session = createSourceSession(file, {
        stores: { forLocation: () => stores.file },
        transfer,
        metrics: createMetrics({ defaultMetrics: false }),
        logger: createLogger({ level: 'silent' }),
      });
      let writes = 0;
      let ended = false;
      await assert.rejects(
        sendChunked({
          session,
          target: {
            headersSent: true,
            async write() {
              writes++;
              if (writes === 2) throw new Error('socket closed');
            },
            async end() {
              ended = true;
            },
          },
          signal: new AbortController().signal,
          onMismatch: 'fail',
          onViolation: () => {},
          memoryWaitMs: 5000,
          fetcher: run.fetcher,
          range: { start: 0, end: SIZE },
        }),
        /socket closed/,
      );
      assert.equal(writes, 2);
      assert.equal(ended, false);
      for (let i = 0; i < 100 && budget.inUseBytes() > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(budget.inUseBytes(), 0);
      // The cut chunk's buffer is discarded, not pooled: only chunks released normally are kept free.
      assert.ok(budget.stats().pool.freeBytes <= 3 * (CHUNK + 1));
    });
  });

  for (const kind of ['file', 'gcs'] as const) {
    describe(`when a whole-file transfer reads from the ${kind} store`, () => {
      function wholeRun(object: string, onMismatch: MismatchPolicy = 'fail') {
        const file: WholeFile = { ...(whole as WholeFile), sources: [location(kind, object)] };
        const budget = createMemoryBudget({ maxBytes: 8 * 1024 * 1024 });
        const session = createSourceSession(file, {
          stores: { forLocation: () => stores[kind] },
          transfer,
          metrics: createMetrics({ defaultMetrics: false }),
          logger: createLogger({ level: 'silent' }),
        });
        const client = recordingTarget();
        const violations: ModelgateError[] = [];
        const done = sendWholeFile({
          session,
          target: client.target,
          signal: new AbortController().signal,
          onMismatch,
          onViolation: (error) => violations.push(error),
          memoryWaitMs: 5000,
          budget,
        });
        return { done, client, violations, budget };
      }

      it('sends every byte once the digest matched, and returns its memory', async () => {
        const run = wholeRun('good.bin');
        assert.deepEqual(await run.done, { bytes: SIZE });
        assert.deepEqual(run.client.body(), BYTES);
        assert.equal(run.client.ended(), 1);
        assert.ok(run.client.writes.every((w) => w.store === kind));
        assert.equal(run.budget.inUseBytes(), 0);
      });

      it('holds the last buffer back when the digest does not match (fail mode)', async () => {
        const run = wholeRun('tampered.bin');
        await assert.rejects(run.done, (error) => {
          assert.ok(isModelgateError(error, 'MG_DIGEST_MISMATCH'));
          assert.match(error.message, /^the file of m\.bin does not match/);
          // The audit line and the violation carry what arrived, not only what was expected.
          assert.equal(
            error.details.actualDigest,
            `sha256:${createHash('sha256').update(TAMPERED).digest('hex')}`,
          );
          assert.equal(error.details.expectedDigest, whole.digest);
          assert.equal(error.details.store, kind);
          return true;
        });
        assert.ok(run.client.body().length < SIZE, 'the client never receives the complete body');
        assert.equal(run.client.ended(), 0);
        assert.equal(run.violations.length, 1);
        assert.equal(run.budget.inUseBytes(), 0);
      });

      it('reports a mismatch and sends the whole body in report mode', async () => {
        const run = wholeRun('tampered.bin', 'report');
        assert.deepEqual(await run.done, { bytes: SIZE });
        assert.deepEqual(run.client.body(), TAMPERED);
        assert.equal(run.violations.length, 1);
      });

      it('fails MG_SIZE_MISMATCH for a short source, even in report mode', async () => {
        const run = wholeRun('short.bin', 'report');
        await assert.rejects(run.done, (error) => {
          assert.ok(isModelgateError(error, 'MG_SIZE_MISMATCH'));
          assert.match(error.message, new RegExp(`the source ended at byte ${SHORT.length}$`));
          assert.deepEqual(error.details, { file: 'm.bin', expectedSize: SIZE, store: kind });
          return true;
        });
        assert.equal(run.client.ended(), 0);
      });

      it('fails MG_SIZE_MISMATCH for a longer source, and in report mode sends exactly the manifest size', async () => {
        const failing = wholeRun('long.bin');
        await assert.rejects(failing.done, (error) => {
          assert.ok(isModelgateError(error, 'MG_SIZE_MISMATCH'));
          assert.match(error.message, /holds more than/);
          return true;
        });
        assert.ok(failing.client.body().length < SIZE);
        const reporting = wholeRun('long.bin', 'report');
        assert.deepEqual(await reporting.done, { bytes: SIZE });
        assert.deepEqual(reporting.client.body(), BYTES);
        assert.equal(reporting.violations.length, 1);
      });
    });
  }
});
