import cluster from 'node:cluster';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { EXIT } from '../commands/command.types.ts';
import type { ModelgateConfig } from '../config/config.types.ts';
import type { Logger } from '../telemetry/logger.ts';
import { createSupervisorMetrics } from '../telemetry/metrics.ts';
import { createAdminHandler, type ReadinessReport } from './admin.ts';
import { logListening, waitForStopSignal } from './lifecycle.ts';
import type { SignalGate } from './signal-gate.ts';
import { WorkerSupervisor } from './supervisor.ts';
import { aggregateReadiness } from './worker-readiness.ts';

const WORKER_MAIN = new URL('./worker-main.ts', import.meta.url).pathname;

/** How long the primary waits for a worker's answer to a readiness or metrics question. */
const ASK_TIMEOUT_MS = 2000;

export interface PrimaryOptions {
  config: ModelgateConfig;
  /** The --config argument, passed on to the workers, which load the file themselves. */
  configPath: string;
  logger: Logger;
  workers: number;
  /** The SIGHUP gate installed when the command started. */
  hup: SignalGate;
  /** Called once listening (the demo banner). */
  announce?: (urls: { dataUrl: string; adminUrl: string }) => void;
}

async function readiness(supervisor: WorkerSupervisor): Promise<ReadinessReport> {
  const reports = await supervisor.ask('readiness', ASK_TIMEOUT_MS);
  return aggregateReadiness(supervisor.status(), reports, supervisor.stopping);
}

/**
 * Workers' metrics summed by prom-client's aggregator, then the primary's own
 * (supervision). Only ready workers are asked, each with a timeout: a worker
 * that is starting or dying cannot make a scrape fail, which is when the
 * restart metrics matter most.
 */
async function clusterMetrics(supervisor: WorkerSupervisor, own: Registry): Promise<string> {
  const answers = await supervisor.ask('metrics', ASK_TIMEOUT_MS);
  const workers = answers.size > 0 ? await AggregatorRegistry.aggregate([...answers.values()]).metrics() : '';
  return `${workers}${await own.metrics()}`;
}

function listenAdmin(server: Server, config: ModelgateConfig): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.admin.port, config.admin.address, () => {
      server.off('error', reject);
      const address = server.address() as AddressInfo;
      resolve(`http://${address.address}:${address.port}`);
    });
  });
}

/**
 * The primary of `serve --workers N`: supervises the workers (supervisor.ts),
 * serves the admin listener with metrics and readiness aggregated across them,
 * forwards SIGHUP as a reload, and on SIGTERM/SIGINT lets every worker drain,
 * then exits as soon as the last one has.
 */
export async function runPrimary(options: PrimaryOptions): Promise<number> {
  const { config, logger, hup } = options;
  // SCHED_NONE: every worker accepts from the one shared listening socket, so a connection waits in the
  // kernel's accept queue until a live worker takes it. Under SCHED_RR (Node's default on Linux) the
  // primary accepts and hands each connection to a worker over IPC; a connection handed to a worker
  // that is dying is never answered. The price is a less even spread of connections (the kernel wakes
  // whichever worker is idle), which long downloads tolerate well. docs/runbook.md "Workers and supervision".
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: WORKER_MAIN, args: ['--config', options.configPath] });
  const metrics = createSupervisorMetrics();
  const supervisor = new WorkerSupervisor({
    count: options.workers,
    backoff: {
      initialMs: config.workers.restartInitialSeconds * 1000,
      maxMs: config.workers.restartMaxSeconds * 1000,
    },
    metrics,
    logger,
  });
  hup.route(() => {
    logger.info({ event: 'reload' }, 'SIGHUP: reloading every ready worker');
    supervisor.reload();
  });
  // Workers drain for the grace period themselves; past it and a margin, the primary kills them.
  const forceAfterMs = config.limits.shutdownGraceSeconds * 1000 + 5000;

  const started = await supervisor.start();
  let adminUrl = '';
  const admin = createServer(
    { maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 15_000 },
    createAdminHandler({
      registry: metrics.registry,
      readiness: () => readiness(supervisor),
      metricsText: async () => ({
        contentType: metrics.registry.contentType,
        body: await clusterMetrics(supervisor, metrics.registry),
      }),
    }),
  );
  try {
    if (started.ready === 0) throw new Error(describeFirstFailure(supervisor));
    adminUrl = await listenAdmin(admin, config);
  } catch (error) {
    await supervisor.stop(0);
    logger.fatal({ err: error }, 'modelgate failed to start');
    process.stderr.write(`modelgate serve: failed to start: ${(error as Error).message}\n`);
    logger.flush();
    return EXIT.failure;
  }
  const urls = { dataUrl: started.dataUrl, adminUrl };
  const report = await readiness(supervisor);
  logListening(logger, urls, config, {
    workers: options.workers,
    ready: report.ready,
    auditEnvironments: report.auditEnvironments,
  });
  options.announce?.(urls);

  const signal = await waitForStopSignal();
  hup.route(() => logger.info({ event: 'reload_skipped' }, 'SIGHUP while stopping: ignored'));
  logger.info({ event: 'shutdown', signal, workers: options.workers }, 'shutting down workers');
  await supervisor.stop(forceAfterMs);
  admin.closeAllConnections();
  await new Promise<void>((resolve) => admin.close(() => resolve()));
  logger.info({ event: 'stopped' }, 'modelgate stopped');
  logger.flush();
  return EXIT.ok;
}

function describeFirstFailure(supervisor: WorkerSupervisor): string {
  const exit = supervisor.status().find((s) => s.lastExit)?.lastExit;
  return `no worker started${exit?.error ? `: ${exit.error}` : ''}`;
}
