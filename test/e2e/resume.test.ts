/**
 * End to end through the proxy, with a fault proxy between modelgate and the
 * source (S3 via s3rver, GCS via the JSON API test server): a connection cut
 * or stalled mid-file is retried — chunk mode re-reads the chunk from its
 * first byte, whole-file mode resumes from the last verified offset — and
 * the client still gets exactly the approved bytes. An object overwritten
 * between the cut and the retry breaks the version pin and fails closed
 * (SPEC §2: "a source that changed between retries").
 *
 * Every transfer reads chunks one at a time (`readAhead: 1`) over the
 * store's keep-alive connection, so a fault queued for the next connection
 * lands at a known byte of the file; pooled connections are cut before each
 * test so that next connection really is new.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type S3rverEmulator, startS3rver } from '../helpers/emulators.ts';
import { type FaultPlan, type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { type GcsServer, startGcsServer } from '../helpers/gcs-server.ts';
import { rawGet } from '../helpers/http.ts';
import { type Harness, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';

const MiB = 1024 * 1024;
const MODEL = 'fraud-detector';
const S3_BUCKET = 'models';
const GCS_BUCKET = 'ml-models';
/** Response headers from either server stay well under this. */
const MAX_HEADER_BYTES = 2048;

type Backend = 's3' | 'gcs';

describe('resuming a source read through modelgate', () => {
  let s3: S3rverEmulator;
  let gcs: GcsServer;
  let s3Proxy: FaultProxy;
  let gcsProxy: FaultProxy;
  /** Fast retries (20 ms backoff). */
  let h: Harness;
  /** Slower retries (400 ms backoff ceiling, jittered); the overwrite tests also hold the retry connection. */
  let slow: Harness;

  before(async () => {
    [s3, gcs] = await Promise.all([startS3rver({ buckets: [S3_BUCKET] }), startGcsServer()]);
    [s3Proxy, gcsProxy] = await Promise.all([
      startFaultProxy({ port: s3.port }),
      startFaultProxy({ port: gcs.port }),
    ]);
    // A stall is noticed after half a second of silence.
    const timeouts = { connectSeconds: 2, firstByteSeconds: 3, idleSeconds: 0.5 };
    const stores = {
      s3: {
        region: 'us-east-1',
        endpoint: s3Proxy.url,
        forcePathStyle: true,
        credentials: s3.credentials,
        timeouts,
      },
      gcs: { projectId: 'test-project', apiEndpoint: gcsProxy.url, timeouts },
    };
    const transfer = { readAhead: 1, chunkCacheBytes: 0, retries: 3 };
    h = await startHarness({ config: { stores, transfer: { ...transfer, retryBackoffMs: 20 } } });
    slow = await startHarness({ config: { stores, transfer: { ...transfer, retryBackoffMs: 400 } } });
  });

  after(async () => {
    await h?.stop();
    await slow?.stop();
    await Promise.all([s3Proxy?.close(), gcsProxy?.close()]);
    await Promise.all([s3?.stop(), gcs?.close()]);
  });

  const proxyOf = (backend: Backend) => (backend === 's3' ? s3Proxy : gcsProxy);

  /** Puts the bytes in one store and signs a release listing only that location. */
  async function publish(
    harness: Harness,
    backend: Backend,
    version: string,
    bytes: Buffer,
    chunkSize: number | null,
  ) {
    const key = `${MODEL}/${version}/model.bin`;
    let location: string;
    if (backend === 's3') {
      await s3.putObject(S3_BUCKET, key, bytes);
      location = `s3://${S3_BUCKET}/${key}`;
    } else {
      gcs.putObject(GCS_BUCKET, key, bytes);
      location = `gs://${GCS_BUCKET}/${key}`;
    }
    const { digest } = await harness.addRelease({
      model: MODEL,
      version,
      files: [{ path: 'model.bin', bytes, chunkSize, sources: [location] }],
    });
    return { key, path: `/v1/models/${MODEL}/releases/${digest}/files/model.bin` };
  }

  /**
   * Closes every pooled connection to `backend`, then queues `plan` for the
   * next one. Returns the connections opened from now on.
   */
  async function faultNextConnection(backend: Backend, plan: FaultPlan) {
    const proxy = proxyOf(backend);
    proxy.cutAll();
    // Let the stores' agents see the close before the next request picks a socket.
    await sleep(50);
    const first = proxy.connections().length;
    proxy.queue(plan);
    gcs.clearRequests();
    return () => proxy.connections().slice(first);
  }

  async function get(harness: Harness, path: string) {
    return rawGet(`${harness.url}${path}`, { authorization: `Bearer ${await harness.token()}` });
  }

  /** The `Range` of each media request GCS saw, in order. */
  const gcsRanges = () =>
    gcs
      .requests()
      .filter((r) => r.url.includes('alt=media'))
      .map((r) => r.headers.range);

  /** The ranges chunk mode asks for, in order, when chunk `cut` is read twice. */
  function chunkRanges(size: number, cut: number) {
    const ranges: string[] = [];
    const count = Math.ceil(size / MiB);
    for (let i = 0; i < count; i++) {
      const start = i * MiB;
      // The last chunk asks one byte past the end, to prove the object is not longer.
      const end = i === count - 1 ? size + 1 : start + MiB;
      const range = `bytes=${start}-${end - 1}`;
      ranges.push(range);
      if (i === cut) ranges.push(range);
    }
    return ranges;
  }

  /** A promise the test settles when it chose to (`open`). */
  function gate() {
    let open = () => {};
    const promise = new Promise<void>((resolve) => {
      open = resolve;
    });
    return { promise, open: () => open() };
  }

  async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(2);
    }
  }

  const sourceCount = (harness: Harness, store: Backend, outcome: string) =>
    harness.metric('modelgate_source_requests_total', { store, outcome });

  describe('when the S3 connection is cut in the middle of chunk 2', () => {
    it('re-reads chunk 2 on a new connection and delivers the whole file', async () => {
      const bytes = randomBytesSeeded(4 * MiB + 1000, 11);
      const { path } = await publish(h, 's3', 'cut-s3-chunk', bytes, MiB);
      const errors = await sourceCount(h, 's3', 'error');
      const cutAt = 2 * MiB + MiB / 2;
      const opened = await faultNextConnection('s3', { cutAfterBytes: cutAt });

      const res = await get(h, path);
      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(bytes), 'the bytes differ from the original');

      const connections = opened();
      assert.ok(connections.length >= 2, `connections: ${connections.length}`);
      assert.equal(connections[0]!.faulted, true, 'the first connection was cut');
      assert.equal(connections[0]!.bytesDown, cutAt);
      assert.equal(await sourceCount(h, 's3', 'error'), errors + 1);
      // Chunk 2 was read twice: the retry carried the rest of the file plus chunk 2 again from its first byte.
      const after = connections.slice(1).reduce((sum, c) => sum + c.bytesDown, 0);
      assert.ok(after >= bytes.length - 2 * MiB, `bytes after the cut: ${after}`);
    });
  });

  describe('when the GCS connection is cut in the middle of chunk 1', () => {
    it('asks for chunk 1 again from its first byte and delivers the whole file', async () => {
      const bytes = randomBytesSeeded(3 * MiB + 500, 12);
      const { path } = await publish(h, 'gcs', 'cut-gcs-chunk', bytes, MiB);
      const opened = await faultNextConnection('gcs', { cutAfterBytes: MiB + MiB / 2 });

      const res = await get(h, path);
      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(bytes), 'the bytes differ from the original');
      assert.deepEqual(gcsRanges(), chunkRanges(bytes.length, 1));
      assert.ok(opened().length >= 2, `connections: ${opened().length}`);
      assert.equal(opened()[0]!.faulted, true);
    });
  });

  describe('when the GCS connection is cut in the middle of a whole-file-mode file', () => {
    it('resumes from the offset already hashed and delivers the whole file', async () => {
      const bytes = randomBytesSeeded(3 * MiB + 321, 13);
      const { path } = await publish(h, 'gcs', 'cut-gcs-whole', bytes, null);
      const cutAt = MiB + 12_345;
      const opened = await faultNextConnection('gcs', { cutAfterBytes: cutAt });

      const res = await get(h, path);
      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(bytes), 'the bytes differ from the original');

      const ranges = gcsRanges();
      assert.equal(ranges.length, 2, `ranges: ${ranges.join(', ')}`);
      // One byte past the end proves the object is not longer than the manifest says.
      assert.equal(ranges[0], `bytes=0-${bytes.length}`);
      const resumed = /^bytes=(\d+)-(\d+)$/.exec(ranges[1] ?? '');
      assert.ok(resumed, `resumed range: ${ranges[1]}`);
      const offset = Number(resumed[1]);
      // Every body byte that got through the cut was kept: the resume starts right after them.
      assert.ok(offset > cutAt - MAX_HEADER_BYTES && offset < cutAt, `resumed at ${offset}, cut at ${cutAt}`);
      assert.equal(Number(resumed[2]), bytes.length);
      assert.ok(opened().length >= 2);
    });
  });

  describe('when the GCS connection stalls in chunk 1 for longer than idleSeconds', () => {
    it('times the read out, re-reads chunk 1 and delivers the whole file', async () => {
      const bytes = randomBytesSeeded(3 * MiB + 77, 14);
      const { path } = await publish(h, 'gcs', 'stall-gcs-chunk', bytes, MiB);
      const timeouts = await sourceCount(h, 'gcs', 'timeout');
      const opened = await faultNextConnection('gcs', { stallAfterBytes: MiB + MiB / 2 });

      const started = Date.now();
      const res = await get(h, path);
      const elapsed = Date.now() - started;
      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(bytes), 'the bytes differ from the original');
      assert.deepEqual(gcsRanges(), chunkRanges(bytes.length, 1));
      assert.equal(await sourceCount(h, 'gcs', 'timeout'), timeouts + 1);
      assert.equal(opened()[0]!.faulted, true);
      // Noticed after idleSeconds (0.5 s), not after firstByteSeconds or any default.
      assert.ok(elapsed >= 450 && elapsed < 3000, `took ${elapsed} ms`);
    });
  });

  describe('when the S3 connection stalls in a whole-file-mode file', () => {
    it('times the read out, resumes on a new connection and delivers the whole file', async () => {
      const bytes = randomBytesSeeded(3 * MiB + 5, 15);
      const { path } = await publish(h, 's3', 'stall-s3-whole', bytes, null);
      const timeouts = await sourceCount(h, 's3', 'timeout');
      const stallAt = MiB + 4096;
      const opened = await faultNextConnection('s3', { stallAfterBytes: stallAt });

      const res = await get(h, path);
      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(bytes), 'the bytes differ from the original');
      assert.equal(await sourceCount(h, 's3', 'timeout'), timeouts + 1);
      const connections = opened();
      assert.ok(connections.length >= 2, `connections: ${connections.length}`);
      assert.equal(connections[0]!.faulted, true);
      // Resumed, not restarted: the new connection carried only the rest of the file (plus headers).
      const rest = connections.slice(1).reduce((sum, c) => sum + c.bytesDown, 0);
      assert.ok(
        rest < bytes.length - stallAt + 2 * MAX_HEADER_BYTES,
        `bytes after the stall: ${rest}, file ${bytes.length}`,
      );
    });
  });

  describe('when the object is overwritten between the cut and the retry', () => {
    async function expectIntegrityFailure(backend: Backend, run: () => Promise<void>) {
      const changed = await sourceCount(slow, backend, 'changed');
      const failures = await slow.metric('modelgate_requests_total', {
        route: 'file',
        outcome: 'integrity_failure',
      });
      await run();
      assert.equal(await sourceCount(slow, backend, 'changed'), changed + 1);
      assert.equal(
        await slow.metric('modelgate_requests_total', { route: 'file', outcome: 'integrity_failure' }),
        failures + 1,
      );
      const audit = slow.logs.findLast((line) => line.event === 'retrieval' && line.file === 'model.bin');
      assert.equal(audit?.outcome, 'integrity_failure');
      assert.equal(audit?.code, 'MG_SOURCE_CHANGED');
    }

    describe('in chunk 0 of an S3 object', () => {
      it('answers 502 MG_SOURCE_CHANGED before headers', async () => {
        const bytes = randomBytesSeeded(2 * MiB + 10, 16);
        const { key, path } = await publish(slow, 's3', 'changed-s3-chunk', bytes, MiB);
        await expectIntegrityFailure('s3', async () => {
          const opened = await faultNextConnection('s3', { cutAfterBytes: MiB / 2 });
          // Retry waits are jittered (possibly ~0 ms): the retry's connection is held until the overwrite.
          const overwrite = gate();
          s3Proxy.queue({ hold: overwrite.promise });
          const response = slow.request(path);
          await waitFor('the cut', () => opened()[0]?.faulted === true);
          // Same size, different bytes: only the version pin can tell.
          await s3.putObject(S3_BUCKET, key, randomBytesSeeded(bytes.length, 99));
          overwrite.open();
          const res = await response;
          assert.equal(res.status, 502);
          const body = (await res.json()) as { error: { code: string } };
          assert.equal(body.error.code, 'MG_SOURCE_CHANGED');
          assert.ok(opened().length >= 2, 'the retry reached S3');
        });
      });
    });

    describe('in a whole-file-mode GCS object, after the headers', () => {
      it('breaks the body instead of resuming from the new generation', async () => {
        const bytes = randomBytesSeeded(3 * MiB + 3, 17);
        const { key, path } = await publish(slow, 'gcs', 'changed-gcs-whole', bytes, null);
        const generation = gcs.getObject(GCS_BUCKET, key)!.generation;
        await expectIntegrityFailure('gcs', async () => {
          const opened = await faultNextConnection('gcs', { cutAfterBytes: MiB });
          const overwrite = gate();
          gcsProxy.queue({ hold: overwrite.promise });
          const response = get(slow, path);
          await waitFor('the cut', () => opened()[0]?.faulted === true);
          gcs.putObject(GCS_BUCKET, key, randomBytesSeeded(bytes.length, 98));
          overwrite.open();
          const res = await response;
          assert.equal(res.status, 200, 'the headers went out before the cut');
          assert.equal(res.complete, false);
          assert.ok(res.body.length < bytes.length, `got ${res.body.length} of ${bytes.length}`);
          assert.ok(res.body.equals(bytes.subarray(0, res.body.length)), 'only original bytes were sent');
          // The resume asked for the pinned generation, which is gone.
          const retry = gcs.requests().filter((r) => r.url.includes('alt=media'))[1];
          assert.ok(retry?.url.includes(`generation=${generation}`), `retry: ${retry?.url}`);
          assert.equal(retry?.status, 404);
        });
      });
    });
  });
});
