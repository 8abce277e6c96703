import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/load.ts';
import { describeAuditEnvironments } from '../policy/environments.ts';
import { createApp } from '../server/app.ts';
import { createLogger } from '../telemetry/logger.ts';
import { type Command, EXIT } from './command.types.ts';
import { prepareDemo } from './demo.ts';

const HELP = `Usage: modelgate serve --config FILE [--demo]

Runs the proxy: the data API (default 127.0.0.1:8080) and the admin listener
(/metrics, /healthz, /readyz; default 127.0.0.1:9464).

Options:
  --config FILE   YAML configuration (see README "Configuration")
  --demo          before starting, generate the demo keys, signed demo release
                  and a short-lived demo token into .modelgate/demo (npm start)
  -h, --help      show this help

Signals:
  SIGHUP          re-scan the catalog directory
  SIGTERM/SIGINT  graceful shutdown: stop accepting, let transfers in flight
                  finish within limits.shutdownGraceSeconds, exit 0

Exit codes:
  0  shut down cleanly
  1  failed to start (port in use, unreadable key file, …)
  2  usage error or invalid configuration (every problem is listed)
`;

export const serveCommand: Command = {
  name: 'serve',
  summary: 'run the proxy',
  help: HELP,
  async run(args) {
    let values: { config?: string; demo?: boolean; help?: boolean };
    try {
      ({ values } = parseArgs({
        args,
        options: {
          config: { type: 'string' },
          demo: { type: 'boolean' },
          help: { type: 'boolean', short: 'h' },
        },
      }));
    } catch (error) {
      process.stderr.write(`modelgate serve: ${(error as Error).message}\n`);
      return EXIT.usage;
    }
    if (values.help) {
      process.stdout.write(HELP);
      return EXIT.ok;
    }
    if (!values.config) {
      process.stderr.write('modelgate serve: --config FILE is required\n');
      return EXIT.usage;
    }
    let demo: Awaited<ReturnType<typeof prepareDemo>> | undefined;
    if (values.demo) demo = await prepareDemo(values.config);
    let config: ReturnType<typeof loadConfig>;
    try {
      config = loadConfig(values.config);
    } catch (error) {
      if (error instanceof ConfigError) {
        process.stderr.write(`modelgate serve: ${error.message}\n`);
        return EXIT.usage;
      }
      throw error;
    }
    const logger = createLogger({ level: config.logging.level });
    let app: Awaited<ReturnType<typeof createApp>>;
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
    const ready = app.readiness();
    logger.info(
      {
        event: 'listening',
        ...urls,
        config: config.source,
        releases: app.catalog.all().length,
        ready: ready.ready,
        auditEnvironments: describeAuditEnvironments(app.policy),
      },
      'modelgate listening',
    );
    for (const line of describeAuditEnvironments(app.policy)) {
      logger.warn({ event: 'audit_mode', environment: line }, `environment in audit mode: ${line}`);
    }
    if (demo) process.stderr.write(demo.banner(urls.dataUrl, urls.adminUrl));

    const onHup = () => {
      logger.info({ event: 'reload' }, 'SIGHUP: re-scanning the catalog');
      app.reload().catch((error: unknown) => logger.error({ err: error }, 'catalog reload failed'));
    };
    process.on('SIGHUP', onHup);
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    });
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
  },
};
