import cluster, { type Worker } from 'node:cluster';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { ModelgateConfig } from '../config/config.types.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import { configWarnings } from '../config/semantics.ts';
import { describeAuditEnvironments } from '../policy/environments.ts';
import { createAdminHandler, type ReadinessReport } from '../server/admin.ts';
import { type App, createApp } from '../server/app.ts';
import { createLogger, type Logger } from '../telemetry/logger.ts';
import { type Command, EXIT } from './command.types.ts';
import { DemoConfigError, type DemoState, prepareDemo } from './demo.ts';

const HELP = `Usage: modelgate serve --config FILE [--workers N] [--demo]

Runs the proxy: the data API (default 127.0.0.1:8080) and the admin listener
(/metrics, /healthz, /readyz; default 127.0.0.1:9464).

Options:
  --config FILE   YAML configuration (see README "Configuration")
  --workers N     processes serving the data API, sharing its port (default:
                  the number of CPUs, ${availableParallelism()} here). With N > 1 a primary process
                  runs the admin listener and aggregates metrics and readiness
                  of all workers. --workers 1 serves from a single process.
  --demo          before starting, generate the demo keys, signed demo release
                  and a short-lived demo token into .modelgate/demo (npm start)
  -h, --help      show this help

Signals:
  SIGHUP          re-scan the catalog directory (forwarded to every worker)
  SIGTERM/SIGINT  graceful shutdown: stop accepting, let transfers in flight
                  finish within limits.shutdownGraceSeconds, exit 0

Exit codes:
  0  shut down cleanly
  1  failed to start (port in use, unreadable key file, …)
  2  usage error or invalid configuration (every problem is listed)
`;

interface ServeOptions {
  config: string;
  workers: number;
  demo: boolean;
}

type ParsedArgs = { ok: true; options: ServeOptions } | { ok: false; code: number };

function parseServeArgs(args: string[]): ParsedArgs {
  let values: { config?: string; demo?: boolean; help?: boolean; workers?: string };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: 'string' },
        workers: { type: 'string' },
        demo: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    process.stderr.write(`modelgate serve: ${(error as Error).message}\n`);
    return { ok: false, code: EXIT.usage };
  }
  if (values.help) {
    process.stdout.write(HELP);
    return { ok: false, code: EXIT.ok };
  }
  if (!values.config) {
    process.stderr.write('modelgate serve: --config FILE is required\n');
    return { ok: false, code: EXIT.usage };
  }
  const workers = values.workers === undefined ? availableParallelism() : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 256) {
    process.stderr.write(
      `modelgate serve: --workers must be an integer from 1 to 256, got ${values.workers}\n`,
    );
    return { ok: false, code: EXIT.usage };
  }
  return { ok: true, options: { config: values.config, workers, demo: Boolean(values.demo) } };
}

function loadOrReport(file: string): ModelgateConfig | undefined {
  try {
    const config = loadConfig(file);
    // Once, from the process that prints the banner, not once per worker.
    if (cluster.isPrimary) {
      for (const w of configWarnings(config))
        process.stderr.write(`modelgate serve: warning: ${config.source}: ${w.path}: ${w.message}\n`);
    }
    return config;
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`modelgate serve: ${error.message}\n`);
      return undefined;
    }
    throw error;
  }
}

function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
}

/** Messages between the primary and its workers (`serve --workers N`). */
type WorkerMessage =
  | { type: 'modelgate:listening'; dataUrl: string }
  | { type: 'modelgate:readiness'; id: number; report: ReadinessReport };
type PrimaryMessage = { type: 'modelgate:readiness?'; id: number };

/** Single process, or one worker of several (then without the admin listener). */
async function runServer(
  config: ModelgateConfig,
  logger: Logger,
  demo: DemoState | undefined,
): Promise<number> {
  const inWorker = cluster.isWorker;
  let app: App;
  let urls: { dataUrl: string; adminUrl: string };
  try {
    app = await createApp({ config, logger, adminListener: !inWorker });
    if (inWorker) {
      // Constructing one installs prom-client's worker-side listener that answers the primary's metric requests.
      new AggregatorRegistry();
      AggregatorRegistry.setRegistries([app.metrics.registry]);
    }
    urls = await app.start();
  } catch (error) {
    logger.fatal({ err: error }, 'modelgate failed to start');
    process.stderr.write(`modelgate serve: failed to start: ${(error as Error).message}\n`);
    logger.flush();
    return EXIT.failure;
  }
  if (inWorker) {
    process.send!({ type: 'modelgate:listening', dataUrl: urls.dataUrl } satisfies WorkerMessage);
    process.on('message', (message: PrimaryMessage) => {
      if (message?.type === 'modelgate:readiness?') {
        process.send!({
          type: 'modelgate:readiness',
          id: message.id,
          report: app.readiness(),
        } satisfies WorkerMessage);
      }
    });
    // The primary is gone (it crashed or was killed): exit at once and free the port, as the primary's
    // supervisor (Kubernetes) restarts the whole process tree; a graceful drain has nobody to report to.
    process.once('disconnect', () => {
      logger.error({ event: 'primary_gone' }, 'primary process exited; worker stopping');
      logger.flush();
      process.exit(1);
    });
  } else {
    logListening(logger, app, urls, config, 1);
    if (demo) process.stderr.write(demo.banner(urls.dataUrl, urls.adminUrl));
  }

  const onHup = () => {
    logger.info({ event: 'reload' }, 'SIGHUP: re-scanning the catalog');
    app.reload().catch((error: unknown) => logger.error({ err: error }, 'catalog reload failed'));
  };
  process.on('SIGHUP', onHup);
  const signal = await waitForStopSignal();
  process.off('SIGHUP', onHup);
  const grace = config.limits.shutdownGraceSeconds;
  logger.info(
    { event: 'shutdown', signal, inflight: app.activeTransfers(), graceSeconds: grace },
    'shutting down',
  );
  const cut = await app.shutdown(grace);
  logger.info({ event: 'stopped', cutTransfers: cut }, 'modelgate stopped');
  logger.flush();
  return EXIT.ok;
}

function logListening(
  logger: Logger,
  app: Pick<App, 'policy'> | undefined,
  urls: { dataUrl: string; adminUrl: string },
  config: ModelgateConfig,
  workers: number,
  extra: Record<string, unknown> = {},
) {
  const audit = app ? describeAuditEnvironments(app.policy) : [];
  logger.info(
    { event: 'listening', ...urls, config: config.source, workers, auditEnvironments: audit, ...extra },
    'modelgate listening',
  );
  for (const line of audit)
    logger.warn({ event: 'audit_mode', environment: line }, `environment in audit mode: ${line}`);
}

/**
 * The primary of `serve --workers N`: forks the workers (which share the data
 * port), serves the admin listener with metrics aggregated across workers
 * (prom-client's AggregatorRegistry) and readiness that needs every worker
 * ready, replaces a worker that dies, and forwards SIGHUP/SIGTERM.
 */
async function runPrimary(
  config: ModelgateConfig,
  logger: Logger,
  count: number,
  demo: DemoState | undefined,
) {
  const aggregator = new AggregatorRegistry<typeof Registry.PROMETHEUS_CONTENT_TYPE>();
  const workers = new Set<Worker>();
  let stopping = false;
  let nextId = 1;
  const pendingReadiness = new Map<number, (report: ReadinessReport) => void>();
  let dataUrl = '';

  const fork = () => {
    const worker = cluster.fork();
    workers.add(worker);
    worker.on('message', (message: WorkerMessage) => {
      if (message?.type === 'modelgate:readiness') pendingReadiness.get(message.id)?.(message.report);
    });
    worker.on('exit', (code, signal) => {
      workers.delete(worker);
      if (stopping) return;
      logger.error(
        { event: 'worker_exit', pid: worker.process.pid, code, signal },
        'worker exited; starting a new one',
      );
      setTimeout(fork, 1000).unref();
    });
    return new Promise<string>((resolve, reject) => {
      worker.on('message', (message: WorkerMessage) => {
        if (message?.type === 'modelgate:listening') resolve(message.dataUrl);
      });
      worker.once('exit', (code) => reject(new Error(`worker exited with code ${code} while starting`)));
    });
  };

  const askReadiness = async (): Promise<ReadinessReport> => {
    const reports = await Promise.all(
      [...workers].map(
        (worker) =>
          new Promise<ReadinessReport | undefined>((resolve) => {
            const id = nextId++;
            const timer = setTimeout(() => {
              pendingReadiness.delete(id);
              resolve(undefined);
            }, 2000);
            pendingReadiness.set(id, (report) => {
              clearTimeout(timer);
              pendingReadiness.delete(id);
              resolve(report);
            });
            worker.send({ type: 'modelgate:readiness?', id } satisfies PrimaryMessage);
          }),
      ),
    );
    const answered = reports.filter((r): r is ReadinessReport => r !== undefined);
    return {
      ready: !stopping && answered.length === count && answered.every((r) => r.ready),
      checks: {
        workers: { ok: answered.length === count, detail: { expected: count, answered: answered.length } },
        ...(answered.find((r) => !r.ready)?.checks ?? answered[0]?.checks ?? {}),
      },
      auditEnvironments: answered[0]?.auditEnvironments ?? [],
    };
  };

  const admin = createServer(
    { maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 15_000 },
    createAdminHandler({
      registry: aggregator,
      readiness: askReadiness,
      metricsText: async () => ({
        contentType: aggregator.contentType,
        body: await await aggregator.clusterMetrics(),
      }),
    }),
  );

  try {
    const urls = await Promise.all(Array.from({ length: count }, fork));
    dataUrl = urls[0]!;
    await new Promise<void>((resolve, reject) => {
      admin.once('error', reject);
      admin.listen(config.admin.port, config.admin.address, () => resolve());
    });
  } catch (error) {
    stopping = true;
    for (const worker of workers) worker.process.kill('SIGTERM');
    logger.fatal({ err: error }, 'modelgate failed to start');
    process.stderr.write(`modelgate serve: failed to start: ${(error as Error).message}\n`);
    logger.flush();
    return EXIT.failure;
  }
  const address = admin.address() as AddressInfo;
  const urls = { dataUrl, adminUrl: `http://${address.address}:${address.port}` };
  const readiness = await askReadiness();
  logListening(logger, undefined, urls, config, count, {
    ready: readiness.ready,
    auditEnvironments: readiness.auditEnvironments,
  });
  if (demo) process.stderr.write(demo.banner(urls.dataUrl, urls.adminUrl));

  const onHup = () => {
    for (const worker of workers) worker.process.kill('SIGHUP');
  };
  process.on('SIGHUP', onHup);
  const signal = await waitForStopSignal();
  process.off('SIGHUP', onHup);
  stopping = true;
  logger.info({ event: 'shutdown', signal, workers: workers.size }, 'shutting down workers');
  await Promise.all(
    [...workers].map(
      (worker) =>
        new Promise<void>((resolve) => {
          worker.once('exit', () => resolve());
          worker.process.kill('SIGTERM');
        }),
    ),
  );
  admin.closeAllConnections();
  await new Promise<void>((resolve) => admin.close(() => resolve()));
  logger.info({ event: 'stopped' }, 'modelgate stopped');
  logger.flush();
  return EXIT.ok;
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'run the proxy',
  help: HELP,
  async run(args) {
    const parsed = parseServeArgs(args);
    if (!parsed.ok) return parsed.code;
    const { options } = parsed;
    // Demo secrets are prepared once, by the process that will print the banner.
    let demo: DemoState | undefined;
    try {
      demo = options.demo && cluster.isPrimary ? await prepareDemo(options.config) : undefined;
    } catch (error) {
      if (!(error instanceof DemoConfigError)) throw error;
      process.stderr.write(`modelgate serve: ${error.message}\n`);
      return EXIT.usage;
    }
    const config = loadOrReport(options.config);
    if (!config) return EXIT.usage;
    const logger = createLogger({ level: config.logging.level });
    if (cluster.isPrimary && options.workers > 1) return runPrimary(config, logger, options.workers, demo);
    return runServer(config, logger, demo);
  },
};
