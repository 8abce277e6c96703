/**
 * The source reader (src/integrity/source-reader.ts) against bodies that go
 * wrong half-way, which a mutation run showed no focused test reached: a body
 * that stalls after some bytes (the idle watchdog, then a `timeout` retry
 * that resumes), a chunked body that ends cleanly before the range's end (a
 * broken connection, not a short object), and a connection reset right after
 * the headers (retried before any byte arrived). The GCS store reads the local
 * GCS JSON API server through the fault-injecting HTTP proxy.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { ManifestFile } from '../../src/catalog/release.types.ts';
import type { TransferConfig } from '../../src/config/config.types.ts';
import { isModelgateError, type ModelgateError } from '../../src/errors.ts';
import { createSourceSession, readFromSources } from '../../src/integrity/source-reader.ts';
import { createGcsStore } from '../../src/stores/gcs/gcs-store.ts';
import type { Store } from '../../src/stores/store.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { collectingSink } from '../helpers/collecting-sink.ts';
import { type GcsServer, startGcsServer } from '../helpers/gcs-server.ts';
import {
  gcsRateLimited,
  type HttpFaultProxy,
  rangeOf,
  startHttpFaultProxy,
} from '../helpers/http-fault-proxy.ts';
import { seriesValue } from '../helpers/metric-values.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { transferConfig } from '../helpers/transfer-config.ts';

const SIZE = 200 * 1024;
const BYTES = randomBytesSeeded(SIZE, 31);
const LOCATION = 'gs://models/m.bin';
const IDLE_SECONDS = 0.4;

describe('reading a source whose body goes wrong half-way', () => {
  let gcs: GcsServer;
  let proxy: HttpFaultProxy;
  let store: Store;
  before(async () => {
    gcs = await startGcsServer();
    gcs.putObject('models', 'm.bin', BYTES);
    proxy = await startHttpFaultProxy({ port: gcs.port });
    store = createGcsStore({
      apiEndpoint: proxy.url,
      maxSockets: 4,
      timeouts: { connectSeconds: 2, firstByteSeconds: 5, idleSeconds: IDLE_SECONDS },
    });
  });
  after(async () => {
    await store.close();
    await proxy.close();
    await gcs.close();
  });
  beforeEach(() => {
    proxy.clearFaults();
    proxy.clearRequests();
  });

  function session(retries: number, backoff: Partial<TransferConfig> = {}) {
    return createSourceSession(
      { path: 'm.bin', size: SIZE, sources: [LOCATION] } as unknown as ManifestFile,
      {
        stores: { forLocation: () => store },
        transfer: transferConfig({ retries, ...backoff }),
        metrics: createMetrics({ defaultMetrics: false }),
        logger: createLogger({ level: 'silent' }),
      },
    );
  }

  /** The `Range` headers of the media reads that reached the proxy, in order. */
  function mediaRanges() {
    return proxy
      .requests()
      .filter((r) => r.url.includes('alt=media'))
      .map((r) => rangeOf(r.headers));
  }

  describe('when the body stalls after some bytes', () => {
    it('is cut at the idle timeout and resumed from the bytes already read, counted as a timeout retry', async () => {
      proxy.addFault({ urlIncludes: 'alt=media', from: 1, stallBodyAfterBytes: 50_000 });
      const s = session(1);
      const { sink, bytes } = collectingSink();
      const started = performance.now();
      await readFromSources(s, { start: 0, end: SIZE }, sink, new AbortController().signal);
      assert.deepEqual(bytes(), BYTES);
      assert.ok(performance.now() - started >= IDLE_SECONDS * 1000 * 0.9, 'waited for the idle timeout');
      assert.deepEqual(mediaRanges(), [`bytes=0-${SIZE - 1}`, `bytes=50000-${SIZE - 1}`]);
      assert.equal(await seriesValue(s.metrics.sourceRetries, { store: 'gcs', reason: 'timeout' }), 1);
      assert.equal(await seriesValue(s.metrics.sourceRetries, { store: 'gcs', reason: 'connection' }), 0);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'gcs', outcome: 'timeout' }), 1);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'gcs', outcome: 'ok' }), 1);
    });

    it('without retries, fails MG_SOURCE_TIMEOUT (not a generic failure) once the idle timeout passed', async () => {
      proxy.addFault({ urlIncludes: 'alt=media', from: 1, stallBodyAfterBytes: 50_000 });
      const s = session(0);
      const { sink, bytes } = collectingSink();
      await assert.rejects(
        readFromSources(s, { start: 0, end: SIZE }, sink, new AbortController().signal),
        (error: ModelgateError) =>
          isModelgateError(error, 'MG_SOURCE_TIMEOUT') && /timed out/.test(error.message),
      );
      assert.equal(bytes().length, 50_000, 'the bytes before the stall were delivered');
      assert.equal(mediaRanges().length, 1);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'gcs', outcome: 'timeout' }), 1);
    });
  });

  describe('when a chunked body ends cleanly before the end of the range', () => {
    it('treats it as a broken connection: retried from the bytes read, counted as a connection retry', async () => {
      proxy.addFault({ urlIncludes: 'alt=media', from: 1, truncateBodyAfterBytes: 70_000 });
      const s = session(1);
      const { sink, bytes } = collectingSink();
      await readFromSources(s, { start: 0, end: SIZE }, sink, new AbortController().signal);
      assert.deepEqual(bytes(), BYTES);
      assert.deepEqual(mediaRanges(), [`bytes=0-${SIZE - 1}`, `bytes=70000-${SIZE - 1}`]);
      assert.equal(await seriesValue(s.metrics.sourceRetries, { store: 'gcs', reason: 'connection' }), 1);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'gcs', outcome: 'error' }), 1);
    });

    it('without retries, fails MG_SOURCE_FAILED whose cause says where the stream ended', async () => {
      proxy.addFault({ urlIncludes: 'alt=media', from: 1, truncateBodyAfterBytes: 70_000 });
      const s = session(0);
      const { sink, bytes } = collectingSink();
      await assert.rejects(
        readFromSources(s, { start: 0, end: SIZE }, sink, new AbortController().signal),
        (error: ModelgateError) =>
          isModelgateError(error, 'MG_SOURCE_FAILED') &&
          isModelgateError(error.cause, 'MG_SOURCE_FAILED') &&
          /ended after 70000 bytes/.test(error.cause.message),
      );
      assert.equal(bytes().length, 70_000);
    });

    it('an answer with headers but no body byte at all is retried as a broken connection too', async () => {
      proxy.addFault({ urlIncludes: 'alt=media', from: 1, truncateBodyAfterBytes: 0 });
      const s = session(1);
      const { sink, bytes } = collectingSink();
      await readFromSources(s, { start: 0, end: SIZE }, sink, new AbortController().signal);
      assert.deepEqual(bytes(), BYTES);
      assert.deepEqual(mediaRanges(), [`bytes=0-${SIZE - 1}`, `bytes=0-${SIZE - 1}`]);
      assert.equal(await seriesValue(s.metrics.sourceRetries, { store: 'gcs', reason: 'connection' }), 1);
    });

    it('a body that ends exactly at the end of the object is a short object, not a failure', async () => {
      // The object is SIZE bytes; asking one byte more is how the final piece proves where the object ends.
      const s = session(0);
      const { sink, bytes } = collectingSink();
      await readFromSources(s, { start: 0, end: SIZE + 1 }, sink, new AbortController().signal);
      assert.deepEqual(bytes(), BYTES);
      assert.equal(await seriesValue(s.metrics.sourceRequests, { store: 'gcs', outcome: 'ok' }), 1);
    });
  });

  describe('when the connection resets right after the headers, before any body byte', () => {
    it('asks again from the same offset, counted as a connection retry', async () => {
      proxy.addFault({ urlIncludes: 'alt=media', from: 1, resetAfterHeaders: true });
      const s = session(1);
      const { sink, bytes } = collectingSink();
      await readFromSources(s, { start: 0, end: SIZE }, sink, new AbortController().signal);
      assert.deepEqual(bytes(), BYTES);
      assert.deepEqual(mediaRanges(), [`bytes=0-${SIZE - 1}`, `bytes=0-${SIZE - 1}`]);
      assert.equal(await seriesValue(s.metrics.sourceRetries, { store: 'gcs', reason: 'connection' }), 1);
    });

    it('without retries, fails MG_SOURCE_FAILED naming the location, with the transport error as its cause', async () => {
      proxy.addFault({ urlIncludes: 'alt=media', from: 1, resetAfterHeaders: true });
      const s = session(0);
      const { sink } = collectingSink();
      await assert.rejects(
        readFromSources(s, { start: 0, end: SIZE }, sink, new AbortController().signal),
        (error: ModelgateError) => {
          const cause = error.cause as ModelgateError;
          return (
            isModelgateError(error, 'MG_SOURCE_FAILED') &&
            isModelgateError(cause, 'MG_SOURCE_FAILED') &&
            cause.message.includes(`source ${LOCATION} failed`) &&
            cause.cause instanceof Error &&
            !isModelgateError(cause.cause)
          );
        },
      );
    });
  });

  describe('when the caller goes away while a retry waits out Retry-After', () => {
    it("stops waiting at once and rejects with the caller's reason", async () => {
      proxy.addFault({ urlIncludes: 'alt=media', from: 1, ...gcsRateLimited({ retryAfter: '5' }) });
      const s = session(1, { retryBackoffMs: 100, retryBackoffMaxMs: 10_000 });
      const { sink } = collectingSink();
      const gone = new AbortController();
      setTimeout(() => gone.abort(new Error('client went away')), 300);
      const started = performance.now();
      await assert.rejects(
        readFromSources(s, { start: 0, end: SIZE }, sink, gone.signal),
        /client went away/,
      );
      // The wait would have lasted 5 s; the abort ends it.
      assert.ok(
        performance.now() - started < 3000,
        `rejected after ${Math.round(performance.now() - started)} ms`,
      );
      assert.equal(mediaRanges().length, 1, 'the retry was never sent');
    });
  });
});
