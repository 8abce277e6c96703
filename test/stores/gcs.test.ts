/**
 * The GCS store against the GCS JSON API test server (no GCS emulator runs
 * here), reached through a fault proxy so the suite can watch its sockets.
 * Objects are seeded through the official SDK (`file.save()`, a resumable
 * upload) and replaced or removed in process.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Storage } from '@google-cloud/storage';
import type { GcsStoreConfig } from '../../src/config/config.types.ts';
import { createGcsStore, parseGcsLocation } from '../../src/stores/gcs/gcs-store.ts';
import type { Store } from '../../src/stores/store.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';
import { type GcsServer, startGcsServer } from '../helpers/gcs-server.ts';
import { code, collect, runStoreConformance } from './conformance.ts';

const timeouts = { connectSeconds: 2, firstByteSeconds: 5, idleSeconds: 5 };
const BUCKET = 'ml-models';

function storeConfig(apiEndpoint: string): GcsStoreConfig {
  return { projectId: 'test-project', apiEndpoint, maxSockets: 16, timeouts };
}

runStoreConformance('gcs (JSON API test server)', async () => {
  const gcs = await startGcsServer();
  const proxy = await startFaultProxy({ port: gcs.port });
  const store = createGcsStore(storeConfig(proxy.url));
  const sdk = new Storage({ apiEndpoint: gcs.url, projectId: 'test-project' });
  const nameOf = (location: string) => parseGcsLocation(location).name;
  return {
    store,
    proxy,
    async put(key, bytes) {
      await sdk.bucket(BUCKET).file(key).save(Buffer.from(bytes));
      return `gs://${BUCKET}/${key}`;
    },
    overwrite: async (location, bytes) => {
      gcs.putObject(BUCKET, nameOf(location), bytes);
    },
    remove: async (location) => {
      gcs.deleteObject(BUCKET, nameOf(location));
    },
    async teardown() {
      await store.close();
      await proxy.close();
      await gcs.close();
    },
    malformedLocations: [
      'gs://',
      'gs://ml-models',
      'gs://ml-models/',
      'gs://ML_Models/x',
      'gs://ml-models/..',
      'gs://ml-models/a\nb',
    ],
  };
});

describe('when the GCS store talks to the JSON API', () => {
  let gcs: GcsServer;
  let store: Store;
  before(async () => {
    gcs = await startGcsServer();
    store = createGcsStore(storeConfig(gcs.url));
  });
  after(async () => {
    await store.close();
    await gcs.close();
  });

  it('asks for the pinned generation, ranges without suffixes, and the stored encoding, without credentials on loopback', async () => {
    const object = gcs.putObject(BUCKET, 'a/b/model.bin', randomBytes(4096));
    gcs.clearRequests();
    const result = await store.read(
      `gs://${BUCKET}/a/b/model.bin`,
      { start: 1024, end: 2048 },
      { signal: AbortSignal.timeout(5000), pin: object.generation },
    );
    assert.equal(result.version, object.generation);
    assert.deepEqual(await collect(result.stream), object.data.subarray(1024, 2048));
    const [request, ...rest] = gcs.requests();
    assert.equal(rest.length, 0);
    const url = new URL(request!.url, gcs.url);
    assert.equal(url.pathname, `/storage/v1/b/${BUCKET}/o/a%2Fb%2Fmodel.bin`);
    assert.equal(url.searchParams.get('alt'), 'media');
    assert.equal(url.searchParams.get('generation'), object.generation);
    assert.equal(request!.headers.range, 'bytes=1024-2047');
    assert.equal(request!.headers['accept-encoding'], 'gzip');
    assert.equal(request!.headers.authorization, undefined);
  });

  it('fails with MG_SOURCE_FAILED after one request when the server answers 503 (no SDK retries)', async () => {
    gcs.putObject(BUCKET, 'flaky.bin', randomBytes(100));
    gcs.clearRequests();
    gcs.failNext(1, 503);
    await assert.rejects(
      store.read(`gs://${BUCKET}/flaky.bin`, { start: 0, end: 100 }, { signal: AbortSignal.timeout(5000) }),
      code('MG_SOURCE_FAILED'),
    );
    assert.equal(gcs.requests().length, 1);
  });

  it('maps 403 to MG_SOURCE_FAILED, not to not-found', async () => {
    gcs.putObject(BUCKET, 'denied.bin', randomBytes(100));
    gcs.failNext(1, 403);
    await assert.rejects(
      store.stat(`gs://${BUCKET}/denied.bin`, AbortSignal.timeout(5000)),
      code('MG_SOURCE_FAILED'),
    );
  });

  it('reads object names with spaces, `%` and non-ASCII characters verbatim', async () => {
    const name = 'fraud detector/2026.11.3/100% modèle.bin';
    const object = gcs.putObject(BUCKET, name, randomBytes(3000));
    const result = await store.read(
      `gs://${BUCKET}/${name}`,
      { start: 0, end: 3000 },
      { signal: AbortSignal.timeout(5000) },
    );
    assert.deepEqual(await collect(result.stream), object.data);
  });
});
