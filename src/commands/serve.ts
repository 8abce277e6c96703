import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import type { ModelgateConfig } from '../config/config.types.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import { configWarnings } from '../config/semantics.ts';
import { type App, createApp } from '../server/app.ts';
import {
  auditEnvironmentsOf,
  drainApp,
  logListening,
  reloadCatalog,
  waitForStopSignal,
} from '../server/lifecycle.ts';
import { runPrimary } from '../server/primary.ts';
import { holdSignal, type SignalGate } from '../server/signal-gate.ts';
import { createLogger, type Logger } from '../telemetry/logger.ts';
import { type Command, defineCommand, EXIT } from './command.types.ts';
import { DemoConfigError, type DemoState, prepareDemo } from './demo.ts';

const HELP = `Usage: modelgate serve --config FILE [--workers N] [--demo]

Runs the proxy: the data API (default 127.0.0.1:8080) and the admin listener
(/metrics, /healthz, /readyz; default 127.0.0.1:9464).

Options:
  --config FILE   YAML configuration (see README "Configuration")
  --workers N     processes serving the data API, sharing its port (default:
                  the number of CPUs, ${availableParallelism()} here). With N > 1 a primary process
                  runs the admin listener, aggregates metrics and readiness
                  of all workers, and replaces a worker that dies (with
                  backoff: workers.restartInitialSeconds, restartMaxSeconds).
                  --workers 1 serves from a single process.
  --demo          before starting, generate the demo keys, signed demo release
                  and a short-lived demo token into .modelgate/demo (npm start)
  -h, --help      show this help

Signals:
  SIGHUP          re-scan the catalog directory (forwarded to every ready
                  worker; a worker still starting gets it once ready)
  SIGTERM/SIGINT  graceful shutdown: stop accepting, let transfers in flight
                  finish within limits.shutdownGraceSeconds, exit 0

Exit codes:
  0  shut down cleanly
  1  failed to start (port in use, unreadable key file, …)
  2  usage error or invalid configuration (every problem is listed)
`;

/** `--config`, `--workers`, `--demo`, `--help`. */
function parseServeArgs(args: string[]) {
  return parseArgs({
    args,
    options: {
      config: { type: 'string' },
      workers: { type: 'string' },
      demo: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
}

/** The configuration, its warnings printed; a `ConfigError` (every problem listed) is the caller's to report. */
function loadAndWarn(file: string): ModelgateConfig {
  const config = loadConfig(file);
  // Once, from the process that prints the banner (workers load the configuration in worker-main.ts).
  for (const w of configWarnings(config)) {
    process.stderr.write(`modelgate serve: warning: ${config.source}: ${w.path}: ${w.message}\n`);
  }
  return config;
}

/** `serve --workers 1`: one process serves the data and admin listeners. */
async function runSingleProcess(
  config: ModelgateConfig,
  logger: Logger,
  hup: SignalGate,
  demo: DemoState | undefined,
): Promise<number> {
  let app: App;
  let urls: { dataUrl: string; adminUrl: string };
  try {
    app = await createApp({ config, logger });
    urls = await app.start();
  } catch (error) {
    logger.fatal({ err: error }, 'modelgate failed to start');
    process.stderr.write(`modelgate serve: failed to start: ${(error as Error).message}\n`);
    logger.flush();
    return EXIT.failure;
  }
  logListening(logger, urls, config, { workers: 1, auditEnvironments: auditEnvironmentsOf(app) });
  if (demo) process.stderr.write(demo.banner(urls.dataUrl, urls.adminUrl));
  hup.route(() => reloadCatalog(app, logger));
  const signal = await waitForStopSignal();
  hup.route(() => logger.info({ event: 'reload_skipped' }, 'SIGHUP while stopping: ignored'));
  await drainApp(app, config, logger, signal);
  logger.flush();
  return EXIT.ok;
}

export const serveCommand: Command = defineCommand({
  name: 'serve',
  summary: 'run the proxy',
  help: HELP,
  output: process,
  parse: parseServeArgs,
  async run(values, fail) {
    // Before any await (defineCommand parses synchronously): a SIGHUP while the
    // server starts must not terminate it (SIGHUP's default action).
    const hup = holdSignal('SIGHUP');
    if (!values.config) return fail(EXIT.usage, '--config FILE is required');
    const workers = values.workers === undefined ? availableParallelism() : Number(values.workers);
    if (!Number.isInteger(workers) || workers < 1 || workers > 256) {
      return fail(EXIT.usage, `--workers must be an integer from 1 to 256, got ${values.workers}`);
    }
    // Demo secrets are prepared once, by the process that prints the banner (workers run worker-main.ts).
    let demo: DemoState | undefined;
    let config: ModelgateConfig;
    try {
      demo = values.demo ? await prepareDemo(values.config) : undefined;
      config = loadAndWarn(values.config);
    } catch (error) {
      if (error instanceof DemoConfigError || error instanceof ConfigError)
        return fail(EXIT.usage, error.message);
      throw error;
    }
    const logger = createLogger({ level: config.logging.level });
    if (workers === 1) return runSingleProcess(config, logger, hup, demo);
    return runPrimary({
      config,
      configPath: values.config,
      logger,
      workers,
      hup,
      ...(demo ? { announce: (urls) => process.stderr.write(demo.banner(urls.dataUrl, urls.adminUrl)) } : {}),
    });
  },
});
