/**
 * `npm run bench` (full: 1 GiB file, 3 timed runs per row, a few minutes)
 * or `npm run bench -- --quick` (256 MiB, one run per row, under a minute).
 *
 * Builds every scenario on 127.0.0.1, runs them one after another, prints
 * tables and writes the JSON report to bench/results/. Every child process
 * (nginx, modelgate, s3rver) is stopped at the end, also on failure.
 * See bench/README.md for what each scenario means.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { stopAllChildren } from './lib/children.ts';
import { BUCKET, CHUNK_BYTES, createFixture, MiB, SMALL_BYTES } from './lib/fixture.ts';
import { describeMachine } from './lib/machine.ts';
import {
  type BenchReport,
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

const SCENARIOS = ['single', 'optimizations', 'rate-limited', 'fanout', 'small'] as const;
type Scenario = (typeof SCENARIOS)[number];
/** nginx `limit_rate` syntax: bytes per second per connection (m = MiB). */
const LIMIT_RATE = '100m';
const LIMIT_RATE_BYTES = 100 * MiB;
const FANOUT_CLIENTS = 16;
const RESULTS = new URL('./results/', import.meta.url).pathname;

const HELP = `Usage: npm run bench [-- --quick] [-- --only single,optimizations,rate-limited,fanout,small]

  --quick          256 MiB file, one timed run per row, fewer requests (under a minute)
  --only LIST      run only these scenarios (comma-separated)
  --size-mib N     size of the large file (default 1024, quick 256)
  --reps N         timed downloads per single-stream row (default 3, quick 1)
  --keep           keep the temp folder (configs, proxy logs, nginx.conf) for inspection
`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      'size-mib': { type: 'string' },
      reps: { type: 'string' },
      keep: { type: 'boolean', default: false },
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
    sizeBytes: Number(values['size-mib'] ?? (quick ? 256 : 1024)) * MiB,
    reps: Number(values.reps ?? (quick ? 1 : 3)),
    keep: values.keep,
  };
}

/** Whether `modelgate serve` has a `--workers` option (one process per core), read from its help. */
function serveWorkers(cpus: number): number | null {
  const main = new URL('../src/main.ts', import.meta.url).pathname;
  const help = spawnSync(process.execPath, [main, 'serve', '--help'], { encoding: 'utf8' });
  return /--workers\b/.test(`${help.stdout}${help.stderr}`) ? cpus : null;
}

async function uploadToS3rver(endpoint: string, file: string, size: number): Promise<void> {
  const client = new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  try {
    for (const [key, path, length] of [
      ['big.bin', file, size],
      ['small.bin', join(file, '..', 'small.bin'), SMALL_BYTES],
    ] as const) {
      await client.send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: key,
          Body: createReadStream(path),
          ContentLength: length,
        }),
      );
    }
  } finally {
    client.destroy();
  }
}

function evaluateTargets(report: BenchReport, quick: boolean): Target[] {
  const targets: Target[] = [];
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
  const fileFanout = report.fanout.find(
    (r) => r.path === 'modelgate chunk' && r.source === 'file' && !r.note,
  );
  const workersFanout = report.fanout.find((r) => r.path === 'modelgate chunk' && r.note);
  const singleChunk = single.find((r) => r.source === 'file' && r.path === 'modelgate' && r.mode === 'chunk');
  if (fileFanout) {
    const scale = singleChunk ? fileFanout.aggregateMBps / singleChunk.mbps : undefined;
    targets.push({
      name: 'fan-out aggregate scales with cores',
      goal: `aggregate grows with processes (${report.machine.cpus} cores)`,
      measured:
        `${fileFanout.aggregateMBps.toFixed(0)} MB/s aggregate` +
        (scale === undefined ? '' : ` = ${scale.toFixed(2)}× one stream`) +
        (workersFanout
          ? `; ${workersFanout.note}: ${workersFanout.aggregateMBps.toFixed(0)} MB/s`
          : '; serve has no --workers option, one process only'),
      met: workersFanout ? workersFanout.aggregateMBps > fileFanout.aggregateMBps * 1.2 : false,
    });
    const worst = Math.max(
      ...report.fanout.filter((r) => r.peakRssMiB !== undefined).map((r) => r.peakRssMiB!),
    );
    targets.push({
      name: `proxy RSS during fan-out of ${FANOUT_CLIENTS} × ${report.sizes.bigBytes / MiB} MiB`,
      goal: `< 256 MiB${quick ? ' (for 16 × 1 GiB: run the full bench)' : ''}`,
      measured: `${worst} MiB peak`,
      met: worst < 256,
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
  const log = (line: string) => process.stdout.write(`${line}\n`);
  log(`modelgate bench${options.quick ? ' (quick)' : ''} — ${new Date().toISOString()}`);
  log(
    `machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB RAM, ${machine.kernel}, ` +
      `Node ${machine.node}, ${machine.nginxVersion ?? 'no nginx'}`,
  );
  const report: BenchReport = {
    date: new Date().toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    quick: options.quick,
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
    targets: [],
    skipped: [],
  };
  if (machine.nginxPath === null) {
    const line = 'nginx not found: apt-get install nginx to include the nginx reference';
    log(line);
    report.skipped.push(line);
  }

  const dir = await mkdtemp(join(tmpdir(), 'modelgate-bench-'));
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
      workers: serveWorkers(machine.cpus),
      report,
      log,
    };
    if (options.only.has('single')) await runSingleStream(ctx);
    if (options.only.has('optimizations')) await runOptimizations(ctx);
    if (options.only.has('rate-limited')) await runRateLimited(ctx, LIMIT_RATE);
    if (options.only.has('fanout')) await runFanout(ctx, FANOUT_CLIENTS);
    if (options.only.has('small')) await runSmallFiles(ctx);

    report.targets = evaluateTargets(report, options.quick);
    log('');
    log(
      `Throughput (MB/s = 10^6 bytes/s; ${options.sizeBytes / MiB} MiB file, ${CHUNK_BYTES / MiB} MiB chunks)`,
    );
    log(throughputTable(report.throughput));
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
