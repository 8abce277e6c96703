/**
 * The scenarios, run one after another (the machine has few cores: anything
 * in parallel would measure contention). Each modelgate row gets its own
 * proxy process, so its peak RSS (VmHWM) is that row's alone.
 */

import type { Agent } from 'node:http';
import { request } from 'node:http';
import { join } from 'node:path';
import { createAgent, download, type LatencyResult, measureLatency } from './client.ts';
import {
  type BenchRelease,
  CHUNK_BYTES,
  type ConfigOptions,
  type Fixture,
  fileUrl,
  SMALL_BYTES,
} from './fixture.ts';
import { type ProxyProcess, startProxy, sumMetric } from './proxy.ts';
import {
  type BenchReport,
  type FanoutRow,
  type LatencyRow,
  mbps,
  median,
  mib,
  type ThroughputRow,
} from './report.ts';

export interface BenchContext {
  quick: boolean;
  /** Timed downloads per single-stream row (the median is reported). */
  reps: number;
  fixture: Fixture;
  /** Folder for configs and proxy logs. */
  dir: string;
  /** Static origin (nginx, or the node fallback) and its label. */
  staticUrl: string;
  staticLabel: string;
  /** Rate-limited origin (same files, each connection capped). */
  limitedUrl: string;
  s3rverUrl: string;
  /** nginx proxy_pass servers; null when nginx is not installed (those rows are skipped). */
  nginx: { proxyStaticUrl: string; proxyS3Url: string; proxyLimitedUrl: string } | null;
  /** `serve --workers N` when the CLI supports it, for the fan-out row with one process per core. */
  workers: number | null;
  report: BenchReport;
  log(line: string): void;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function head(url: string, agent: Agent, headers: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'HEAD', agent, headers }, (res) => {
      res.resume();
      res.on('end', () =>
        res.statusCode === 200 ? resolve() : reject(new Error(`HEAD ${url}: status ${res.statusCode}`)),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

let proxyCount = 0;

/** Runs `body` against a fresh modelgate process and returns its result with the process's peak RSS. */
async function withProxy<T>(
  ctx: BenchContext,
  options: ConfigOptions,
  body: (proxy: ProxyProcess) => Promise<T>,
  extraArgs: string[] = [],
): Promise<{ value: T; peakRssMiB: number; metrics: string }> {
  const name = `modelgate-${++proxyCount}`;
  const config = await ctx.fixture.writeConfig(name, options);
  const proxy = await startProxy(config, join(ctx.dir, `${name}.log`), extraArgs);
  try {
    // One small retrieval first, so start-up work (JIT, hash workers, key import) is not timed.
    const agent = createAgent(1);
    await download(fileUrl(proxy.dataUrl, ctx.fixture.releases.small), {
      agent,
      headers: bearer(ctx.fixture.token),
      expectedBytes: SMALL_BYTES,
    });
    agent.destroy();
    const value = await body(proxy);
    const metrics = await proxy.metrics();
    return { value, peakRssMiB: mib(await proxy.peakRss()), metrics };
  } finally {
    await proxy.stop();
  }
}

/** `reps` sequential downloads of the whole file over one keep-alive connection; MB/s of each. */
async function timeDownloads(
  url: string,
  headers: Record<string, string>,
  size: number,
  reps: number,
): Promise<number[]> {
  const agent = createAgent(1);
  try {
    await head(url, agent, headers);
    const runs: number[] = [];
    for (let i = 0; i < reps; i++) {
      const { bytes, seconds } = await download(url, { agent, headers, expectedBytes: size });
      runs.push(mbps(bytes, seconds));
    }
    return runs;
  } finally {
    agent.destroy();
  }
}

function pushThroughput(ctx: BenchContext, row: Omit<ThroughputRow, 'mbps'>): ThroughputRow {
  const full: ThroughputRow = { ...row, mbps: median(row.runsMBps) };
  ctx.report.throughput.push(full);
  const what = [full.source, full.path, full.mode, full.settings].filter(Boolean).join(' / ');
  const rss = full.peakRssMiB === undefined ? '' : `, peak RSS ${full.peakRssMiB} MiB`;
  ctx.log(
    `  ${what}: ${full.mbps.toFixed(0)} MB/s (runs ${full.runsMBps.map((v) => v.toFixed(0)).join(', ')})${rss}`,
  );
  return full;
}

async function referenceRow(
  ctx: BenchContext,
  section: ThroughputRow['section'],
  source: string,
  path: string,
  url: string,
  reps: number,
): Promise<ThroughputRow> {
  const size = ctx.fixture.bigSize;
  return pushThroughput(ctx, {
    section,
    source,
    path,
    sizeBytes: size,
    runsMBps: await timeDownloads(url, {}, size, reps),
  });
}

async function modelgateRow(
  ctx: BenchContext,
  row: { section: ThroughputRow['section']; source: string; release: BenchRelease; reps: number },
  options: ConfigOptions,
  refs: { direct?: ThroughputRow | undefined; nginx?: ThroughputRow | undefined },
): Promise<ThroughputRow> {
  const size = ctx.fixture.bigSize;
  const transfer = options.transfer ?? {};
  const { value: runs, peakRssMiB } = await withProxy(ctx, options, (proxy) =>
    timeDownloads(fileUrl(proxy.dataUrl, row.release), bearer(ctx.fixture.token), size, row.reps),
  );
  const mode = row.release.model.endsWith('chunked') ? 'chunk' : 'whole';
  const settings =
    mode === 'chunk'
      ? `readAhead=${transfer.readAhead ?? 4} hashWorkers=${transfer.hashWorkers ?? true}`
      : `hashWorkers=${transfer.hashWorkers ?? true}`;
  const value = median(runs);
  return pushThroughput(ctx, {
    section: row.section,
    source: row.source,
    path: 'modelgate',
    mode,
    settings,
    sizeBytes: size,
    runsMBps: runs,
    peakRssMiB,
    ...(refs.direct ? { vsDirect: value / refs.direct.mbps } : {}),
    ...(refs.nginx ? { vsNginx: value / refs.nginx.mbps } : {}),
  });
}

/** Single stream: direct, nginx proxy_pass and modelgate (chunk and whole-file) for the file store and s3rver. */
export async function runSingleStream(ctx: BenchContext): Promise<void> {
  const { fixture, reps } = ctx;
  ctx.log('single stream');
  const file = {
    direct: await referenceRow(
      ctx,
      'single',
      'file',
      `direct (${ctx.staticLabel})`,
      ctx.staticUrl + fixture.bigUrlPath,
      reps,
    ),
    nginx: ctx.nginx
      ? await referenceRow(
          ctx,
          'single',
          'file',
          'nginx proxy_pass',
          ctx.nginx.proxyStaticUrl + fixture.bigUrlPath,
          reps,
        )
      : undefined,
  };
  for (const release of [fixture.releases.fileChunked, fixture.releases.fileWhole]) {
    await modelgateRow(ctx, { section: 'single', source: 'file', release, reps }, {}, file);
  }
  const s3 = {
    direct: await referenceRow(
      ctx,
      'single',
      's3',
      'direct (s3rver)',
      ctx.s3rverUrl + fixture.bigUrlPath,
      reps,
    ),
    nginx: ctx.nginx
      ? await referenceRow(
          ctx,
          'single',
          's3',
          'nginx proxy_pass',
          ctx.nginx.proxyS3Url + fixture.bigUrlPath,
          reps,
        )
      : undefined,
  };
  for (const release of [fixture.releases.s3Chunked, fixture.releases.s3Whole]) {
    await modelgateRow(
      ctx,
      { section: 'single', source: 's3', release, reps },
      { s3Endpoint: ctx.s3rverUrl },
      s3,
    );
  }
}

/** Before/after rows for the optimizations: hash workers on/off, and readAhead 1 / 4 / 8 (file store, chunk mode). */
export async function runOptimizations(ctx: BenchContext): Promise<void> {
  ctx.log('optimizations (file store, chunk mode)');
  const single = ctx.report.throughput.filter((r) => r.section === 'single' && r.source === 'file');
  const refs = {
    direct: single.find((r) => r.path.startsWith('direct')),
    nginx: single.find((r) => r.path === 'nginx proxy_pass'),
  };
  const variants: Array<ConfigOptions['transfer']> = [
    { hashWorkers: false, readAhead: 4 },
    { hashWorkers: true, readAhead: 4 },
    { hashWorkers: true, readAhead: 1 },
    { hashWorkers: true, readAhead: 8 },
  ];
  for (const transfer of variants) {
    if (transfer === undefined) continue;
    await modelgateRow(
      ctx,
      { section: 'optimizations', source: 'file', release: ctx.fixture.releases.fileChunked, reps: ctx.reps },
      { transfer },
      refs,
    );
  }
}

/**
 * A source that caps each connection (nginx `limit_rate`, or the node
 * fallback's pacing), as cloud object stores cap one GET stream. modelgate
 * reads it through its S3 store (the origin serves `/bench/big.bin`, a
 * path-style bucket URL), so parallel ranged reads can beat the cap.
 */
export async function runRateLimited(ctx: BenchContext, limitRate: string): Promise<void> {
  const { fixture } = ctx;
  ctx.log(`rate-limited origin (${limitRate} per connection)`);
  // Each row is bounded by the cap, not by noise: one timed download is enough.
  const reps = 1;
  const source = `rate-limited ${limitRate}/conn`;
  const refs = {
    direct: await referenceRow(
      ctx,
      'rate-limited',
      source,
      `direct (${ctx.staticLabel})`,
      ctx.limitedUrl + fixture.bigUrlPath,
      reps,
    ),
    nginx: ctx.nginx
      ? await referenceRow(
          ctx,
          'rate-limited',
          source,
          'nginx proxy_pass',
          ctx.nginx.proxyLimitedUrl + fixture.bigUrlPath,
          reps,
        )
      : undefined,
  };
  const readAheads = ctx.quick ? [1, 4] : [1, 4, 8];
  for (const readAhead of readAheads) {
    await modelgateRow(
      ctx,
      { section: 'rate-limited', source, release: fixture.releases.s3Chunked, reps },
      { s3Endpoint: ctx.limitedUrl, transfer: { readAhead } },
      refs,
    );
  }
  if (!ctx.quick) {
    await modelgateRow(
      ctx,
      { section: 'rate-limited', source, release: fixture.releases.s3Whole, reps },
      { s3Endpoint: ctx.limitedUrl },
      refs,
    );
  }
}

/** `clients` simultaneous downloads of the same file; wall time from the first request to the last byte. */
async function fanOut(url: string, headers: Record<string, string>, size: number, clients: number) {
  const agent = createAgent(clients);
  try {
    const began = performance.now();
    const results = await Promise.all(
      Array.from({ length: clients }, () => download(url, { agent, headers, expectedBytes: size })),
    );
    const seconds = (performance.now() - began) / 1000;
    const bytes = results.reduce((total, r) => total + r.bytes, 0);
    return { seconds, aggregateMBps: mbps(bytes, seconds) };
  } finally {
    agent.destroy();
  }
}

function pushFanout(ctx: BenchContext, row: FanoutRow): void {
  ctx.report.fanout.push(row);
  const reads =
    row.sourceReads === undefined ? '' : `, ${row.sourceReads} source reads (${row.chunks} chunks)`;
  const rss = row.peakRssMiB === undefined ? '' : `, peak RSS ${row.peakRssMiB} MiB`;
  ctx.log(
    `  ${row.path} ${row.source}${row.note ? ` (${row.note})` : ''}: ${row.aggregateMBps.toFixed(0)} MB/s aggregate in ${row.seconds.toFixed(1)} s${reads}${rss}`,
  );
}

/** Fan-out: many pods pulling one model at once. */
export async function runFanout(ctx: BenchContext, clients: number): Promise<void> {
  const { fixture } = ctx;
  const size = fixture.bigSize;
  const chunks = Math.ceil(size / CHUNK_BYTES);
  ctx.log(`fan-out (${clients} clients × ${mib(size)} MiB)`);
  if (ctx.nginx) {
    const result = await fanOut(ctx.nginx.proxyStaticUrl + fixture.bigUrlPath, {}, size, clients);
    pushFanout(ctx, { path: 'nginx proxy_pass', source: 'file', clients, sizeBytes: size, ...result });
  }
  const cases: Array<{
    source: string;
    release: BenchRelease;
    options: ConfigOptions;
    args: string[];
    note?: string;
  }> = [
    { source: 'file', release: fixture.releases.fileChunked, options: {}, args: [] },
    { source: 's3', release: fixture.releases.s3Chunked, options: { s3Endpoint: ctx.s3rverUrl }, args: [] },
  ];
  if (ctx.workers !== null) {
    cases.push({
      source: 'file',
      release: fixture.releases.fileChunked,
      options: {},
      args: ['--workers', String(ctx.workers)],
      note: `--workers ${ctx.workers}`,
    });
  }
  for (const item of cases) {
    const { value, peakRssMiB, metrics } = await withProxy(
      ctx,
      item.options,
      (proxy) => fanOut(fileUrl(proxy.dataUrl, item.release), bearer(fixture.token), size, clients),
      item.args,
    );
    pushFanout(ctx, {
      path: 'modelgate chunk',
      source: item.source,
      clients,
      sizeBytes: size,
      ...value,
      // The warm-up retrieval of the small file made one source read.
      sourceReads: sumMetric(metrics, 'modelgate_source_requests_total') - 1,
      chunks,
      peakRssMiB,
      ...(item.note ? { note: item.note } : {}),
    });
  }
}

function pushLatency(ctx: BenchContext, row: Omit<LatencyRow, 'requests'> & LatencyResult): void {
  ctx.report.latency.push(row);
  const rss = row.peakRssMiB === undefined ? '' : `, peak RSS ${row.peakRssMiB} MiB`;
  ctx.log(
    `  ${row.path}${row.token ? ` (${row.token} token)` : ''} c=${row.concurrency}: p50 ${row.p50Ms.toFixed(3)} ms, p99 ${row.p99Ms.toFixed(3)} ms, ${row.requestsPerSecond.toFixed(0)} req/s${rss}`,
  );
}

/** Small files: latency and request rate for a 4 KiB file, with the same token every time and with a fresh one. */
export async function runSmallFiles(ctx: BenchContext): Promise<void> {
  const { fixture } = ctx;
  const counts = ctx.quick ? { 1: 300, 8: 1000 } : { 1: 2000, 8: 10_000 };
  const concurrencies = [1, 8] as const;
  const warm = ctx.quick ? 50 : 200;
  ctx.log(`small files (${SMALL_BYTES} B)`);
  const references: Array<{ path: string; url: string }> = [
    { path: `direct (${ctx.staticLabel})`, url: ctx.staticUrl + fixture.smallUrlPath },
  ];
  if (ctx.nginx)
    references.push({ path: 'nginx proxy_pass', url: ctx.nginx.proxyStaticUrl + fixture.smallUrlPath });
  for (const reference of references) {
    for (const concurrency of concurrencies) {
      const base = { url: reference.url, concurrency, expectedBytes: SMALL_BYTES, headersFor: () => ({}) };
      await measureLatency({ ...base, requests: warm });
      pushLatency(ctx, {
        path: reference.path,
        ...(await measureLatency({ ...base, requests: counts[concurrency] })),
      });
    }
  }
  // Every fresh-token request needs its own token; mint them all before anything is timed.
  const freshCount = warm * 2 + counts[1] + counts[8];
  const fresh = await fixture.mintTokens(freshCount);
  let used = 0;
  for (const token of ['cached', 'fresh'] as const) {
    const { value: rows, peakRssMiB } = await withProxy(ctx, {}, async (proxy) => {
      const url = fileUrl(proxy.dataUrl, fixture.releases.small);
      const cached = bearer(fixture.token);
      const results: Array<LatencyResult> = [];
      for (const concurrency of concurrencies) {
        const headersFor = token === 'cached' ? () => cached : () => bearer(fresh[used++]!);
        const base = { url, concurrency, expectedBytes: SMALL_BYTES, headersFor };
        await measureLatency({ ...base, requests: warm });
        results.push(await measureLatency({ ...base, requests: counts[concurrency] }));
      }
      return results;
    });
    for (const result of rows) pushLatency(ctx, { path: 'modelgate', token, ...result, peakRssMiB });
  }
}
