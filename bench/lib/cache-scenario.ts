/**
 * The verified disk cache in the proxy (SPEC §11): cold, warm and warm after
 * a restart on `serve --workers 2`, warm against nginx `proxy_pass` from the
 * file store (interleaved), 8 concurrent clients on 2 workers with a cold
 * cache (source reads per chunk, RSS of every process), and a fleet of 3
 * proxies with their own caches behind one origin serving 24 clients (source
 * bytes over all three). Source bytes are `modelgate_source_bytes_total`
 * summed over the proxies; source reads are `modelgate_source_requests_total`.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Connection, download, head } from './client.ts';
import { CHUNK_BYTES, fileUrl, MiB } from './fixture.ts';
import { sumMetric } from './proxy.ts';
import { type CacheRow, formatMemory, mbps, median, mib } from './report.ts';
import {
  type BenchContext,
  bearer,
  fanOut,
  type MeasuredProxy,
  pairedRatio,
  startMeasuredProxy,
} from './scenarios.ts';

const SOURCE_BYTES = 'modelgate_source_bytes_total';
const SOURCE_REQUESTS = 'modelgate_source_requests_total';
const WORKERS = ['--workers', '2'];
export const CACHE_CLIENTS = 8;
export const FLEET_PROXIES = 3;
export const FLEET_CLIENTS = 24;
/** `--quick`: 2 clients per fleet proxy instead of 8 (the fleet target holds whatever the client count). */
const QUICK_FLEET_CLIENTS = 6;

let cacheCount = 0;

function pushCache(ctx: BenchContext, row: CacheRow): void {
  ctx.report.cache.push(row);
  const source =
    row.sourceBytes === undefined
      ? ''
      : `, source ${mib(row.sourceBytes)} MiB (${(row.sourceBytes / row.sizeBytes).toFixed(2)}× file)`;
  const perChunk =
    row.sourceReadsPerChunk === undefined ? '' : `, ${row.sourceReadsPerChunk.toFixed(2)} reads/chunk`;
  const nginx = row.vsNginx === undefined ? '' : `, ${row.vsNginx.toFixed(2)}× nginx`;
  const memory = row.memory ? `, RSS ${formatMemory(row.memory)} MiB` : '';
  ctx.log(`  ${row.row}: ${row.mbps.toFixed(0)} MB/s${nginx}${source}${perChunk}${memory}`);
}

/** A fresh cache folder, large enough for the file. */
function newCache(ctx: BenchContext) {
  return { dir: join(ctx.dir, `cache-${++cacheCount}`), maxBytes: 2 * ctx.fixture.bigSize + 64 * MiB };
}

async function counters(proxy: MeasuredProxy) {
  const text = await proxy.proxy.metrics();
  return { bytes: sumMetric(text, SOURCE_BYTES), requests: sumMetric(text, SOURCE_REQUESTS) };
}

/** One timed download of the big file on a fresh connection. */
async function downloadOnce(url: string, headers: Record<string, string>, size: number): Promise<number> {
  const connection = new Connection(new URL(url).origin);
  try {
    await head(connection, url, headers);
    const { bytes, seconds } = await download(connection, url, { headers, expectedBytes: size });
    return mbps(bytes, seconds);
  } finally {
    connection.close();
  }
}

/** Cold, warm (interleaved with nginx), and warm after a restart of the same cache. */
async function runColdWarmRestart(ctx: BenchContext): Promise<void> {
  const { fixture } = ctx;
  const size = fixture.bigSize;
  const chunks = Math.ceil(size / CHUNK_BYTES);
  const cache = newCache(ctx);
  const headers = bearer(fixture.token);
  let proxy = await startMeasuredProxy(ctx, { cache }, WORKERS);
  try {
    const url = fileUrl(proxy.proxy.dataUrl, fixture.releases.fileChunked);
    const before = await counters(proxy);
    const cold = await downloadOnce(url, headers, size);
    const afterCold = await counters(proxy);
    pushCache(ctx, {
      row: 'cold (empty cache)',
      processes: 2,
      clients: 1,
      sizeBytes: size,
      mbps: cold,
      sourceBytes: afterCold.bytes - before.bytes,
      sourceReadsPerChunk: (afterCold.requests - before.requests) / chunks,
    });
    const warm: number[] = [];
    const nginx: number[] = [];
    const nginxUrl = ctx.nginx ? ctx.nginx.proxyStaticUrl + fixture.bigUrlPath : undefined;
    for (let rep = 0; rep < ctx.reps; rep++) {
      const order = rep % 2 === 0 ? ['warm', 'nginx'] : ['nginx', 'warm'];
      for (const which of order) {
        if (which === 'warm') warm.push(await downloadOnce(url, headers, size));
        else if (nginxUrl) nginx.push(await downloadOnce(nginxUrl, {}, size));
      }
    }
    const afterWarm = await counters(proxy);
    const { memory } = await proxy.finish();
    if (nginxUrl) {
      pushCache(ctx, {
        row: 'nginx proxy_pass (file)',
        processes: 0,
        clients: 1,
        sizeBytes: size,
        mbps: median(nginx),
        runsMBps: nginx,
      });
    }
    const vsNginx = pairedRatio(warm, nginxUrl ? nginx : undefined);
    pushCache(ctx, {
      row: 'warm',
      processes: 2,
      clients: 1,
      sizeBytes: size,
      mbps: median(warm),
      runsMBps: warm,
      sourceBytes: afterWarm.bytes - afterCold.bytes,
      sourceReadsPerChunk: (afterWarm.requests - afterCold.requests) / chunks,
      ...(vsNginx === undefined ? {} : { vsNginx }),
      memory,
    });
  } finally {
    await proxy.stop();
  }
  proxy = await startMeasuredProxy(ctx, { cache }, WORKERS);
  try {
    const url = fileUrl(proxy.proxy.dataUrl, fixture.releases.fileChunked);
    const before = await counters(proxy);
    const restarted = await downloadOnce(url, headers, size);
    const after = await counters(proxy);
    pushCache(ctx, {
      row: 'warm after restart',
      processes: 2,
      clients: 1,
      sizeBytes: size,
      mbps: restarted,
      sourceBytes: after.bytes - before.bytes,
      sourceReadsPerChunk: (after.requests - before.requests) / chunks,
      memory: (await proxy.finish()).memory,
    });
  } finally {
    await proxy.stop();
    await rm(cache.dir, { recursive: true, force: true });
  }
}

/** 8 clients at once on 2 workers with a cold cache: one source read per chunk across both? */
async function runConcurrent(ctx: BenchContext): Promise<void> {
  const { fixture } = ctx;
  const size = fixture.bigSize;
  const cache = newCache(ctx);
  const proxy = await startMeasuredProxy(ctx, { cache }, WORKERS);
  try {
    const before = await counters(proxy);
    const url = fileUrl(proxy.proxy.dataUrl, fixture.releases.fileChunked);
    const run = await fanOut(url, bearer(fixture.token), size, CACHE_CLIENTS);
    const after = await counters(proxy);
    pushCache(ctx, {
      row: `${CACHE_CLIENTS} clients, cold cache`,
      processes: 2,
      clients: CACHE_CLIENTS,
      sizeBytes: size,
      mbps: run.aggregateMBps,
      sourceBytes: after.bytes - before.bytes,
      sourceReadsPerChunk: (after.requests - before.requests) / Math.ceil(size / CHUNK_BYTES),
      memory: (await proxy.finish()).memory,
    });
  } finally {
    await proxy.stop();
    await rm(cache.dir, { recursive: true, force: true });
  }
}

/** Three proxies (one process each, own cache) behind one origin, 24 clients dealt round-robin. */
async function runFleet(ctx: BenchContext): Promise<void> {
  const { fixture } = ctx;
  const size = fixture.bigSize;
  const caches = Array.from({ length: FLEET_PROXIES }, () => newCache(ctx));
  const proxies: MeasuredProxy[] = [];
  try {
    // Started together (start-up is not timed): keeps --quick short.
    const started = await Promise.allSettled(
      caches.map((cache) => startMeasuredProxy(ctx, { cache }, ['--workers', '1'])),
    );
    for (const result of started) if (result.status === 'fulfilled') proxies.push(result.value);
    const failed = started.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    const before = await Promise.all(proxies.map(counters));
    const clients = ctx.quick ? QUICK_FLEET_CLIENTS : FLEET_CLIENTS;
    const per = clients / FLEET_PROXIES;
    const began = performance.now();
    await Promise.all(
      proxies.map((proxy) =>
        fanOut(fileUrl(proxy.proxy.dataUrl, fixture.releases.fileChunked), bearer(fixture.token), size, per),
      ),
    );
    const seconds = (performance.now() - began) / 1000;
    const after = await Promise.all(proxies.map(counters));
    const sourceBytes = after.reduce((sum, c, i) => sum + c.bytes - (before[i]?.bytes ?? 0), 0);
    const requests = after.reduce((sum, c, i) => sum + c.requests - (before[i]?.requests ?? 0), 0);
    const memories = await Promise.all(proxies.map(async (p) => (await p.finish()).memory));
    pushCache(ctx, {
      row: `fleet of ${FLEET_PROXIES} proxies, ${clients} clients`,
      processes: FLEET_PROXIES,
      clients,
      sizeBytes: size,
      mbps: mbps(size * clients, seconds),
      sourceBytes,
      sourceReadsPerChunk: requests / Math.ceil(size / CHUNK_BYTES),
      memory: {
        processes: FLEET_PROXIES,
        idleMiB: memories.reduce((sum, m) => sum + m.idleMiB, 0),
        peakMiB: memories.reduce((sum, m) => sum + m.peakMiB, 0),
        peakLargestMiB: Math.max(...memories.map((m) => m.peakLargestMiB)),
      },
    });
  } finally {
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    await Promise.all(caches.map((cache) => rm(cache.dir, { recursive: true, force: true })));
  }
}

export async function runCache(ctx: BenchContext): Promise<void> {
  ctx.log(`verified disk cache (file store, ${mib(ctx.fixture.bigSize)} MiB, workers 2 unless noted)`);
  await runColdWarmRestart(ctx);
  await runConcurrent(ctx);
  await runFleet(ctx);
}
