/**
 * The store set: only configured stores exist, a location's scheme picks
 * one, and a file-only deployment never loads a cloud SDK.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createStores, type StoreSet } from '../../src/stores/index.ts';

const timeouts = { connectSeconds: 1, firstByteSeconds: 5, idleSeconds: 5 };
const run = promisify(execFile);

describe('when only the file store is configured', () => {
  let root: string;
  let stores: StoreSet;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'modelgate-store-set-'));
    stores = await createStores({ file: { root, timeouts } });
  });
  after(async () => {
    await stores.close();
    await rm(root, { recursive: true, force: true });
  });

  it('offers the file store for file: locations and nothing for other schemes', () => {
    assert.deepEqual(stores.kinds(), ['file']);
    assert.equal(stores.forLocation('file:a/b.bin')?.kind, 'file');
    assert.equal(stores.forLocation('s3://bucket/key'), undefined);
    assert.equal(stores.forLocation('gs://bucket/key'), undefined);
    assert.equal(stores.forLocation('https://example.com/x'), undefined);
  });
});

describe('when a store set with open connections is closed twice', () => {
  // "Closes twice without error" used to assert only that nothing threw: a close that did nothing passed too.
  it('closes every pooled connection, and the second close resolves as well', async () => {
    const origin = createServer((req, res) => {
      // Enough of S3's HeadObject answer for the SDK: a size and an ETag, over a keep-alive connection.
      res.writeHead(200, { 'content-length': '5', etag: '"v1"', 'last-modified': new Date().toUTCString() });
      res.end(req.method === 'HEAD' ? undefined : 'hello');
    });
    const sockets = new Set<Socket>();
    origin.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    const { port } = origin.address() as AddressInfo;
    const stores = await createStores({
      s3: {
        region: 'us-east-1',
        endpoint: `http://127.0.0.1:${port}`,
        forcePathStyle: true,
        credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
        maxSockets: 4,
        timeouts,
      },
    });
    try {
      const s3 = stores.forLocation('s3://bucket/key');
      assert.ok(s3 !== undefined);
      const info = await s3.stat('s3://bucket/key', AbortSignal.timeout(10_000));
      assert.equal(info.size, 5);
      assert.equal(sockets.size, 1, 'the stat left one pooled keep-alive connection open');

      await stores.close();
      await stores.close();
      const deadline = Date.now() + 5000;
      while (sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(sockets.size, 0, 'closing the store set closed the pooled connection');
    } finally {
      await stores.close();
      origin.closeAllConnections();
      await new Promise<void>((resolve) => origin.close(() => resolve()));
    }
  });
});

describe('when every store is configured', () => {
  it('offers each kind for its scheme', async () => {
    const root = await mkdtemp(join(tmpdir(), 'modelgate-store-set-'));
    const stores = await createStores({
      file: { root, timeouts },
      s3: {
        region: 'us-east-1',
        endpoint: 'http://127.0.0.1:9',
        forcePathStyle: true,
        credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
        maxSockets: 4,
        timeouts,
      },
      gcs: { apiEndpoint: 'http://127.0.0.1:9', maxSockets: 4, timeouts },
      azure: {
        accounts: {
          devstoreaccount1: { endpoint: 'http://127.0.0.1:9/devstoreaccount1', accountKey: 'a2V5' },
        },
        maxSockets: 4,
        timeouts,
      },
    });
    try {
      assert.deepEqual(stores.kinds(), ['file', 's3', 'gcs', 'azure']);
      assert.equal(stores.forLocation('s3://bucket/key')?.kind, 's3');
      assert.equal(stores.forLocation('gs://bucket/key')?.kind, 'gcs');
      assert.equal(stores.forLocation('az://devstoreaccount1/c0ntainer/key')?.kind, 'azure');
    } finally {
      await stores.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('when a process creates a file-only store set', () => {
  it('loads no cloud SDK, while a cloud configuration does', async () => {
    const loaded = async (config: string) => {
      const script = `
        import { createRequire } from 'node:module';
        const { createStores } = await import(${JSON.stringify(new URL('../../src/stores/index.ts', import.meta.url).href)});
        const stores = await createStores(${config});
        await stores.close();
        const cache = Object.keys(createRequire(import.meta.url).cache);
        console.log(JSON.stringify(['@aws-sdk/', '@google-cloud/', '@azure/'].filter((sdk) => cache.some((path) => path.includes('/node_modules/' + sdk)))));
      `;
      const { stdout } = await run(process.execPath, ['--input-type=module', '--eval', script]);
      return JSON.parse(stdout) as string[];
    };
    const t = JSON.stringify(timeouts);
    assert.deepEqual(await loaded(`{ file: { root: '/tmp', timeouts: ${t} } }`), []);
    assert.deepEqual(
      await loaded(`{ s3: { region: 'us-east-1', forcePathStyle: false, maxSockets: 1, timeouts: ${t} } }`),
      ['@aws-sdk/'],
    );
  });
});
