/**
 * Version pins, one layer at a time (issue 18). A pinned read has two
 * layers: the store asks the origin for the pinned version (S3 and Azure send
 * `If-Match`, GCS asks for the `generation`), and it compares the version the
 * answer carries. Each masks the other against a well-behaved origin, so each
 * is tested alone here:
 * - on the wire: a recording proxy in front of s3rver, Azurite and the GCS
 *   test server sees every ranged read a real modelgate server sends for a
 *   chunked file; every read after the first carries the pin of the first;
 * - the store's own compare: an origin that ignores the precondition (a proxy
 *   that strips `If-Match` before Azurite, or drops `generation=` before the
 *   GCS server; s3rver ignores `If-Match` by itself, see s3.test.ts) serves
 *   the overwritten object, and the store must still fail MG_SOURCE_CHANGED.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  generateAccountSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { createAzureStore } from '../../src/stores/azure/azure-store.ts';
import { createGcsStore } from '../../src/stores/gcs/gcs-store.ts';
import type { Store } from '../../src/stores/store.ts';
import {
  type AzuriteEmulator,
  type S3rverEmulator,
  startAzurite,
  startS3rver,
} from '../helpers/emulators.ts';
import { type GcsServer, startGcsServer } from '../helpers/gcs-server.ts';
import { rawGet } from '../helpers/http.ts';
import {
  type HttpFaultProxy,
  type RecordedRequest,
  rangeOf,
  startHttpFaultProxy,
} from '../helpers/http-fault-proxy.ts';
import { type Harness, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';
import { code, collect } from './conformance.ts';

const MiB = 1024 * 1024;
const MODEL = 'fraud-detector';
const S3_BUCKET = 'models';
const GCS_BUCKET = 'ml-models';
const AZURE_CONTAINER = 'models';
const timeouts = { connectSeconds: 2, firstByteSeconds: 5, idleSeconds: 5 };

let s3: S3rverEmulator;
let gcs: GcsServer;
let azurite: AzuriteEmulator;

before(async () => {
  [s3, gcs, azurite] = await Promise.all([
    startS3rver({ buckets: [S3_BUCKET] }),
    startGcsServer(),
    startAzurite(),
  ]);
});
after(async () => {
  await Promise.all([s3?.stop(), gcs?.close(), azurite?.stop()]);
});

function header(request: RecordedRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

describe('when a real modelgate server reads a chunked file through a recording proxy', () => {
  let s3Proxy: HttpFaultProxy;
  let gcsProxy: HttpFaultProxy;
  let azureProxy: HttpFaultProxy;
  let h: Harness;
  const bytes = randomBytesSeeded(4 * MiB + 777, 41);
  const key = `${MODEL}/1.0.0/model.bin`;
  let path: (store: string) => string;

  before(async () => {
    [s3Proxy, gcsProxy, azureProxy] = await Promise.all([
      startHttpFaultProxy({ port: s3.port }),
      startHttpFaultProxy({ port: gcs.port }),
      startHttpFaultProxy({ port: azurite.port }),
    ]);
    h = await startHarness({
      config: {
        stores: {
          s3: {
            region: 'us-east-1',
            endpoint: s3Proxy.url,
            forcePathStyle: true,
            credentials: s3.credentials,
          },
          gcs: { projectId: 'test-project', apiEndpoint: gcsProxy.url },
          azure: {
            accounts: {
              [azurite.account]: {
                endpoint: `${azureProxy.url}/${azurite.account}`,
                accountKey: azurite.accountKey,
              },
            },
          },
        },
        // One chunk read at a time and no cache: every chunk is its own request, after the first.
        transfer: { readAhead: 1, chunkCacheBytes: 0, retryBackoffMs: 10 },
      },
    });
    const paths = new Map<string, string>();
    for (const [store, source] of [
      ['s3', `s3://${S3_BUCKET}/${key}`],
      ['gcs', `gs://${GCS_BUCKET}/${key}`],
      ['azure', `az://${azurite.account}/${AZURE_CONTAINER}/${key}`],
    ] as const) {
      const { digest } = await h.addRelease({
        model: `${MODEL}-${store}`,
        version: '1.0.0',
        files: [{ path: 'model.bin', bytes, chunkSize: MiB, sources: [source] }],
      });
      paths.set(store, `/v1/models/${MODEL}-${store}/releases/${digest}/files/model.bin`);
    }
    path = (store) => paths.get(store) ?? '';
  });
  after(async () => {
    await h?.stop();
    await Promise.all([s3Proxy?.close(), gcsProxy?.close(), azureProxy?.close()]);
  });

  async function download(store: string) {
    const res = await rawGet(`${h.url}${path(store)}`, { authorization: `Bearer ${await h.token()}` });
    assert.equal(res.status, 200);
    assert.ok(res.body.equals(bytes), 'the client received other bytes than the file');
  }

  const rangedGets = (proxy: HttpFaultProxy) =>
    proxy.requests().filter((r) => r.method === 'GET' && rangeOf(r.headers) !== undefined);

  it('sends If-Match with the first answer’s ETag on every S3 read after the first', async () => {
    const etag = await s3.putObject(S3_BUCKET, key, bytes);
    s3Proxy.clearRequests();
    await download('s3');
    const [first, ...later] = rangedGets(s3Proxy);
    assert.ok(first, 'S3 was read');
    assert.equal(later.length, 4, 'five chunks, five ranged reads');
    assert.equal(header(first, 'if-match'), undefined, 'the first read has nothing to pin yet');
    for (const request of later) assert.equal(header(request, 'if-match'), etag, rangeOf(request.headers));
  });

  it('sends If-Match with the first answer’s ETag on every Azure read after the first', async () => {
    const etag = await azurite.putObject(AZURE_CONTAINER, key, bytes);
    azureProxy.clearRequests();
    await download('azure');
    const [first, ...later] = rangedGets(azureProxy);
    assert.ok(first, 'Azure was read');
    assert.equal(later.length, 4, 'five chunks, five ranged reads');
    assert.equal(header(first, 'if-match'), undefined, 'the first read has nothing to pin yet');
    for (const request of later) assert.equal(header(request, 'if-match'), etag, rangeOf(request.headers));
  });

  it('asks for the first answer’s generation on every GCS read after the first', async () => {
    const object = gcs.putObject(GCS_BUCKET, key, bytes);
    gcsProxy.clearRequests();
    await download('gcs');
    const [first, ...later] = rangedGets(gcsProxy);
    assert.ok(first, 'GCS was read');
    assert.equal(later.length, 4, 'five chunks, five ranged reads');
    const generationOf = (request: RecordedRequest) =>
      new URL(request.url, gcsProxy.url).searchParams.get('generation');
    assert.equal(generationOf(first), null, 'the first read has nothing to pin yet');
    for (const request of later) assert.equal(generationOf(request), object.generation, request.url);
  });
});

describe('when Azure is reached through a proxy that strips If-Match, and the blob is overwritten', () => {
  let proxy: HttpFaultProxy;
  let store: Store;

  before(async () => {
    proxy = await startHttpFaultProxy({ port: azurite.port, stripRequestHeaders: ['if-match'] });
    // A SAS, not the shared key: a shared-key signature covers If-Match, so stripping it would break auth.
    const sas = generateAccountSASQueryParameters(
      {
        expiresOn: new Date(Date.now() + 3600_000),
        permissions: AccountSASPermissions.parse('r'),
        resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
        services: AccountSASServices.parse('b').toString(),
      },
      new StorageSharedKeyCredential(azurite.account, azurite.accountKey),
    ).toString();
    store = createAzureStore({
      accounts: {
        [azurite.account]: {
          connectionString: `BlobEndpoint=${proxy.url}/${azurite.account};SharedAccessSignature=${sas}`,
        },
      },
      maxSockets: 4,
      timeouts,
    });
  });
  after(async () => {
    await store?.close();
    await proxy?.close();
  });

  it('still fails the pinned read with MG_SOURCE_CHANGED, from the answer’s ETag', async () => {
    const blob = 'pinned/model.bin';
    const location = `az://${azurite.account}/${AZURE_CONTAINER}/${blob}`;
    const original = randomBytesSeeded(4096, 42);
    await azurite.putObject(AZURE_CONTAINER, blob, original);
    const first = await store.read(location, { start: 0, end: 1024 }, { signal: AbortSignal.timeout(5000) });
    assert.deepEqual(await collect(first.stream), original.subarray(0, 1024));

    const newEtag = await azurite.putObject(AZURE_CONTAINER, blob, randomBytesSeeded(4096, 43));
    assert.notEqual(newEtag, first.version);
    proxy.clearRequests();

    await assert.rejects(
      store.read(
        location,
        { start: 1024, end: 2048 },
        { signal: AbortSignal.timeout(5000), pin: first.version },
      ),
      code('MG_SOURCE_CHANGED'),
    );
    // The store did pin (the proxy removed it): only the store's own ETag compare refused the bytes.
    const pinned = proxy.requests().find((r) => r.method === 'GET' && rangeOf(r.headers) !== undefined);
    assert.ok(pinned, 'the pinned read reached the proxy');
    assert.equal(header(pinned, 'if-match'), first.version);
    assert.equal(pinned.answeredBy, 'origin');
  });
});

describe('when GCS is reached through a proxy that drops the generation, and the object is overwritten', () => {
  let proxy: HttpFaultProxy;
  let store: Store;

  before(async () => {
    proxy = await startHttpFaultProxy({
      port: gcs.port,
      rewriteUrl: (url) => {
        url.searchParams.delete('generation');
        return url;
      },
    });
    store = createGcsStore({ projectId: 'test-project', apiEndpoint: proxy.url, maxSockets: 4, timeouts });
  });
  after(async () => {
    await store?.close();
    await proxy?.close();
  });

  it('still fails the pinned read with MG_SOURCE_CHANGED, from the answer’s generation', async () => {
    const name = 'pinned/model.bin';
    const location = `gs://${GCS_BUCKET}/${name}`;
    const original = gcs.putObject(GCS_BUCKET, name, randomBytesSeeded(4096, 44));
    const first = await store.read(location, { start: 0, end: 1024 }, { signal: AbortSignal.timeout(5000) });
    assert.equal(first.version, original.generation);
    assert.deepEqual(await collect(first.stream), original.data.subarray(0, 1024));

    const replaced = gcs.putObject(GCS_BUCKET, name, randomBytesSeeded(4096, 45));
    assert.notEqual(replaced.generation, original.generation);
    proxy.clearRequests();

    await assert.rejects(
      store.read(
        location,
        { start: 1024, end: 2048 },
        { signal: AbortSignal.timeout(5000), pin: first.version },
      ),
      code('MG_SOURCE_CHANGED'),
    );
    const pinned = proxy.requests().find((r) => r.method === 'GET' && rangeOf(r.headers) !== undefined);
    assert.ok(pinned, 'the pinned read reached the proxy');
    assert.equal(new URL(pinned.url, proxy.url).searchParams.get('generation'), original.generation);
  });
});
