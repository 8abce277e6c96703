import { parseArgs } from 'node:util';
import { EXIT } from '../commands/command.types.ts';
import type { ModelgateConfig } from '../config/config.types.ts';
import { loadConfig } from '../config/load.ts';
import { createLogger, type Logger } from '../telemetry/logger.ts';
import { type App, createApp } from './app.ts';
import { drainApp, reloadCatalog, waitForStopSignal } from './lifecycle.ts';
import type { SignalGate } from './signal-gate.ts';
import type { PrimaryMessage, WorkerAnswers, WorkerMessage } from './worker-protocol.types.ts';

/** Sends to the primary; resolves once written (false when the channel is gone: the primary died). */
function sendToPrimary(message: WorkerMessage): Promise<boolean> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) {
      resolve(false);
      return;
    }
    process.send(message, undefined, {}, (error: Error | null) => resolve(error === null));
  });
}

async function answer(app: App, question: PrimaryMessage & { type: 'modelgate:ask' }) {
  let reply: WorkerAnswers[typeof question.question];
  if (question.question === 'readiness') {
    reply = app.readiness();
  } else {
    // The same refresh a single process does before a scrape: environments may have flipped to enforce.
    app.policy.updateGauge(app.catalog.all().map((r) => r.environment));
    reply = await app.metrics.registry.getMetricsAsJSON();
  }
  await sendToPrimary({ type: 'modelgate:answer', id: question.id, answer: reply });
}

type Started =
  | { ok: true; config: ModelgateConfig; logger: Logger; app: App; dataUrl: string }
  | { ok: false };

/** Loads the configuration and starts the app; on failure tells the primary why (it shows in /readyz). */
async function startWorker(argv: string[]): Promise<Started> {
  let config: ModelgateConfig;
  try {
    const { values } = parseArgs({ args: argv, options: { config: { type: 'string' } } });
    if (!values.config) throw new Error('the primary passed no --config');
    config = loadConfig(values.config);
  } catch (error) {
    process.stderr.write(`modelgate worker: ${(error as Error).message}\n`);
    await sendToPrimary({ type: 'modelgate:start-failed', error: (error as Error).message });
    return { ok: false };
  }
  const logger = createLogger({ level: config.logging.level });
  try {
    // The primary numbers its worker slots from 1 (supervisor.ts): slot 1 speaks for the catalog.
    const quietCatalog = process.env.MODELGATE_WORKER_SLOT !== '1';
    const app = await createApp({ config, logger, adminListener: false, quietCatalog });
    const { dataUrl } = await app.start();
    return { ok: true, config, logger, app, dataUrl };
  } catch (error) {
    logger.fatal({ err: error }, 'modelgate worker failed to start');
    logger.flush();
    await sendToPrimary({ type: 'modelgate:start-failed', error: (error as Error).message });
    return { ok: false };
  }
}

/**
 * One worker of `serve --workers N` (see supervisor.ts): serves the data
 * listener, whose socket it shares with the other workers, answers the
 * primary's readiness and metrics questions, reloads when the primary says so,
 * and drains on SIGTERM. `hup` was installed before this module loaded.
 */
export async function runWorker(argv: string[], hup: SignalGate): Promise<number> {
  const started = await startWorker(argv);
  if (!started.ok) return EXIT.failure;
  const { config, logger, app } = started;

  process.on('message', (message: PrimaryMessage) => {
    if (message?.type === 'modelgate:ask') {
      answer(app, message).catch((error: unknown) =>
        logger.error({ err: error }, 'cannot answer the primary'),
      );
    } else if (message?.type === 'modelgate:reload') {
      reloadCatalog(app, logger);
    }
  });
  // A SIGHUP sent to this process directly (kill -HUP on the process group) reloads too.
  hup.route(() => reloadCatalog(app, logger));
  await sendToPrimary({ type: 'modelgate:ready', dataUrl: started.dataUrl });

  const signal = await waitForStopSignal();
  hup.route(() => logger.info({ event: 'reload_skipped' }, 'SIGHUP while stopping: ignored'));
  await drainApp(app, config, logger, signal);
  logger.flush();
  return EXIT.ok;
}
