/**
 * A chunk read from the source is shared by every transfer that waits for
 * it. When the last of them leaves, the read must be aborted: the origin
 * stops being asked for bytes. Counters and gauges returning to 0 do not show
 * that (a read left running still finishes into nowhere), so this test
 * watches the origin itself: a GCS test server that sends bodies slowly,
 * behind a TCP proxy that counts every response byte it forwards.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { type GcsServer, startGcsServer } from '../helpers/gcs-server.ts';
import { type Harness, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';

const MiB = 1024 * 1024;
const BUCKET = 'models';

describe('when every client of a shared source read disconnects', () => {
  let gcs: GcsServer;
  let origin: FaultProxy;
  let h: Harness;
  const bytes = randomBytesSeeded(8 * MiB, 44);

  const bytesFromOrigin = () => origin.connections().reduce((sum, c) => sum + c.bytesDown, 0);
  const mediaRequests = () => gcs.requests().filter((r) => r.url.includes('alt=media')).length;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  before(async () => {
    gcs = await startGcsServer();
    origin = await startFaultProxy({ port: gcs.port });
    h = await startHarness({
      config: {
        stores: { gcs: { projectId: 'test-project', apiEndpoint: origin.url } },
        // Two chunks in flight and no chunk cache: what the origin sends is what the transfers asked for.
        transfer: { readAhead: 2, chunkCacheBytes: 0, retryBackoffMs: 10 },
      },
    });
  });
  after(async () => {
    await h?.stop();
    await origin?.close();
    await gcs?.close();
  });

  it('stops reading the source: no new requests and no more bytes from the origin', async () => {
    gcs.putObject(BUCKET, 'shared/model.bin', bytes);
    const { digest } = await h.addRelease({
      model: 'fraud-detector',
      version: 'shared-abort',
      files: [{ path: 'model.bin', bytes, chunkSize: MiB, sources: [`gs://${BUCKET}/shared/model.bin`] }],
    });
    const url = `${h.url}/v1/models/fraud-detector/releases/${digest}/files/model.bin`;
    // ~800 KB/s per response: one 1 MiB chunk takes over a second to arrive.
    gcs.setBodyRate(8 * 1024);
    gcs.clearRequests();
    const token = await h.token();
    const clients = [new AbortController(), new AbortController()];
    const downloads = clients.map((c) =>
      fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: c.signal }).then(
        async (res) => {
          await res.body?.cancel();
          return res.status;
        },
        (error: unknown) => error,
      ),
    );
    // Both transfers are waiting for chunk 0, which is still arriving from the origin.
    for (let i = 0; i < 200 && bytesFromOrigin() < 128 * 1024; i++) await sleep(20);
    assert.ok(bytesFromOrigin() >= 128 * 1024, 'the origin started sending chunk 0');
    assert.ok(bytesFromOrigin() < MiB, 'chunk 0 has not fully arrived yet');

    for (const client of clients) client.abort();
    await Promise.all(downloads);
    for (let i = 0; i < 200 && (await h.metric('modelgate_inflight_requests')) !== 0; i++) await sleep(20);
    assert.equal(await h.metric('modelgate_inflight_requests'), 0);
    // Generous settling time for a loaded machine: the abort has to travel store → socket → proxy.
    await sleep(1000);

    const bytesAfterAbort = bytesFromOrigin();
    const requestsAfterAbort = mediaRequests();
    await sleep(1500);
    assert.equal(bytesFromOrigin(), bytesAfterAbort, 'no more bytes come from the origin');
    assert.equal(mediaRequests(), requestsAfterAbort, 'no new requests reach the origin');
    // Left running, the shared read of chunk 0 would have finished (1 MiB) by now: 2.5 s at ~800 KB/s.
    assert.ok(bytesAfterAbort < 512 * 1024, `the origin sent ${bytesAfterAbort} bytes, less than one chunk`);
  });
});
