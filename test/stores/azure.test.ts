/**
 * The Azure store against Azurite's blob service (a child process), reached
 * through a fault proxy so the suite can watch its sockets. The store signs
 * with the development account's shared key, as a configured `accountKey`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { AzureStoreConfig } from '../../src/config/config.types.ts';
import { createAzureStore, parseAzureLocation } from '../../src/stores/azure/azure-store.ts';
import type { Store } from '../../src/stores/store.ts';
import { type AzuriteEmulator, startAzurite } from '../helpers/emulators.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { code, collect, runStoreConformance } from './conformance.ts';

const timeouts = { connectSeconds: 2, firstByteSeconds: 5, idleSeconds: 5 };
const CONTAINER = 'models';

let azurite: AzuriteEmulator;
let proxy: FaultProxy;

before(async () => {
  azurite = await startAzurite();
  proxy = await startFaultProxy({ port: azurite.port });
});
after(async () => {
  await proxy?.close();
  await azurite?.stop();
});

function storeConfig(account: {
  endpoint?: string;
  accountKey?: string;
  connectionString?: string;
}): AzureStoreConfig {
  return { accounts: { [azurite.account]: account }, maxSockets: 16, timeouts };
}

runStoreConformance('azure (Azurite)', async () => {
  const store = createAzureStore(
    storeConfig({ endpoint: `${proxy.url}/${azurite.account}`, accountKey: azurite.accountKey }),
  );
  const blobOf = (location: string) => parseAzureLocation(location).blob;
  return {
    store,
    proxy,
    async put(key, bytes) {
      await azurite.putObject(CONTAINER, key, bytes);
      return `az://${azurite.account}/${CONTAINER}/${key}`;
    },
    overwrite: async (location, bytes) => {
      await azurite.putObject(CONTAINER, blobOf(location), bytes);
    },
    remove: (location) => azurite.deleteObject(CONTAINER, blobOf(location)),
    teardown: () => store.close(),
    malformedLocations: [
      'az://',
      'az://devstoreaccount1/models',
      'az://devstoreaccount1/models/',
      'az://devstoreaccount1/Models/x',
      'az://devstoreaccount1/models/a/../../other/x',
      // A well-formed location of an account that is not configured.
      'az://otheraccount/models/x',
    ],
  };
});

describe('when the Azure store is configured with a connection string', () => {
  let store: Store;
  before(() => {
    store = createAzureStore(storeConfig({ connectionString: azurite.connectionString }));
  });
  after(() => store.close());

  it('reads blobs with slashes, spaces and non-ASCII characters verbatim', async () => {
    const bytes = randomBytes(5000);
    const blob = 'fraud detector/2026.11.3/modèle v1.bin';
    await azurite.putObject(CONTAINER, blob, bytes);
    const result = await store.read(
      `az://${azurite.account}/${CONTAINER}/${blob}`,
      { start: 100, end: 4100 },
      { signal: AbortSignal.timeout(5000) },
    );
    assert.equal(result.size, 5000);
    assert.deepEqual(await collect(result.stream), bytes.subarray(100, 4100));
  });

  it('fails with MG_SOURCE_FAILED for a wrong account key (403), not not-found', async () => {
    const wrong = createAzureStore(
      storeConfig({ endpoint: azurite.endpoint, accountKey: Buffer.alloc(64, 7).toString('base64') }),
    );
    try {
      await azurite.putObject(CONTAINER, 'denied.bin', randomBytes(10));
      await assert.rejects(
        wrong.stat(`az://${azurite.account}/${CONTAINER}/denied.bin`, AbortSignal.timeout(5000)),
        code('MG_SOURCE_FAILED'),
      );
    } finally {
      await wrong.close();
    }
  });
});
