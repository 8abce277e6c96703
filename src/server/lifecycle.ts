import type { ModelgateConfig } from '../config/config.types.ts';
import { describeAuditEnvironments } from '../policy/environments.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { App } from './app.ts';

/** Steps shared by the single process of `serve --workers 1` and each worker of `serve --workers N`. */

export function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
}

/**
 * SIGHUP: reload the whole configuration (validated first; an invalid file
 * changes nothing) and with it the keys and the catalog (README "Signals").
 */
export function reloadCatalog(app: App, logger: Logger): void {
  logger.info({ event: 'reload' }, 'SIGHUP: reloading the configuration and the catalog');
  app.reloadConfig().catch((error: unknown) => logger.error({ err: error }, 'configuration reload failed'));
}

/** Graceful shutdown after a stop signal: transfers in flight get `limits.shutdownGraceSeconds`. */
export async function drainApp(
  app: App,
  config: ModelgateConfig,
  logger: Logger,
  signal: NodeJS.Signals,
): Promise<void> {
  const grace = config.limits.shutdownGraceSeconds;
  logger.info(
    { event: 'shutdown', signal, inflight: app.activeTransfers(), graceSeconds: grace },
    'shutting down',
  );
  const cut = await app.shutdown(grace);
  logger.info({ event: 'stopped', cutTransfers: cut }, 'modelgate stopped');
}

/** The "modelgate listening" line (tests and operators wait for it), then one warning per audit-mode environment. */
export function logListening(
  logger: Logger,
  urls: { dataUrl: string; adminUrl: string },
  config: ModelgateConfig,
  fields: { workers: number; auditEnvironments?: string[]; [key: string]: unknown },
): void {
  const audit = fields.auditEnvironments ?? [];
  logger.info(
    { event: 'listening', ...urls, config: config.source, ...fields, auditEnvironments: audit },
    'modelgate listening',
  );
  for (const line of audit)
    logger.warn({ event: 'audit_mode', environment: line }, `environment in audit mode: ${line}`);
}

/** Audit-mode lines of a running app, for logListening. */
export function auditEnvironmentsOf(app: Pick<App, 'policy'>): string[] {
  return describeAuditEnvironments(app.policy);
}
