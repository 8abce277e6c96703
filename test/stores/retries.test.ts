/**
 * A throttled store does not fail downloads (issue 12, finding 3): through a
 * real modelgate server, S3 (s3rver), GCS (the JSON API test server) and
 * Azure (Azurite) each sit behind a recording HTTP proxy that answers chosen
 * ranged GETs the way a throttled cloud store does — S3 `503 SlowDown`,
 * GCS `429 rateLimitExceeded`, Azure `503 ServerBusy`, with `Retry-After` —
 * or resets the connection. The client must receive the whole verified file;
 * retries stay on the same location, are bounded in attempts (then the next
 * mirror) and in time (then 502), and are counted in
 * `modelgate_source_retries_total`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type AzuriteEmulator,
  type S3rverEmulator,
  startAzurite,
  startS3rver,
} from '../helpers/emulators.ts';
import { type GcsServer, startGcsServer } from '../helpers/gcs-server.ts';
import { rawGet } from '../helpers/http.ts';
import {
  azureServerBusy,
  gcsRateLimited,
  type HttpFaultProxy,
  type RecordedRequest,
  rangeOf,
  s3SlowDown,
  startHttpFaultProxy,
} from '../helpers/http-fault-proxy.ts';
import { type Harness, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';

const MiB = 1024 * 1024;
const MODEL = 'fraud-detector';
const S3_BUCKET = 'models';
const GCS_BUCKET = 'ml-models-mirror';
const AZURE_CONTAINER = 'models';
/** Five chunks: four of 1 MiB and a short one. */
const SIZE = 4 * MiB + 12_345;

/** The `Range` modelgate sends for chunk `index` of a SIZE-byte file (the last asks one byte more). */
function chunkRange(index: number, size = SIZE): string {
  const start = index * MiB;
  const end = Math.min(start + MiB, size) + (start + MiB >= size ? 1 : 0);
  return `bytes=${start}-${end - 1}`;
}

type Source = 's3' | 'gcs' | 'azure';

describe('when a source store throttles or fails transiently', () => {
  let s3: S3rverEmulator;
  let gcs: GcsServer;
  let azurite: AzuriteEmulator;
  let s3Proxy: HttpFaultProxy;
  let gcsProxy: HttpFaultProxy;
  let azureProxy: HttpFaultProxy;
  let h: Harness;
  let budgeted: Harness;
  let seed = 1;

  function stores() {
    return {
      s3: { region: 'us-east-1', endpoint: s3Proxy.url, forcePathStyle: true, credentials: s3.credentials },
      gcs: { projectId: 'test-project', apiEndpoint: gcsProxy.url },
      azure: {
        accounts: {
          [azurite.account]: {
            endpoint: `${azureProxy.url}/${azurite.account}`,
            accountKey: azurite.accountKey,
          },
        },
      },
    };
  }

  before(async () => {
    [s3, gcs, azurite] = await Promise.all([
      startS3rver({ buckets: [S3_BUCKET] }),
      startGcsServer(),
      startAzurite(),
    ]);
    [s3Proxy, gcsProxy, azureProxy] = await Promise.all([
      startHttpFaultProxy({ port: s3.port }),
      startHttpFaultProxy({ port: gcs.port }),
      startHttpFaultProxy({ port: azurite.port }),
    ]);
    // No chunk cache: every request really reads its sources.
    h = await startHarness({
      config: {
        stores: stores(),
        transfer: {
          chunkCacheBytes: 0,
          retries: 3,
          retryBackoffMs: 20,
          retryBackoffMaxMs: 3000,
          retryBudgetSeconds: 30,
        },
      },
    });
    // Many attempts, little time: the budget is what stops the retries.
    budgeted = await startHarness({
      config: {
        stores: stores(),
        transfer: {
          chunkCacheBytes: 0,
          retries: 20,
          retryBackoffMs: 300,
          retryBackoffMaxMs: 300,
          retryBudgetSeconds: 1,
        },
      },
    });
  });

  after(async () => {
    await h?.stop();
    await budgeted?.stop();
    await Promise.all([s3Proxy?.close(), gcsProxy?.close(), azureProxy?.close()]);
    await Promise.all([s3?.stop(), gcs?.close(), azurite?.stop()]);
  });

  /**
   * Uploads one SIZE-byte chunked file under a fresh version to the stores
   * named (S3, GCS, Azure), publishes it in `harness` with `sources` in that
   * order, and returns what a test needs.
   */
  async function release(
    harness: Harness,
    order: Source[],
    options: { upload?: Source[]; size?: number; chunkSize?: number | null } = {},
  ) {
    const version = `v${seed}-${Date.now()}`;
    const bytes = randomBytesSeeded(options.size ?? SIZE, seed++);
    const key = `${MODEL}/${version}/model.bin`;
    const locations: Record<Source, string> = {
      s3: `s3://${S3_BUCKET}/${key}`,
      gcs: `gs://${GCS_BUCKET}/${key}`,
      azure: `az://${azurite.account}/${AZURE_CONTAINER}/${key}`,
    };
    for (const store of options.upload ?? order) {
      if (store === 's3') await s3.putObject(S3_BUCKET, key, bytes);
      if (store === 'gcs') gcs.putObject(GCS_BUCKET, key, bytes);
      if (store === 'azure') await azurite.putObject(AZURE_CONTAINER, key, bytes);
    }
    const { digest } = await harness.addRelease({
      model: MODEL,
      version,
      files: [
        {
          path: 'model.bin',
          bytes,
          chunkSize: options.chunkSize === undefined ? MiB : options.chunkSize,
          sources: order.map((s) => locations[s]),
        },
      ],
    });
    const path = `/v1/models/${MODEL}/releases/${digest}/files/model.bin`;
    return {
      version,
      bytes,
      get: async () => rawGet(`${harness.url}${path}`, { authorization: `Bearer ${await harness.token()}` }),
    };
  }

  /** The GETs a proxy saw for this version's object, optionally for one `Range`. */
  function gets(proxy: HttpFaultProxy, version: string, range?: string): RecordedRequest[] {
    return proxy
      .requests()
      .filter(
        (r) =>
          r.method === 'GET' &&
          r.url.includes(version) &&
          rangeOf(r.headers) !== undefined &&
          (range === undefined || rangeOf(r.headers) === range),
      );
  }

  async function retries(harness: Harness, store: Source, reason?: string) {
    return harness.metric('modelgate_source_retries_total', { store, ...(reason ? { reason } : {}) });
  }

  describe('and S3 answers 503 SlowDown twice to the first chunk', () => {
    it('delivers the whole verified file from S3, its only source, after two retries', async () => {
      // Before retries this was a 502 at once: a single throttled answer failed the only source.
      const file = await release(h, ['s3']);
      s3Proxy.addFault({ range: chunkRange(0), urlIncludes: file.version, from: 1, to: 2, ...s3SlowDown() });
      const before = await retries(h, 's3', 'throttled');

      const res = await file.get();

      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(file.bytes), 'the client received other bytes than the file');
      const first = gets(s3Proxy, file.version, chunkRange(0));
      // Exactly three GETs: the SDK adds no retries of its own under ours.
      assert.deepEqual(
        first.map((r) => r.answeredBy),
        [503, 503, 'origin'],
      );
      assert.equal((await retries(h, 's3', 'throttled')) - before, 2);
    });
  });

  describe('and S3 answers 503 SlowDown with Retry-After twice to a middle chunk', () => {
    it('waits as asked, then delivers the whole verified file', async () => {
      // Before retries the body was cut after two chunks.
      const file = await release(h, ['s3']);
      s3Proxy.addFault({
        range: chunkRange(2),
        urlIncludes: file.version,
        from: 1,
        to: 2,
        ...s3SlowDown({ retryAfter: '1' }),
      });
      const before = await retries(h, 's3', 'throttled');

      const res = await file.get();

      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(file.bytes), 'the client received other bytes than the file');
      const middle = gets(s3Proxy, file.version, chunkRange(2));
      assert.deepEqual(
        middle.map((r) => r.answeredBy),
        [503, 503, 'origin'],
      );
      // Backoff alone (20 ms base) would retry within 80 ms; Retry-After asks for a second.
      for (let i = 1; i < middle.length; i++) {
        const gap = (middle[i] as RecordedRequest).at - (middle[i - 1] as RecordedRequest).at;
        assert.ok(gap >= 900, `retry ${i} came ${Math.round(gap)} ms after the 503, before Retry-After`);
      }
      assert.equal((await retries(h, 's3', 'throttled')) - before, 2);
    });
  });

  describe('and GCS answers 429 rateLimitExceeded with an HTTP-date Retry-After', () => {
    it('retries GCS after the date and delivers the whole verified file', async () => {
      const file = await release(h, ['gcs', 's3']);
      gcsProxy.addFault({
        range: chunkRange(0),
        urlIncludes: file.version,
        from: 1,
        ...gcsRateLimited({ retryAfter: new Date(Date.now() + 2000).toUTCString() }),
      });
      const before = await retries(h, 'gcs', 'throttled');

      const res = await file.get();

      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(file.bytes), 'the client received other bytes than the file');
      const first = gets(gcsProxy, file.version, chunkRange(0));
      assert.deepEqual(
        first.map((r) => r.answeredBy),
        [429, 'origin'],
      );
      const gap = (first[1] as RecordedRequest).at - (first[0] as RecordedRequest).at;
      // The date has one-second resolution: at least ~1 s of the 2 s asked for remains.
      assert.ok(gap >= 900, `the retry came ${Math.round(gap)} ms after the 429`);
      assert.equal(gets(s3Proxy, file.version).length, 0, 'the mirror was not asked');
      assert.equal((await retries(h, 'gcs', 'throttled')) - before, 1);
    });
  });

  describe('and Azure answers 503 ServerBusy to a middle chunk', () => {
    it('retries Azure once and delivers the whole verified file', async () => {
      const file = await release(h, ['azure', 's3']);
      azureProxy.addFault({ range: chunkRange(1), urlIncludes: file.version, from: 1, ...azureServerBusy() });
      const before = await retries(h, 'azure', 'throttled');

      const res = await file.get();

      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(file.bytes), 'the client received other bytes than the file');
      assert.deepEqual(
        gets(azureProxy, file.version, chunkRange(1)).map((r) => r.answeredBy),
        [503, 'origin'],
      );
      assert.equal(gets(s3Proxy, file.version).length, 0, 'the mirror was not asked');
      assert.equal((await retries(h, 'azure', 'throttled')) - before, 1);
    });
  });

  describe('and S3 cuts a whole-file-mode body, then throttles the resume twice', () => {
    it('resumes from the byte after the last one hashed and delivers the whole verified file', async () => {
      const file = await release(h, ['s3', 'gcs'], { chunkSize: null });
      const cutAt = MiB + 4321;
      s3Proxy.addFault({
        range: `bytes=0-${SIZE}`,
        urlIncludes: file.version,
        from: 1,
        cutBodyAfterBytes: cutAt,
      });
      const resume = `bytes=${cutAt}-${SIZE}`;
      s3Proxy.addFault({ range: resume, urlIncludes: file.version, from: 1, to: 2, ...s3SlowDown() });
      const before = {
        connection: await retries(h, 's3', 'connection'),
        throttled: await retries(h, 's3', 'throttled'),
      };

      const res = await file.get();

      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(file.bytes), 'the client received other bytes than the file');
      assert.deepEqual(
        gets(s3Proxy, file.version).map((r) => [rangeOf(r.headers), r.answeredBy]),
        [
          [`bytes=0-${SIZE}`, 'cut'],
          [resume, 503],
          [resume, 503],
          [resume, 'origin'],
        ],
      );
      assert.equal(gets(gcsProxy, file.version).length, 0, 'the mirror was not asked');
      assert.equal((await retries(h, 's3', 'connection')) - before.connection, 1);
      assert.equal((await retries(h, 's3', 'throttled')) - before.throttled, 2);
    });
  });

  describe('and S3 resets the connection before the first byte of a chunk', () => {
    it('retries on the same location and delivers the whole verified file', async () => {
      const file = await release(h, ['s3', 'gcs']);
      s3Proxy.addFault({ range: chunkRange(3), urlIncludes: file.version, from: 1, reset: true });
      const before = await retries(h, 's3', 'connection');

      const res = await file.get();

      assert.equal(res.status, 200);
      assert.ok(res.body.equals(file.bytes), 'the client received other bytes than the file');
      assert.deepEqual(
        gets(s3Proxy, file.version, chunkRange(3)).map((r) => r.answeredBy),
        ['reset', 'origin'],
      );
      assert.equal(gets(gcsProxy, file.version).length, 0, 'the mirror was not asked');
      assert.equal((await retries(h, 's3', 'connection')) - before, 1);
    });
  });

  describe('and S3 resets the connection right after the headers of a chunk, before any body byte', () => {
    it('retries on the same location and delivers the whole verified file', async () => {
      const file = await release(h, ['s3', 'gcs']);
      s3Proxy.addFault({ range: chunkRange(1), urlIncludes: file.version, from: 1, resetAfterHeaders: true });
      const before = await retries(h, 's3', 'connection');

      const res = await file.get();

      assert.equal(res.status, 200);
      assert.ok(res.body.equals(file.bytes), 'the client received other bytes than the file');
      assert.deepEqual(
        gets(s3Proxy, file.version, chunkRange(1)).map((r) => r.answeredBy),
        ['reset-after-headers', 'origin'],
      );
      assert.equal(gets(gcsProxy, file.version).length, 0, 'the mirror was not asked');
      assert.equal((await retries(h, 's3', 'connection')) - before, 1);
    });
  });

  describe('and S3 keeps answering 503 to a chunk past its retries', () => {
    it('fails over to the GCS mirror for that chunk after 1 + retries attempts', async () => {
      const file = await release(h, ['s3', 'gcs']);
      s3Proxy.addFault({
        range: chunkRange(1),
        urlIncludes: file.version,
        from: 1,
        to: 1000,
        ...s3SlowDown(),
      });
      const before = await retries(h, 's3', 'throttled');

      const res = await file.get();

      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(file.bytes), 'the client received other bytes than the file');
      const attempts = gets(s3Proxy, file.version, chunkRange(1));
      assert.equal(attempts.length, 4, 'one attempt and three retries on S3');
      assert.ok(attempts.every((r) => r.answeredBy === 503));
      assert.equal(gets(gcsProxy, file.version, chunkRange(1)).length, 1, 'the mirror served the chunk');
      assert.equal((await retries(h, 's3', 'throttled')) - before, 3);
    });
  });

  describe('and S3 answers 412 Precondition Failed to a pinned chunk (the object changed)', () => {
    it('never retries it, nor asks the mirror, and fails the download', async () => {
      const file = await release(h, ['s3', 'gcs']);
      s3Proxy.addFault({
        range: chunkRange(2),
        urlIncludes: file.version,
        from: 1,
        to: 1000,
        status: 412,
        headers: { 'content-type': 'application/xml' },
        body: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code></Error>',
      });
      const before = await retries(h, 's3');

      const res = await file.get();

      assert.ok(res.status === 502 || !res.complete, 'the download failed (502, or a body cut short)');
      assert.ok(res.body.length < SIZE);
      assert.equal(gets(s3Proxy, file.version, chunkRange(2)).length, 1, 'one S3 GET for the chunk');
      assert.equal(gets(gcsProxy, file.version, chunkRange(2)).length, 0, 'the mirror was not asked');
      assert.equal((await retries(h, 's3')) - before, 0);
    });
  });

  describe('and another chunk moves the preferred mirror while a chunk retries the first source', () => {
    it('still tries every mirror once for that chunk', async () => {
      // What broke: a read recomputed its next mirror from the session's preferred index, which a
      // concurrent chunk had moved to Azure, so it tried S3 twice, GCS once and never Azure.
      const size = MiB + 4321;
      const file = await release(h, ['s3', 'gcs', 'azure'], { size });
      const notFound = { status: 404, body: '' };
      // Chunk 0: not in S3 nor GCS, served by Azure, which becomes the preferred mirror.
      s3Proxy.addFault({
        range: chunkRange(0, size),
        urlIncludes: file.version,
        from: 1,
        to: 9,
        ...notFound,
      });
      gcsProxy.addFault({
        range: chunkRange(0, size),
        urlIncludes: file.version,
        from: 1,
        to: 9,
        ...notFound,
      });
      // Chunk 1: throttled on S3 for a second (long enough for chunk 0 to finish), missing on GCS.
      s3Proxy.addFault({
        range: chunkRange(1, size),
        urlIncludes: file.version,
        from: 1,
        ...s3SlowDown({ retryAfter: '1' }),
      });
      s3Proxy.addFault({
        range: chunkRange(1, size),
        urlIncludes: file.version,
        from: 2,
        to: 9,
        ...s3SlowDown(),
      });
      gcsProxy.addFault({
        range: chunkRange(1, size),
        urlIncludes: file.version,
        from: 1,
        to: 9,
        ...notFound,
      });

      const res = await file.get();

      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(file.bytes), 'the client received other bytes than the file');
      assert.equal(
        gets(s3Proxy, file.version, chunkRange(1, size)).length,
        4,
        'S3: one attempt and 3 retries',
      );
      assert.equal(gets(gcsProxy, file.version, chunkRange(1, size)).length, 1, 'GCS: one attempt (404)');
      assert.equal(gets(azureProxy, file.version, chunkRange(1, size)).length, 1, 'Azure served chunk 1');
    });
  });

  describe('and the first source does not hold the object (404)', () => {
    it('does not retry it and moves on to the mirror at once', async () => {
      const file = await release(h, ['s3', 'gcs'], { upload: ['gcs'] });
      const before = await retries(h, 's3');

      const res = await file.get();

      assert.equal(res.status, 200);
      assert.ok(res.body.equals(file.bytes), 'the client received other bytes than the file');
      assert.equal(gets(s3Proxy, file.version, chunkRange(0)).length, 1, 'one S3 GET for the first chunk');
      assert.equal((await retries(h, 's3')) - before, 0);
    });
  });

  describe('and the only source keeps throttling for longer than the retry budget', () => {
    it('stops retrying when the budget is spent and answers 502', async () => {
      const file = await release(budgeted, ['s3']);
      s3Proxy.addFault({
        range: chunkRange(0),
        urlIncludes: file.version,
        from: 1,
        to: 1000,
        ...s3SlowDown(),
      });
      const before = await retries(budgeted, 's3', 'throttled');

      const res = await file.get();

      assert.equal(res.status, 502);
      assert.equal(JSON.parse(res.body.toString('utf8')).error.code, 'MG_SOURCE_FAILED');
      const attempts = gets(s3Proxy, file.version, chunkRange(0)).length;
      // 20 retries at up to 300 ms each would take ~3 s on average: a 1 s budget ends them well before.
      assert.ok(attempts >= 2 && attempts < 21, `S3 was asked ${attempts} times`);
      assert.equal((await retries(budgeted, 's3', 'throttled')) - before, attempts - 1);
    });
  });
});
