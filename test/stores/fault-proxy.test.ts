/**
 * Network faults between each cloud store and its server, injected by a TCP
 * proxy: a body cut short, a connection that stalls, a refused connection,
 * and a TLS handshake that never completes. What the integrity engine needs:
 * a truncated body is a stream error (never a silent short end, although the
 * engine's byte count would still catch one), a stall can always be ended
 * through the signal, and the SDKs do not retry behind the engine's back.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createAzureStore } from '../../src/stores/azure/azure-store.ts';
import { createGcsStore } from '../../src/stores/gcs/gcs-store.ts';
import { createS3Store } from '../../src/stores/s3/s3-store.ts';
import type { Store } from '../../src/stores/store.ts';
import { startAzurite, startS3rver } from '../helpers/emulators.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { startGcsServer } from '../helpers/gcs-server.ts';
import { code, collect } from './conformance.ts';

const OBJECT_SIZE = 1024 * 1024;

interface Backend {
  /** Upstream port for the proxy. */
  port: number;
  /** Seeds an object; returns its location. */
  put(key: string, bytes: Uint8Array): Promise<string>;
  /** A store whose endpoint is `origin` (`http(s)://127.0.0.1:port`). */
  storeAt(origin: string, connectSeconds?: number): Store;
  stop(): Promise<void>;
}

const timeoutsWith = (connectSeconds: number) => ({ connectSeconds, firstByteSeconds: 5, idleSeconds: 5 });

const backends: Record<string, () => Promise<Backend>> = {
  s3: async () => {
    const s3 = await startS3rver({ buckets: ['models'] });
    return {
      port: s3.port,
      put: async (key, bytes) => {
        await s3.putObject('models', key, bytes);
        return `s3://models/${key}`;
      },
      storeAt: (origin, connectSeconds = 2) =>
        createS3Store({
          region: 'us-east-1',
          endpoint: origin,
          forcePathStyle: true,
          credentials: s3.credentials,
          maxSockets: 8,
          timeouts: timeoutsWith(connectSeconds),
        }),
      stop: () => s3.stop(),
    };
  },
  gcs: async () => {
    const gcs = await startGcsServer();
    return {
      port: gcs.port,
      put: async (key, bytes) => {
        gcs.putObject('ml-models', key, bytes);
        return `gs://ml-models/${key}`;
      },
      storeAt: (origin, connectSeconds = 2) =>
        createGcsStore({ apiEndpoint: origin, maxSockets: 8, timeouts: timeoutsWith(connectSeconds) }),
      stop: () => gcs.close(),
    };
  },
  azure: async () => {
    const azurite = await startAzurite();
    return {
      port: azurite.port,
      put: async (key, bytes) => {
        await azurite.putObject('models', key, bytes);
        return `az://${azurite.account}/models/${key}`;
      },
      storeAt: (origin, connectSeconds = 2) =>
        createAzureStore({
          accounts: {
            [azurite.account]: { endpoint: `${origin}/${azurite.account}`, accountKey: azurite.accountKey },
          },
          maxSockets: 8,
          timeouts: timeoutsWith(connectSeconds),
        }),
      stop: () => azurite.stop(),
    };
  },
};

for (const [name, start] of Object.entries(backends)) {
  describe(`when the ${name} store's connection fails`, () => {
    let backend: Backend;
    let proxy: FaultProxy;
    let location: string;
    const bytes = randomBytes(OBJECT_SIZE);
    const stores: Store[] = [];
    /** A fresh store, so its first request opens a fresh connection that takes the queued plan. */
    const freshStore = (origin = proxy.url, connectSeconds?: number) => {
      const store = backend.storeAt(origin, connectSeconds);
      stores.push(store);
      return store;
    };

    before(async () => {
      backend = await start();
      proxy = await startFaultProxy({ port: backend.port });
      location = await backend.put('faults/model.bin', bytes);
    });
    after(async () => {
      await Promise.all(stores.map((store) => store.close()));
      await proxy.close();
      await backend.stop();
    });

    it('surfaces a body cut short as a stream error, not a short end', async () => {
      proxy.queue({ cutAfterBytes: 256 * 1024 });
      const result = await freshStore().read(
        location,
        { start: 0, end: OBJECT_SIZE },
        { signal: AbortSignal.timeout(10_000) },
      );
      assert.equal(result.size, OBJECT_SIZE);
      let received = 0;
      result.stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
      });
      await assert.rejects(collect(result.stream), (error: Error) => error instanceof Error);
      assert.ok(received < OBJECT_SIZE, `received ${received} of ${OBJECT_SIZE} bytes before the error`);
      assert.ok(proxy.connections().at(-1)?.faulted, 'the cut happened');
    });

    it('lets a stalled body be ended through the signal, closing the connection', async () => {
      proxy.queue({ stallAfterBytes: 128 * 1024 });
      const controller = new AbortController();
      const result = await freshStore().read(
        location,
        { start: 0, end: OBJECT_SIZE },
        { signal: controller.signal },
      );
      const connection = proxy.connections().at(-1)!;
      let received = 0;
      result.stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
      });
      const ended = settle(result.stream);
      await until(() => connection.faulted && received > 0, 3000, 'the stall begins');
      const stalledAt = received;
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(received, stalledAt, 'nothing arrives while stalled');

      controller.abort();
      const outcome = await Promise.race([
        ended,
        new Promise((resolve) => setTimeout(() => resolve('hung'), 1000)),
      ]);
      assert.notEqual(outcome, 'hung', 'the stream ends within 1 s of the abort');
      assert.ok(result.stream.destroyed);
      await until(() => !connection.open, 2000, 'the stalled connection closes');
    });

    it('fails a refused connection with MG_SOURCE_FAILED after a single attempt', async () => {
      const before = proxy.connections().length;
      proxy.setDefault({ refuse: true });
      try {
        await assert.rejects(
          freshStore().read(location, { start: 0, end: 100 }, { signal: AbortSignal.timeout(10_000) }),
          code('MG_SOURCE_FAILED'),
        );
        assert.equal(proxy.connections().length - before, 1, 'the SDK did not retry');
      } finally {
        proxy.setDefault({});
      }
    });

    it('fails with MG_SOURCE_TIMEOUT when the TLS handshake never completes', async () => {
      const silent = await startSilentServer();
      try {
        const startedAt = performance.now();
        await assert.rejects(
          freshStore(`https://127.0.0.1:${silent.port}`, 0.3).read(
            location,
            { start: 0, end: 100 },
            { signal: AbortSignal.timeout(10_000) },
          ),
          code('MG_SOURCE_TIMEOUT'),
        );
        assert.ok(performance.now() - startedAt < 3000, 'the connect timeout applied, not a later one');
      } finally {
        await silent.close();
      }
    });
  });
}

/** Resolves when the stream ends, errors or closes, whichever comes first. */
function settle(stream: Readable): Promise<string> {
  return new Promise((resolve) => {
    stream.once('end', () => resolve('end'));
    stream.once('error', () => resolve('error'));
    stream.once('close', () => resolve('close'));
  });
}

async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Accepts TCP connections and never says a word: a TLS handshake against it never completes. */
async function startSilentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
