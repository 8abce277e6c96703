/**
 * Real stores for chunk fetcher tests: a file store over a temp folder and
 * the GCS store against the local GCS server, both holding the same objects,
 * and a manifest entry for `bytes` split into `chunkSize` chunks.
 *
 * ```ts
 * const fx = await startFetcherFixture({ chunkSize, bytes, objects: { 'good.bin': bytes } });
 * const { fetcher } = fx.fetcherWith();
 * const chunk = await fetcher.get(fx.sessionFor('gcs', 'good.bin'), 0, signal);
 * after(() => fx.close());
 * ```
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChunkCache } from '../../src/cache/index.ts';
import { isChunked } from '../../src/catalog/manifest.ts';
import type { ChunkedFile } from '../../src/catalog/release.types.ts';
import { createChunkFetcher } from '../../src/integrity/chunk-fetcher.ts';
import { createInlineHasher, type Hasher } from '../../src/integrity/hasher.ts';
import { createMemoryBudget } from '../../src/integrity/memory-budget.ts';
import { createSourceSession, type SourceSession } from '../../src/integrity/source-reader.ts';
import { createFileStore } from '../../src/stores/file/file-store.ts';
import { createGcsStore } from '../../src/stores/gcs/gcs-store.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { type GcsServer, startGcsServer } from './gcs-server.ts';
import { buildManifest } from './releases.ts';
import { transferConfig } from './transfer-config.ts';

export type FixtureStore = 'file' | 'gcs';

export interface FetcherFixture {
  gcs: GcsServer;
  /** The manifest entry of `bytes` (its `sources` are a placeholder: sessions set their own). */
  file: ChunkedFile;
  /** `file:<object>` or `gs://models/<object>`. */
  locationOf(kind: FixtureStore, object: string): string;
  /** A session reading `object` from one store. */
  sessionFor(kind: FixtureStore, object: string): SourceSession<ChunkedFile>;
  /** A session for any entry (other sources, other chunk digests); locations pick their store by scheme. */
  sessionOf(file: ChunkedFile): SourceSession<ChunkedFile>;
  fetcherWith(options?: { cacheBytes?: number; maxBytes?: number; disk?: ChunkCache; hasher?: Hasher }): {
    budget: ReturnType<typeof createMemoryBudget>;
    fetcher: ReturnType<typeof createChunkFetcher>;
  };
  close(): Promise<void>;
}

const transfer = transferConfig({ maxBufferedBytes: 64 * 1024 * 1024, memoryWaitSeconds: 5 });

export async function startFetcherFixture(options: {
  chunkSize: number;
  bytes: Buffer;
  objects: Record<string, Uint8Array>;
}): Promise<FetcherFixture> {
  const entry = buildManifest({
    model: 'm',
    version: '1',
    environment: 'prod',
    files: [{ path: 'm.bin', bytes: options.bytes, sources: ['x'], chunkSize: options.chunkSize }],
  }).files[0];
  assert.ok(entry && isChunked(entry));
  const file: ChunkedFile = entry;
  const dir = await mkdtemp(join(tmpdir(), 'modelgate-fetcher-'));
  const gcs = await startGcsServer();
  for (const [name, bytes] of Object.entries(options.objects)) {
    await writeFile(join(dir, name), bytes);
    gcs.putObject('models', name, bytes);
  }
  const stores = {
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
  const locationOf = (kind: FixtureStore, object: string) =>
    kind === 'file' ? `file:${object}` : `gs://models/${object}`;
  const sessionOf = (of: ChunkedFile) =>
    createSourceSession<ChunkedFile>(of, {
      stores: { forLocation: (location) => (location.startsWith('gs://') ? stores.gcs : stores.file) },
      transfer,
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger({ level: 'silent' }),
    });
  return {
    gcs,
    file,
    locationOf,
    sessionOf,
    sessionFor: (kind, object) => sessionOf({ ...file, sources: [locationOf(kind, object)] }),
    fetcherWith(fetcherOptions = {}) {
      const budget = createMemoryBudget({ maxBytes: fetcherOptions.maxBytes ?? 64 * options.chunkSize });
      const fetcher = createChunkFetcher({
        hasher: fetcherOptions.hasher ?? createInlineHasher(),
        cacheBytes: fetcherOptions.cacheBytes ?? 0,
        budget,
        ...(fetcherOptions.disk ? { disk: fetcherOptions.disk } : {}),
      });
      return { budget, fetcher };
    },
    async close() {
      await stores.gcs.close();
      await stores.file.close();
      await gcs.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A signal that never aborts (a client that stays). */
export const live = (): AbortSignal => new AbortController().signal;

/** Polls `check` every 10 ms for up to 5 s (the caller asserts afterwards). */
export async function settle(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
}
