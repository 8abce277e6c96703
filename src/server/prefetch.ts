import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { isProcessAlive } from '../cache/layout.ts';
import { isChunked } from '../catalog/manifest.ts';
import type { ChunkedFile, Release } from '../catalog/release.types.ts';
import type { TransferConfig } from '../config/config.types.ts';
import type { ChunkFetcher } from '../integrity/chunk-fetcher.ts';
import { createSourceSession, type StoreLookup } from '../integrity/source-reader.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';

/** What `GET …/prefetch` answers (docs/scaling.md). */
export interface PrefetchStatus {
  state: 'running' | 'done' | 'failed';
  bytes: number;
  totalBytes: number;
}

/** The status file shared by the workers of one `serve` (in the cache folder), with its writer. */
interface StatusRecord extends PrefetchStatus {
  host: string;
  pid: number;
}

export interface Prefetcher {
  /** Starts warming the cache for `release` unless a prefetch of it runs or is done (any worker); never throws. */
  start(release: Release): Promise<PrefetchStatus>;
  /** The prefetch of `release` as this process or another worker last recorded it; undefined when never started. */
  status(release: Release): Promise<PrefetchStatus | undefined>;
}

export interface PrefetchDeps {
  /** The cache folder: status files live in `<dir>/prefetch/`. */
  dir: string;
  fetcher: ChunkFetcher;
  stores: StoreLookup;
  transfer: TransferConfig;
  metrics: Metrics;
  logger: Logger;
}

/** Chunks one prefetch reads at once: enough to overlap source latency, few enough to leave memory to clients. */
const PARALLEL_CHUNKS = 2;
/** Progress is written to the status file at most this often. */
const WRITE_EVERY_MS = 500;

/** Files without `chunks` are not prefetched (whole-file entries are cached when a client reads them). */
function chunkedFiles(release: Release): ChunkedFile[] {
  return [...release.files.values()].filter(isChunked);
}

async function readRecord(path: string): Promise<StatusRecord | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as StatusRecord;
  } catch {
    return undefined;
  }
}

/** A `running` record whose writer died (this host, pid gone) never finishes: it reads as `failed`. */
function effective(record: StatusRecord): PrefetchStatus {
  const orphaned = record.state === 'running' && record.host === hostname() && !isProcessAlive(record.pid);
  return { state: orphaned ? 'failed' : record.state, bytes: record.bytes, totalBytes: record.totalBytes };
}

/**
 * `POST …/prefetch`: reads every chunk of a release through the chunk fetcher,
 * so it lands in the verified disk cache exactly as a client read would put
 * it there (one source read per chunk across workers, verified before it is
 * stored). The status is a small JSON file in the cache folder, so a `GET` to
 * any worker sees the job a `POST` to another one started.
 */
export function createPrefetcher(deps: PrefetchDeps): Prefetcher {
  const folder = join(deps.dir, 'prefetch');
  const jobs = new Map<string, PrefetchStatus>();
  const pathOf = (release: Release) => join(folder, `${release.digest.replace(/^sha256:/, '')}.json`);

  async function record(release: Release, status: PrefetchStatus): Promise<void> {
    const path = pathOf(release);
    const temp = `${path}.${process.pid}.tmp`;
    const line: StatusRecord = { ...status, host: hostname(), pid: process.pid };
    await mkdir(folder, { recursive: true });
    await writeFile(temp, JSON.stringify(line));
    await rename(temp, path);
  }

  async function warm(release: Release, status: PrefetchStatus): Promise<void> {
    const signal = new AbortController().signal;
    let lastWrite = 0;
    for (const file of chunkedFiles(release)) {
      const session = createSourceSession(file, {
        stores: deps.stores,
        transfer: deps.transfer,
        metrics: deps.metrics,
        logger: deps.logger,
      });
      let next = 0;
      const lane = async () => {
        for (let index = next++; index < file.chunks.length; index = next++) {
          using chunk = await deps.fetcher.get(session, index, signal);
          if (!chunk.verified) throw new Error(`chunk ${index} of ${file.path} does not match the manifest`);
          status.bytes += chunk.data.byteLength;
          deps.metrics.prefetchBytes.inc(chunk.data.byteLength);
          if (Date.now() - lastWrite >= WRITE_EVERY_MS) {
            lastWrite = Date.now();
            await record(release, status);
          }
        }
      };
      await Promise.all(Array.from({ length: PARALLEL_CHUNKS }, lane));
    }
  }

  async function run(release: Release, status: PrefetchStatus): Promise<void> {
    const started = performance.now();
    try {
      await warm(release, status);
      // Done means on disk: the last chunks' writes run after they were handed out.
      await deps.fetcher.flush();
      status.state = 'done';
      deps.logger.info(
        {
          event: 'prefetch_done',
          release: release.digest,
          bytes: status.bytes,
          ms: Math.round(performance.now() - started),
        },
        'prefetch done',
      );
    } catch (error) {
      status.state = 'failed';
      deps.logger.warn({ event: 'prefetch_failed', release: release.digest, err: error }, 'prefetch failed');
    }
    await record(release, status).catch(() => undefined);
  }

  return {
    async start(release) {
      const local = jobs.get(release.digest);
      if (local && local.state !== 'failed') return { ...local };
      const shared = await readRecord(pathOf(release));
      if (shared && effective(shared).state !== 'failed') return effective(shared);
      const totalBytes = chunkedFiles(release).reduce((sum, file) => sum + file.size, 0);
      const status: PrefetchStatus = { state: 'running', bytes: 0, totalBytes };
      jobs.set(release.digest, status);
      await record(release, status);
      deps.logger.info(
        { event: 'prefetch_started', release: release.digest, totalBytes },
        'prefetch started',
      );
      void run(release, status);
      return { ...status };
    },
    async status(release) {
      const local = jobs.get(release.digest);
      if (local) return { ...local };
      const shared = await readRecord(pathOf(release));
      return shared && effective(shared);
    },
  };
}
