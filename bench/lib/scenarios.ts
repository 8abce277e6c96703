/**
 * The scenarios, run one after another (the machine has few cores: anything
 * in parallel would measure contention). Each modelgate row gets its own
 * proxy process group, so its peak RSS (VmHWM) is that row's alone.
 */

import { join } from 'node:path';
import {
  Connection,
  download,
  head,
  type LatencyBatch,
  type LatencyResult,
  measureLatency,
  summarizeLatency,
} from './client.ts';
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
  formatMemory,
  type LatencyRow,
  mbps,
  median,
  mib,
  type ProxyMemory,
  type ThroughputRow,
} from './report.ts';
import { measureSha256Rate } from './sha256-rate.ts';

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
  /**
   * Processes `modelgate serve` runs by default (`--workers`, one per CPU), or
   * null when this version has no `--workers` option (one process).
   */
  defaultWorkers: number | null;
  /**
   * `serve` arguments of every row but the fan-out comparison: none (the
   * default, one worker per CPU) in a full run; `--workers 1` in a quick run,
   * where a one-process proxy starts in a third of the time.
   */
  proxyArgs: string[];
  report: BenchReport;
  log(line: string): void;
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const SOURCE_REQUESTS = 'modelgate_source_requests_total';
/** V8 flags the container image and the Kubernetes Deployment in deploy/ set for the proxy. */
const DEPLOYED_NODE_OPTIONS = '--max-semi-space-size=16';

let proxyCount = 0;

/** Processes serving data with these `serve` arguments. */
function workersOf(ctx: BenchContext, args: string[]): number {
  const at = args.indexOf('--workers');
  return at >= 0 ? Number(args[at + 1]) : (ctx.defaultWorkers ?? 1);
}

export interface ProxyResult {
  memory: ProxyMemory;
  /** Source requests since the warm-up. */
  sourceReads: number;
}

export interface MeasuredProxy {
  readonly proxy: ProxyProcess;
  /** Memory of the group and source requests since the warm-up. */
  finish(): Promise<ProxyResult>;
  stop(): Promise<void>;
}

/**
 * Starts a fresh modelgate process group and warms it up: small retrievals on
 * as many connections as there are workers (connections are dealt
 * round-robin), so start-up work (JIT, hash threads, key import) is not timed.
 */
export async function startMeasuredProxy(
  ctx: BenchContext,
  options: ConfigOptions,
  args: string[] = ctx.proxyArgs,
  nodeOptions?: string,
): Promise<MeasuredProxy> {
  const name = `modelgate-${++proxyCount}`;
  const config = await ctx.fixture.writeConfig(name, options);
  const proxy = await startProxy(config, join(ctx.dir, `${name}.log`), args, nodeOptions);
  try {
    const url = fileUrl(proxy.dataUrl, ctx.fixture.releases.small);
    const warmers = Array.from({ length: 2 * workersOf(ctx, args) }, () => new Connection(proxy.dataUrl));
    try {
      for (const connection of warmers) {
        await download(connection, url, { headers: bearer(ctx.fixture.token), expectedBytes: SMALL_BYTES });
      }
    } finally {
      for (const connection of warmers) connection.close();
    }
    const readsBefore = sumMetric(await proxy.metrics(), SOURCE_REQUESTS);
    const idle = await proxy.memory('VmRSS');
    return {
      proxy,
      async finish() {
        const readsAfter = sumMetric(await proxy.metrics(), SOURCE_REQUESTS);
        const peak = await proxy.memory('VmHWM');
        return {
          sourceReads: readsAfter - readsBefore,
          memory: {
            processes: peak.processes,
            idleMiB: mib(idle.total),
            peakMiB: mib(peak.total),
            peakLargestMiB: mib(peak.largest),
          },
        };
      },
      stop: () => proxy.stop(),
    };
  } catch (error) {
    await proxy.stop();
    throw error;
  }
}

/** Runs `body` against a fresh modelgate process group; returns its result, memory and source reads. */
async function withProxy<T>(
  ctx: BenchContext,
  options: ConfigOptions,
  body: (proxy: ProxyProcess) => Promise<T>,
  args: string[] = ctx.proxyArgs,
  nodeOptions?: string,
): Promise<ProxyResult & { value: T }> {
  const measured = await startMeasuredProxy(ctx, options, args, nodeOptions);
  try {
    const value = await body(measured.proxy);
    return { value, ...(await measured.finish()) };
  } finally {
    await measured.stop();
  }
}

/** One row of a throughput group: a reference server, or modelgate with some settings. */
type StreamSpec =
  | { kind: 'reference'; source: string; path: string; url: string }
  | { kind: 'modelgate'; source: string; release: BenchRelease; options: ConfigOptions };

function settingsOf(spec: Extract<StreamSpec, { kind: 'modelgate' }>) {
  const transfer = spec.options.transfer ?? {};
  const mode = spec.release.model.endsWith('chunked') ? 'chunk' : 'whole';
  const hashing = `hashWorkers=${transfer.hashWorkers ?? true}`;
  return { mode, settings: mode === 'chunk' ? `readAhead=${transfer.readAhead ?? 4} ${hashing}` : hashing };
}

/** Median over repetitions of `runs[i] / reference[i]`: paired, so load that hit both cancels out. */
export function pairedRatio(runs: number[], reference: number[] | undefined): number | undefined {
  if (reference === undefined || reference.length !== runs.length) return undefined;
  return median(runs.map((value, i) => value / reference[i]!));
}

function logThroughput(ctx: BenchContext, row: ThroughputRow): void {
  const what = [row.source, row.path, row.mode, row.settings].filter(Boolean).join(' / ');
  const memory = row.memory ? `, RSS ${formatMemory(row.memory)} MiB` : '';
  const runs = row.runsMBps.map((v) => v.toFixed(0)).join(', ');
  ctx.log(`  ${what}: ${row.mbps.toFixed(0)} MB/s (runs ${runs})${memory}`);
}

/**
 * Measures a group of rows interleaved: every proxy of the group is started
 * first, then each repetition downloads the whole file once through every
 * row in turn (rotating the order), so a burst of other load on the machine
 * hits all rows alike and the ratios between them stay meaningful. Ratios to
 * the group's direct and nginx rows are paired per repetition. Each proxy is
 * its own process group, so its peak RSS is its own.
 */
async function runStreamGroup(
  ctx: BenchContext,
  section: ThroughputRow['section'],
  specs: StreamSpec[],
  reps: number,
): Promise<ThroughputRow[]> {
  const size = ctx.fixture.bigSize;
  const proxies: Array<MeasuredProxy | undefined> = [];
  const connections: Connection[] = [];
  try {
    const targets: Array<{ url: string; headers: Record<string, string> }> = [];
    for (const spec of specs) {
      if (spec.kind === 'reference') {
        proxies.push(undefined);
        targets.push({ url: spec.url, headers: {} });
      } else {
        const measured = await startMeasuredProxy(ctx, spec.options);
        proxies.push(measured);
        targets.push({
          url: fileUrl(measured.proxy.dataUrl, spec.release),
          headers: bearer(ctx.fixture.token),
        });
      }
    }
    for (const target of targets) {
      const connection = new Connection(new URL(target.url).origin);
      connections.push(connection);
      await head(connection, target.url, target.headers);
    }
    const runs: number[][] = specs.map(() => []);
    for (let rep = 0; rep < reps; rep++) {
      for (let k = 0; k < specs.length; k++) {
        const i = (k + rep) % specs.length;
        const { url, headers } = targets[i]!;
        const { bytes, seconds } = await download(connections[i]!, url, { headers, expectedBytes: size });
        runs[i]!.push(mbps(bytes, seconds));
      }
    }
    const referenceRuns = (match: (path: string) => boolean, source: string) => {
      const index = specs.findIndex((s) => s.kind === 'reference' && s.source === source && match(s.path));
      return index < 0 ? undefined : runs[index];
    };
    const rows: ThroughputRow[] = [];
    for (const [i, spec] of specs.entries()) {
      const row: ThroughputRow = {
        section,
        source: spec.source,
        path: spec.kind === 'reference' ? spec.path : 'modelgate',
        sizeBytes: size,
        runsMBps: runs[i]!,
        mbps: median(runs[i]!),
      };
      const measured = proxies[i];
      if (spec.kind === 'modelgate' && measured) {
        const { memory, sourceReads } = await measured.finish();
        Object.assign(row, settingsOf(spec), { memory, sourceReads: sourceReads / reps });
        const vsDirect = pairedRatio(
          runs[i]!,
          referenceRuns((p) => p.startsWith('direct'), spec.source),
        );
        const vsNginx = pairedRatio(
          runs[i]!,
          referenceRuns((p) => p === 'nginx proxy_pass', spec.source),
        );
        if (vsDirect !== undefined) row.vsDirect = vsDirect;
        if (vsNginx !== undefined) row.vsNginx = vsNginx;
      }
      rows.push(row);
      ctx.report.throughput.push(row);
      logThroughput(ctx, row);
    }
    return rows;
  } finally {
    for (const connection of connections) connection.close();
    await Promise.all(proxies.map((measured) => measured?.stop()));
  }
}

/** The direct and nginx rows of a source, for a group. */
function references(
  ctx: BenchContext,
  source: string,
  origin: string,
  nginxUrl: string | undefined,
  directLabel: string,
) {
  const big = ctx.fixture.bigUrlPath;
  const specs: StreamSpec[] = [
    { kind: 'reference', source, path: `direct (${directLabel})`, url: origin + big },
  ];
  if (nginxUrl !== undefined)
    specs.push({ kind: 'reference', source, path: 'nginx proxy_pass', url: nginxUrl + big });
  return specs;
}

/** Single stream: direct, nginx proxy_pass and modelgate (chunk and whole-file) for the file store and s3rver. */
export async function runSingleStream(ctx: BenchContext): Promise<void> {
  const { fixture, reps } = ctx;
  ctx.log(`single stream (${reps} interleaved runs per row)`);
  // Measured right before the file-store rows, in this process, under the same load.
  ctx.report.sha256 = measureSha256Rate();
  ctx.log(
    `  SHA-256 on one core: ${ctx.report.sha256.mbps.toFixed(0)} MB/s (runs ${ctx.report.sha256.runsMBps.map((v) => v.toFixed(0)).join(' ')})`,
  );
  await runStreamGroup(
    ctx,
    'single',
    [
      ...references(ctx, 'file', ctx.staticUrl, ctx.nginx?.proxyStaticUrl, ctx.staticLabel),
      { kind: 'modelgate', source: 'file', release: fixture.releases.fileChunked, options: {} },
      { kind: 'modelgate', source: 'file', release: fixture.releases.fileWhole, options: {} },
    ],
    reps,
  );
  const s3 = { s3Endpoint: ctx.s3rverUrl };
  const s3Specs: StreamSpec[] = [
    ...references(ctx, 's3', ctx.s3rverUrl, ctx.nginx?.proxyS3Url, 's3rver'),
    { kind: 'modelgate', source: 's3', release: fixture.releases.s3Chunked, options: s3 },
  ];
  // Quick mode leaves out S3 whole-file mode: it adds nothing the file-store row does not show.
  if (!ctx.quick)
    s3Specs.push({ kind: 'modelgate', source: 's3', release: fixture.releases.s3Whole, options: s3 });
  await runStreamGroup(ctx, 'single', s3Specs, reps);
  await runFastOriginS3(ctx);
}

/**
 * The S3 store against a fast origin: nginx serving the object files at their
 * path-style URL (`/bench/big.bin`), so the origin costs almost nothing and
 * the row measures the S3 store's read path; nginx `proxy_pass` to the same
 * origin is the reference. Needs nginx (the node fallback would be the
 * bottleneck), so it is skipped, with a line saying so, without it.
 */
async function runFastOriginS3(ctx: BenchContext): Promise<void> {
  if (ctx.nginx === null) {
    ctx.log('  s3 (fast origin): skipped, nginx not found (apt-get install nginx-light to include it)');
    return;
  }
  const { fixture, reps } = ctx;
  const s3 = { s3Endpoint: ctx.staticUrl };
  await runStreamGroup(
    ctx,
    'single',
    [
      ...references(ctx, 's3 (fast origin)', ctx.staticUrl, ctx.nginx.proxyStaticUrl, ctx.staticLabel),
      { kind: 'modelgate', source: 's3 (fast origin)', release: fixture.releases.s3Chunked, options: s3 },
      { kind: 'modelgate', source: 's3 (fast origin)', release: fixture.releases.s3Whole, options: s3 },
    ],
    reps,
  );
}

/** Before/after rows for the optimizations: hash workers on/off, and readAhead 1 / 4 / 8 (file store, chunk mode). */
export async function runOptimizations(ctx: BenchContext): Promise<void> {
  ctx.log('optimizations (file store, chunk mode)');
  // Quick mode leaves out readAhead 8.
  const variants: Array<NonNullable<ConfigOptions['transfer']>> = [
    { hashWorkers: false, readAhead: 4 },
    { hashWorkers: true, readAhead: 4 },
    { hashWorkers: true, readAhead: 1 },
    ...(ctx.quick ? [] : [{ hashWorkers: true, readAhead: 8 }]),
  ];
  const release = ctx.fixture.releases.fileChunked;
  await runStreamGroup(
    ctx,
    'optimizations',
    [
      ...references(ctx, 'file', ctx.staticUrl, ctx.nginx?.proxyStaticUrl, ctx.staticLabel),
      ...variants.map(
        (transfer): StreamSpec => ({ kind: 'modelgate', source: 'file', release, options: { transfer } }),
      ),
    ],
    ctx.reps,
  );
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
  const source = `rate-limited ${limitRate}/conn`;
  const specs = references(ctx, source, ctx.limitedUrl, ctx.nginx?.proxyLimitedUrl, ctx.staticLabel);
  // Quick mode leaves out the direct read when nginx is there: at the cap it equals nginx's.
  if (ctx.quick && ctx.nginx) specs.shift();
  // Quick mode keeps only readAhead 4: readAhead 1 runs at the cap, like nginx (and costs 3 s at 256 MiB).
  for (const readAhead of ctx.quick ? [4] : [1, 4, 8]) {
    const options = { s3Endpoint: ctx.limitedUrl, transfer: { readAhead } };
    specs.push({ kind: 'modelgate', source, release: fixture.releases.s3Chunked, options });
  }
  if (!ctx.quick) {
    specs.push({
      kind: 'modelgate',
      source,
      release: fixture.releases.s3Whole,
      options: { s3Endpoint: ctx.limitedUrl },
    });
  }
  // Each row is bounded by the cap, not by noise: one run is enough.
  await runStreamGroup(ctx, 'rate-limited', specs, 1);
}

/** `clients` simultaneous downloads of the same file; wall time from the first request to the last byte. */
export async function fanOut(url: string, headers: Record<string, string>, size: number, clients: number) {
  const connections = Array.from({ length: clients }, () => new Connection(new URL(url).origin));
  try {
    // Connect (and warm each connection with a HEAD) before the clock starts.
    await Promise.all(connections.map((connection) => head(connection, url, headers)));
    const began = performance.now();
    const results = await Promise.all(
      connections.map((connection) => download(connection, url, { headers, expectedBytes: size })),
    );
    const seconds = (performance.now() - began) / 1000;
    const bytes = results.reduce((total, r) => total + r.bytes, 0);
    return { seconds, aggregateMBps: mbps(bytes, seconds) };
  } finally {
    for (const connection of connections) connection.close();
  }
}

function pushFanout(ctx: BenchContext, row: FanoutRow): void {
  ctx.report.fanout.push(row);
  const reads =
    row.sourceReads === undefined ? '' : `, ${row.sourceReads} source reads (${row.chunks} chunks)`;
  const memory = row.memory ? `, RSS ${formatMemory(row.memory)} MiB` : '';
  const what = `${row.path}${row.processes ? ` ×${row.processes}` : ''} ${row.source}${row.settings ? ` ${row.settings}` : ''}`;
  ctx.log(
    `  ${what}: ${row.aggregateMBps.toFixed(0)} MB/s aggregate in ${row.seconds.toFixed(1)} s${reads}${memory}`,
  );
}

/** Fan-out: many pods pulling one model at once. */
export async function runFanout(ctx: BenchContext, clients: number): Promise<void> {
  const { fixture } = ctx;
  const size = fixture.bigSize;
  const chunks = Math.ceil(size / CHUNK_BYTES);
  ctx.log(`fan-out (${clients} clients × ${mib(size)} MiB)`);
  // Quick mode leaves out the references that take longest (nginx, S3 fan-out).
  if (ctx.nginx && !ctx.quick) {
    const result = await fanOut(ctx.nginx.proxyStaticUrl + fixture.bigUrlPath, {}, size, clients);
    pushFanout(ctx, { path: 'nginx proxy_pass', source: 'file', clients, sizeBytes: size, ...result });
  }
  const workers = ctx.defaultWorkers;
  const cases: Array<{
    source: string;
    release: BenchRelease;
    options: ConfigOptions;
    args: string[];
    settings?: string;
    nodeOptions?: string;
  }> = [{ source: 'file', release: fixture.releases.fileChunked, options: {}, args: [] }];
  // One process against one per CPU (the default): does the aggregate scale with cores?
  // (The default case passes no --workers even in quick mode.)
  if (workers !== null && workers > 1) {
    cases.push({
      source: 'file',
      release: fixture.releases.fileChunked,
      options: {},
      args: ['--workers', '1'],
    });
  }
  if (!ctx.quick) {
    // Without the chunk cache, only reads in flight at the same moment are shared: what the
    // cache buys in source reads, and what it costs in memory.
    const one = workers !== null && workers > 1 ? ['--workers', '1'] : [];
    cases.push({
      source: 'file',
      release: fixture.releases.fileChunked,
      options: { transfer: { chunkCacheBytes: 0 } },
      args: one,
      settings: 'chunkCacheBytes=0',
    });
    // deploy/ runs the proxy with a 16 MiB V8 young generation (semi-space): the same with it.
    const deployed = {
      nodeOptions: DEPLOYED_NODE_OPTIONS,
      settings: `NODE_OPTIONS=${DEPLOYED_NODE_OPTIONS}`,
    };
    cases.push({ source: 'file', release: fixture.releases.fileChunked, options: {}, args: [], ...deployed });
    if (one.length > 0) {
      cases.push({
        source: 'file',
        release: fixture.releases.fileChunked,
        options: {},
        args: one,
        ...deployed,
      });
    }
    const options = { s3Endpoint: ctx.s3rverUrl };
    cases.push({ source: 's3', release: fixture.releases.s3Chunked, options, args: [] });
  }
  for (const item of cases) {
    const run = await withProxy(
      ctx,
      item.options,
      (proxy) => fanOut(fileUrl(proxy.dataUrl, item.release), bearer(fixture.token), size, clients),
      item.args,
      item.nodeOptions,
    );
    pushFanout(ctx, {
      path: 'modelgate chunk',
      source: item.source,
      clients,
      sizeBytes: size,
      ...run.value,
      processes: workersOf(ctx, item.args),
      ...(item.settings ? { settings: item.settings } : {}),
      sourceReads: run.sourceReads,
      chunks,
      memory: run.memory,
    });
  }
}

function pushLatency(ctx: BenchContext, row: LatencyRow): void {
  ctx.report.latency.push(row);
  const memory = row.memory ? `, RSS ${formatMemory(row.memory)} MiB` : '';
  const token = row.token ? ` (${row.token} token)` : '';
  ctx.log(
    `  ${row.path}${token} c=${row.concurrency}: p50 ${row.p50Ms.toFixed(3)} ms, p99 ${row.p99Ms.toFixed(3)} ms, ` +
      `${row.requestsPerSecond.toFixed(0)} req/s${memory}`,
  );
}

/**
 * Small files: latency and request rate for a 4 KiB file at concurrency 1
 * (the per-request overhead) and 8 (throughput), through the references and
 * through modelgate with the same token every time (claims cached) and with a
 * fresh token per request (signature verified each time). After a long
 * warm-up (V8 keeps optimizing the request path for thousands of requests),
 * the paths take turns in rounds, so drifting load hits all alike. Both token
 * cases share one proxy: memory is not the point here.
 */
export async function runSmallFiles(ctx: BenchContext): Promise<void> {
  const { fixture } = ctx;
  const counts = ctx.quick ? { 1: 400, 8: 1600 } : { 1: 4000, 8: 16_000 };
  const warm = ctx.quick ? 300 : 3000;
  const rounds = ctx.quick ? 2 : 5;
  const concurrencies = [1, 8] as const;
  ctx.log(`small files (${SMALL_BYTES} B, ${rounds} rounds)`);
  // Every fresh-token request needs its own token: mint them all before anything is timed.
  const fresh = await fixture.mintTokens(warm * concurrencies.length + counts[1] + counts[8]);
  let used = 0;
  const run = await withProxy(ctx, {}, async (proxy) => {
    const cached = bearer(fixture.token);
    const paths: Array<
      Omit<LatencyRow, keyof LatencyResult> & { url: string; headersFor(): Record<string, string> }
    > = [
      {
        path: `direct (${ctx.staticLabel})`,
        url: ctx.staticUrl + fixture.smallUrlPath,
        headersFor: () => ({}),
      },
    ];
    if (ctx.nginx) {
      paths.push({
        path: 'nginx proxy_pass',
        url: ctx.nginx.proxyStaticUrl + fixture.smallUrlPath,
        headersFor: () => ({}),
      });
    }
    const url = fileUrl(proxy.dataUrl, fixture.releases.small);
    paths.push({ path: 'modelgate', token: 'cached', url, headersFor: () => cached });
    paths.push({ path: 'modelgate', token: 'fresh', url, headersFor: () => bearer(fresh[used++]!) });
    const rows: LatencyRow[] = [];
    for (const concurrency of concurrencies) {
      for (const path of paths) {
        await measureLatency({ ...path, concurrency, expectedBytes: SMALL_BYTES, requests: warm / 2 });
      }
      const batches: LatencyBatch[][] = paths.map(() => []);
      for (let round = 0; round < rounds; round++) {
        for (const [i, path] of paths.entries()) {
          const requests = Math.round(counts[concurrency] / rounds);
          batches[i]!.push(
            await measureLatency({ ...path, concurrency, expectedBytes: SMALL_BYTES, requests }),
          );
        }
      }
      for (const [i, path] of paths.entries()) {
        const row: LatencyRow = { path: path.path, ...summarizeLatency(batches[i]!, concurrency) };
        if (path.token) row.token = path.token;
        rows.push(row);
      }
    }
    return rows;
  });
  for (const row of run.value)
    pushLatency(ctx, row.path === 'modelgate' ? { ...row, memory: run.memory } : row);
  if (!ctx.quick) await runSmallFileMemory(ctx);
}

/**
 * Memory of one process under many small requests, with V8's defaults and
 * with the young generation deploy/ sets: a high allocation rate grows V8's
 * new space to its maximum, which shows in RSS although the heap in use stays
 * small.
 */
async function runSmallFileMemory(ctx: BenchContext): Promise<void> {
  const { fixture } = ctx;
  const args = (ctx.defaultWorkers ?? 1) > 1 ? ['--workers', '1'] : [];
  const cached = bearer(fixture.token);
  for (const nodeOptions of [undefined, DEPLOYED_NODE_OPTIONS]) {
    const run = await withProxy(
      ctx,
      {},
      async (proxy) => {
        const url = fileUrl(proxy.dataUrl, fixture.releases.small);
        const base = { url, concurrency: 8, expectedBytes: SMALL_BYTES, headersFor: () => cached };
        await measureLatency({ ...base, requests: 2000 });
        return measureLatency({ ...base, requests: 20_000 });
      },
      args,
      nodeOptions,
    );
    const path = `modelgate, one process${nodeOptions ? `, NODE_OPTIONS=${nodeOptions}` : ''}`;
    pushLatency(ctx, { path, token: 'cached', ...summarizeLatency([run.value], 8), memory: run.memory });
  }
}
