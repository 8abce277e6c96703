/**
 * `npm run bench` (full: 1 GiB file, 5 interleaved timed runs per row, about 10 minutes)
 * or `npm run bench -- --quick` (128 MiB, one run per row, under a minute).
 *
 * Builds every scenario on 127.0.0.1, runs them one after another, prints
 * tables and writes the JSON report to bench/results/. Every child process
 * (nginx, modelgate, s3rver) is stopped at the end, also on failure.
 * See bench/README.md for what each scenario means.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { runAdmissionCommand } from './lib/admission.ts';
import { CACHE_CLIENTS, FLEET_PROXIES, runCache } from './lib/cache-scenario.ts';
import { onInterrupt, stopAllChildren } from './lib/children.ts';
import { BUCKET, CHUNK_BYTES, createFixture, MiB, SMALL_BYTES } from './lib/fixture.ts';
import { describeMachine } from './lib/machine.ts';
import {
  type BenchReport,
  cacheTable,
  fanoutTable,
  latencyTable,
  type Target,
  targetsTable,
  throughputTable,
} from './lib/report.ts';
import {
  type BenchContext,
  runFanout,
  runOptimizations,
  runRateLimited,
  runSingleStream,
  runSmallFiles,
} from './lib/scenarios.ts';
import { startNginx, startNodeService } from './lib/services.ts';

const SCENARIOS = ['single', 'optimizations', 'rate-limited', 'fanout', 'small', 'cache'] as const;
type Scenario = (typeof SCENARIOS)[number];
/** nginx `limit_rate` syntax: bytes per second per connection (m = MiB). */
const LIMIT_RATE = '100m';
const LIMIT_RATE_BYTES = 100 * MiB;
const FANOUT_CLIENTS = 16;
const RESULTS = new URL('./results/', import.meta.url).pathname;

const HELP = `Usage: npm run bench [-- --quick] [-- --only single,optimizations,rate-limited,fanout,small,cache]

  --quick          128 MiB file, one timed run per row, fewer requests (under a minute)
  --only LIST      run only these scenarios (comma-separated)
  --size-mib N     size of the large file (default 1024, quick 128)
  --reps N         interleaved timed downloads per single-stream row (default 5, quick 1)
  --keep           keep the temp folder (configs, proxy logs, nginx.conf) for inspection
  --admission      only the admission webhook: 500 AdmissionReviews at concurrency 16, p50/p99
`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      'size-mib': { type: 'string' },
      reps: { type: 'string' },
      keep: { type: 'boolean', default: false },
      admission: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const only = values.only?.split(',').map((s) => s.trim()) ?? [...SCENARIOS];
  for (const name of only) {
    if (!(SCENARIOS as readonly string[]).includes(name))
      throw new Error(`unknown scenario ${name}\n${HELP}`);
  }
  const quick = values.quick;
  return {
    quick,
    only: new Set(only as Scenario[]),
    sizeBytes: Number(values['size-mib'] ?? (quick ? 128 : 1024)) * MiB,
    reps: Number(values.reps ?? (quick ? 1 : 5)),
    keep: values.keep,
    admission: values.admission,
  };
}

/**
 * How many processes `modelgate serve` runs by default: one per CPU when it
 * has a `--workers` option (read from its help), else null (one process).
 */
function defaultWorkers(cpus: number): number | null {
  const main = new URL('../src/main.ts', import.meta.url).pathname;
  const help = spawnSync(process.execPath, [main, 'serve', '--help'], { encoding: 'utf8' });
  return /--workers\b/.test(`${help.stdout}${help.stderr}`) ? cpus : null;
}

/** Puts the large file into s3rver through the S3 API (streamed from disk). */
async function uploadToS3rver(endpoint: string, file: string, size: number): Promise<void> {
  const client = new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    // Without this the SDK sends an aws-chunked body with a trailing checksum, which s3rver stores verbatim.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  try {
    const body = createReadStream(file);
    await client.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: 'big.bin', Body: body, ContentLength: size }),
    );
  } finally {
    client.destroy();
  }
}

/** The commit measured, and the source files that differ from it (read-only git queries). */
function revision(): { commit: string; uncommitted: string[] } {
  const root = new URL('..', import.meta.url).pathname;
  const git = (args: string[]) =>
    spawnSync('git', args, { cwd: root, encoding: 'utf8' }).stdout?.trim() ?? '';
  return {
    commit: git(['rev-parse', '--short', 'HEAD']) || 'unknown',
    uncommitted: git(['diff', '--name-only', 'HEAD', '--', 'src']).split('\n').filter(Boolean),
  };
}

/** Issue 16's cache targets, from the cache rows. */
function cacheTargets(report: BenchReport): Target[] {
  const targets: Target[] = [];
  const find = (prefix: string) => report.cache.find((r) => r.row.startsWith(prefix));
  const size = `${report.sizes.bigBytes / MiB} MiB`;
  const warm = find('warm');
  if (warm?.vsNginx !== undefined) {
    targets.push({
      name: 'warm cache vs nginx proxy_pass (file store), every byte hashed',
      goal: '≥ 1.5×',
      measured: `${warm.vsNginx.toFixed(2)}× (${warm.mbps.toFixed(0)} MB/s)`,
      met: warm.vsNginx >= 1.5,
    });
  }
  const many = find(`${CACHE_CLIENTS} clients`);
  if (many?.sourceReadsPerChunk !== undefined && many.sourceBytes !== undefined) {
    targets.push({
      name: `${CACHE_CLIENTS} clients × ${size} on --workers 2: source reads per chunk`,
      goal: 'exactly 1',
      measured: `${many.sourceReadsPerChunk.toFixed(2)} (${(many.sourceBytes / many.sizeBytes).toFixed(2)}× the file read)`,
      met: many.sourceReadsPerChunk === 1 && many.sourceBytes === many.sizeBytes,
    });
  }
  if (many?.memory) {
    targets.push({
      name: `${CACHE_CLIENTS} clients × ${size} on --workers 2: proxy RSS, all processes`,
      goal: '< 400 MiB',
      measured: `${many.memory.peakMiB} MiB peak (idle ${many.memory.idleMiB}; largest ${many.memory.peakLargestMiB})`,
      met: many.memory.peakMiB < 400,
    });
  }
  const fleet = find('fleet');
  if (fleet?.sourceBytes !== undefined) {
    targets.push({
      name: `fleet of ${FLEET_PROXIES}, ${fleet.clients} clients: source bytes`,
      goal: `= ${FLEET_PROXIES} × file size`,
      measured: `${(fleet.sourceBytes / fleet.sizeBytes).toFixed(2)} × file size`,
      met: fleet.sourceBytes === FLEET_PROXIES * fleet.sizeBytes,
    });
  }
  return targets;
}

function evaluateTargets(report: BenchReport, quick: boolean): Target[] {
  const targets: Target[] = cacheTargets(report);
  const single = report.throughput.filter((r) => r.section === 'single');
  for (const source of ['file', 's3']) {
    const row = single.find((r) => r.source === source && r.path === 'modelgate' && r.mode === 'chunk');
    if (row?.vsNginx !== undefined) {
      targets.push({
        name: `single stream, chunk mode, ${source} source`,
        goal: '≥ 0.8× nginx proxy_pass',
        measured: `${row.vsNginx.toFixed(2)}× (${row.mbps.toFixed(0)} MB/s)`,
        met: row.vsNginx >= 0.8,
      });
    }
  }
  // Issue 16: one verified stream should use at least half of what one core can hash.
  const fileChunk = single.find((r) => r.source === 'file' && r.path === 'modelgate' && r.mode === 'chunk');
  if (fileChunk && report.sha256) {
    const share = fileChunk.mbps / report.sha256.mbps;
    targets.push({
      name: 'single stream, chunk mode, file store vs one core SHA-256',
      goal: '≥ 0.5 of one core',
      measured: `${share.toFixed(2)} (${fileChunk.mbps.toFixed(0)} of ${report.sha256.mbps.toFixed(0)} MB/s)`,
      met: share >= 0.5,
    });
  }
  // Issue 16: the S3 store against a fast origin (nginx static at the path-style URL).
  for (const [mode, goal] of [
    ['chunk', 1.0],
    ['whole', 0.9],
  ] as const) {
    const row = single.find(
      (r) => r.source === 's3 (fast origin)' && r.path === 'modelgate' && r.mode === mode,
    );
    if (row?.vsNginx !== undefined) {
      targets.push({
        name: `single stream, ${mode} mode, S3 store, fast origin`,
        goal: `≥ ${goal.toFixed(1)}× nginx proxy_pass`,
        measured: `${row.vsNginx.toFixed(2)}× (${row.mbps.toFixed(0)} MB/s)`,
        met: row.vsNginx >= goal,
      });
    }
  }
  const fileFanout = report.fanout.filter(
    (r) => r.path === 'modelgate chunk' && r.source === 'file' && r.settings === undefined,
  );
  const many = fileFanout.find((r) => (r.processes ?? 1) > 1);
  const one = fileFanout.find((r) => r.processes === 1);
  if (many && one) {
    const scale = many.aggregateMBps / one.aggregateMBps;
    targets.push({
      name: 'fan-out aggregate scales with cores',
      goal: `${many.processes} processes ≥ ${(0.75 * many.processes!).toFixed(1)}× one process`,
      measured: `${scale.toFixed(2)}× (${many.aggregateMBps.toFixed(0)} vs ${one.aggregateMBps.toFixed(0)} MB/s)`,
      met: scale >= 0.75 * many.processes!,
    });
  } else if (one) {
    targets.push({
      name: 'fan-out aggregate scales with cores',
      goal: 'aggregate grows with processes',
      measured: `serve has no --workers option: one process, ${one.aggregateMBps.toFixed(0)} MB/s`,
      met: false,
    });
  }
  const size = `${FANOUT_CLIENTS} × ${report.sizes.bigBytes / MiB} MiB`;
  const rssGoal = `< 256 MiB${quick ? ' (for 16 × 1 GiB: run the full bench)' : ''}`;
  const memoryRows = report.fanout.filter(
    (r) =>
      r.path === 'modelgate chunk' &&
      r.source === 'file' &&
      (r.settings === undefined || r.settings.startsWith('NODE_OPTIONS')),
  );
  for (const row of memoryRows) {
    if (!row.memory) continue;
    const processes = (row.processes ?? 1) > 1 ? `${row.processes} workers, all processes` : 'one process';
    const label = row.settings ? `${processes}, ${row.settings}` : processes;
    targets.push({
      name: `proxy RSS, fan-out of ${size}, ${label}`,
      goal: rssGoal,
      measured:
        `${row.memory.peakMiB} MiB peak (idle ${row.memory.idleMiB})` +
        ((row.processes ?? 1) > 1 ? `; largest process ${row.memory.peakLargestMiB}` : ''),
      met: row.memory.peakMiB < 256,
    });
  }
  const cached = report.latency.find(
    (r) => r.path === 'modelgate' && r.token === 'cached' && r.concurrency === 1,
  );
  const nginx = report.latency.find((r) => r.path === 'nginx proxy_pass' && r.concurrency === 1);
  const direct = report.latency.find((r) => r.path.startsWith('direct') && r.concurrency === 1);
  const reference = nginx ?? direct;
  if (cached && reference) {
    const overhead = cached.p50Ms - reference.p50Ms;
    targets.push({
      name: 'small-file p50 overhead, cached token',
      goal: `< 1 ms over ${reference.path} (concurrency 1)`,
      measured: `${overhead.toFixed(3)} ms (${cached.p50Ms.toFixed(3)} vs ${reference.p50Ms.toFixed(3)} ms)`,
      met: overhead < 1,
    });
  }
  return targets;
}

async function main() {
  const options = parseOptions();
  const started = Date.now();
  const machine = describeMachine();
  // A reader that goes away (`npm run bench | head`) must not crash the run before it cleans up.
  process.stdout.on('error', () => {});
  const log = (line: string) => process.stdout.write(`${line}\n`);
  if (options.admission) {
    await runAdmissionCommand({ keep: options.keep, log });
    return;
  }
  log(`modelgate bench${options.quick ? ' (quick)' : ''} — ${new Date().toISOString()}`);
  log(
    `machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB RAM, ${machine.kernel}, ` +
      `Node ${machine.node}, ${machine.nginxVersion ?? 'no nginx'}`,
  );
  const report: BenchReport = {
    date: new Date().toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    quick: options.quick,
    revision: revision(),
    machine: { ...machine },
    sizes: {
      bigBytes: options.sizeBytes,
      chunkBytes: CHUNK_BYTES,
      smallBytes: SMALL_BYTES,
      limitRate: LIMIT_RATE,
    },
    throughput: [],
    fanout: [],
    latency: [],
    cache: [],
    targets: [],
    skipped: [],
    load: { start: loadavg(), end: [] },
  };
  const { commit, uncommitted } = report.revision;
  log(
    `commit ${commit}${uncommitted.length > 0 ? ` with uncommitted changes in ${uncommitted.join(', ')}` : ''}`,
  );
  const [load1] = report.load.start;
  log(`load average at start: ${report.load.start.map((v) => v.toFixed(2)).join(' ')}`);
  if (load1 !== undefined && load1 > machine.cpus / 2) {
    log(
      `warning: the machine is busy (load ${load1.toFixed(1)} on ${machine.cpus} CPUs): figures will be low and noisy`,
    );
  }
  if (machine.nginxPath === null) {
    const line = 'nginx not found: apt-get install nginx to include the nginx reference';
    log(line);
    report.skipped.push(line);
  }

  const dir = await mkdtemp(join(tmpdir(), 'modelgate-bench-'));
  if (!options.keep) onInterrupt(() => rm(dir, { recursive: true, force: true }));
  try {
    log(`preparing ${options.sizeBytes / MiB} MiB of random data in ${dir}`);
    const fixture = await createFixture(dir, options.sizeBytes);
    const s3rverDir = join(dir, 's3rver');
    await mkdir(s3rverDir);
    const s3rver = await startNodeService('s3rver', 's3rver-child.ts', [
      '--dir',
      s3rverDir,
      '--bucket',
      BUCKET,
    ]);
    await uploadToS3rver(s3rver.url, fixture.bigFile, fixture.bigSize);

    let staticUrl: string;
    let limitedUrl: string;
    let staticLabel: string;
    let nginxUrls: BenchContext['nginx'] = null;
    if (machine.nginxPath !== null) {
      const nginxDir = join(dir, 'nginx');
      await mkdir(nginxDir);
      const nginx = await startNginx({
        binary: machine.nginxPath,
        dir: nginxDir,
        root: fixture.dataRoot,
        s3Port: s3rver.port,
        limitRate: LIMIT_RATE,
      });
      staticUrl = nginx.staticUrl;
      limitedUrl = nginx.limitedUrl;
      staticLabel = 'nginx static';
      nginxUrls = nginx;
    } else {
      const plain = await startNodeService('static', 'static-server.ts', ['--root', fixture.dataRoot]);
      const limited = await startNodeService('static-limited', 'static-server.ts', [
        '--root',
        fixture.dataRoot,
        '--rate',
        String(LIMIT_RATE_BYTES),
      ]);
      staticUrl = plain.url;
      limitedUrl = limited.url;
      staticLabel = 'node static';
    }

    const workers = defaultWorkers(machine.cpus);
    log(
      workers === null
        ? 'modelgate serve runs one process'
        : `modelgate serve runs ${workers} workers by default` +
            (options.quick ? '; quick mode runs --workers 1 except in the fan-out comparison' : ''),
    );
    const ctx: BenchContext = {
      quick: options.quick,
      reps: options.reps,
      fixture,
      dir,
      staticUrl,
      staticLabel,
      limitedUrl,
      s3rverUrl: s3rver.url,
      nginx: nginxUrls,
      defaultWorkers: workers,
      proxyArgs: options.quick && workers !== null ? ['--workers', '1'] : [],
      report,
      log,
    };
    const scenarios: Record<Scenario, () => Promise<void>> = {
      single: () => runSingleStream(ctx),
      optimizations: () => runOptimizations(ctx),
      'rate-limited': () => runRateLimited(ctx, LIMIT_RATE),
      fanout: () => runFanout(ctx, FANOUT_CLIENTS),
      small: () => runSmallFiles(ctx),
      cache: () => runCache(ctx),
    };
    log(`setup took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    for (const name of SCENARIOS) {
      if (!options.only.has(name)) continue;
      const began = Date.now();
      await scenarios[name]();
      log(`  (${name}: ${((Date.now() - began) / 1000).toFixed(1)} s)`);
    }
    report.load.end = loadavg();

    report.targets = evaluateTargets(report, options.quick);
    if (report.throughput.length > 0) {
      const sizes = `${options.sizeBytes / MiB} MiB file, ${CHUNK_BYTES / MiB} MiB chunks`;
      log('');
      log(`Throughput (MB/s = 10^6 bytes/s; ${sizes}; ratios paired per run)`);
      log(throughputTable(report.throughput));
    }
    if (report.fanout.length > 0) {
      log('');
      log(`Fan-out (${FANOUT_CLIENTS} clients, same file)`);
      log(fanoutTable(report.fanout));
    }
    if (report.latency.length > 0) {
      log('');
      log(`Small files (${SMALL_BYTES} B, keep-alive connections)`);
      log(latencyTable(report.latency));
    }
    if (report.cache.length > 0) {
      log('');
      log('Verified disk cache (file store; source bytes and reads summed over the proxies)');
      log(cacheTable(report.cache));
    }
    log('');
    log(
      `load average at start ${report.load.start.map((v) => v.toFixed(2)).join(' ')}, at end ${report.load.end.map((v) => v.toFixed(2)).join(' ')}`,
    );
    if (report.targets.length > 0) {
      log('');
      log('Targets');
      log(targetsTable(report.targets));
    }
    await mkdir(RESULTS, { recursive: true });
    const out = join(
      RESULTS,
      `bench-${report.date.replaceAll(':', '-')}${options.quick ? '-quick' : ''}.json`,
    );
    await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
    log('');
    log(`wrote ${out} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  } finally {
    await stopAllChildren();
    if (options.keep) log(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}

main().catch(async (error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  await stopAllChildren();
  process.exitCode = 1;
});
