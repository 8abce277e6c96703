import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

export interface ReadinessReport {
  ready: boolean;
  /** `reason` says in a sentence what is wrong (or degraded, while `ok` still holds). */
  checks: Record<string, { ok: boolean; reason?: string; detail?: unknown }>;
  /** Environments still in audit mode, and when each flips to enforce. */
  auditEnvironments: string[];
}

export interface AdminDeps {
  registry: Registry;
  readiness(): ReadinessReport | Promise<ReadinessReport>;
  /** Optional: metrics aggregated across worker processes (serve --workers). */
  metricsText?(): Promise<{ contentType: string; body: string }>;
  /** Refreshes gauges that depend on the clock (environments flipping to enforce) right before a scrape. */
  beforeScrape?(): void;
}

/** `/metrics` (Prometheus text), `/healthz` (process alive), `/readyz` (config, catalog, issuer keys). */
export function createAdminHandler(deps: AdminDeps) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path === '/readyz') {
      const report = await deps.readiness();
      const body = `${JSON.stringify(report)}\n`;
      res.writeHead(report.ready ? 200 : 503, { 'Content-Type': 'application/json' }).end(body);
      return;
    }
    if (path === '/metrics') {
      try {
        deps.beforeScrape?.();
        const { contentType, body } = deps.metricsText
          ? await deps.metricsText()
          : { contentType: deps.registry.contentType, body: await deps.registry.metrics() };
        res.writeHead(200, { 'Content-Type': contentType }).end(body);
      } catch (error) {
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`metrics unavailable: ${String(error)}\n`);
      }
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
  };
}
