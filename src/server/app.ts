import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { createServer as createHttpServer, type Server, type ServerOptions } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { type AdmissionListener, startConfiguredAdmission } from '../admission/listener.ts';
import { createCatalog } from '../catalog/catalog.ts';
import type { Catalog } from '../catalog/catalog.types.ts';
import { type Clock, systemClock } from '../clock.ts';
import type { ModelgateConfig, TlsConfig } from '../config/config.types.ts';
import { createAuthenticator } from '../identity/authenticator.ts';
import type { Authenticator } from '../identity/authenticator.types.ts';
import { type ChunkFetcher, createChunkFetcher } from '../integrity/chunk-fetcher.ts';
import { createInlineHasher, createWorkerHasher, type Hasher } from '../integrity/hasher.ts';
import { createBreakGlassVerifier } from '../policy/break-glass.ts';
import { createEnvironmentPolicy } from '../policy/environments.ts';
import type { EnvironmentPolicy } from '../policy/policy.types.ts';
import { createStores, type StoreSet } from '../stores/index.ts';
import type { Logger } from '../telemetry/logger.ts';
import { createMetrics, type Metrics } from '../telemetry/metrics.ts';
import { toSignerSpec } from '../trust/signer-config.ts';
import { type AdminDeps, createAdminHandler, type ReadinessReport } from './admin.ts';
import { createHandler } from './handler.ts';
import { createReadiness } from './readiness.ts';

/** Socket write buffer of the data listener: 1 MiB lets one write hand the kernel a large slice of a chunk. */
const DATA_HIGH_WATER_MARK = 1024 * 1024;

export interface AppOptions {
  config: ModelgateConfig;
  logger: Logger;
  metrics?: Metrics;
  clock?: Clock;
  /** Replaces the admin /metrics body (worker aggregation). */
  metricsText?: AdminDeps['metricsText'];
  /** False in `serve --workers N` workers: the primary process serves the admin listener for all of them. */
  adminListener?: boolean;
}

export interface App {
  readonly metrics: Metrics;
  readonly catalog: Catalog;
  readonly authenticator: Authenticator;
  readonly policy: EnvironmentPolicy;
  readonly fetcher: ChunkFetcher;
  /** Listens on every listener; resolves with their URLs (`admissionUrl` when `admission:` is configured). */
  start(): Promise<{ dataUrl: string; adminUrl: string; admissionUrl?: string }>;
  /** Re-scans the catalog (SIGHUP). */
  reload(): Promise<void>;
  readiness(): ReadinessReport;
  /** Transfers in flight now. */
  activeTransfers(): number;
  /**
   * Graceful shutdown: stop accepting, let transfers in flight finish within
   * `graceSeconds`, then close whatever is left. Resolves with the number of
   * transfers that had to be cut.
   */
  shutdown(graceSeconds?: number): Promise<number>;
}

function urlOf(server: Server, tls: boolean): string {
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${tls ? 'https' : 'http'}://${host}:${address.port}`;
}

function listen(server: Server, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function readTls(tls: TlsConfig) {
  return { cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
}

/** Builds every component from the configuration and wires them; nothing listens until start(). */
export async function createApp(options: AppOptions): Promise<App> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const metrics = options.metrics ?? createMetrics();
  const stores: StoreSet = await createStores(config.stores);
  const catalog = createCatalog({
    config: config.catalog,
    signers: config.signers.map(toSignerSpec),
    upstreamSigners: config.upstreamSigners.map(toSignerSpec),
    attestors: config.attestors.map(toSignerSpec),
    baseDir: dirname(config.source),
    logger,
    metrics,
    clock,
  });
  const authenticator = createAuthenticator({
    issuers: config.issuers,
    serviceAccounts: config.serviceAccounts,
    tokenCacheEntries: config.identity.tokenCacheEntries,
    clock,
    logger,
  });
  const policy = createEnvironmentPolicy({ environments: config.environments, clock, metrics });
  const breakGlass = await createBreakGlassVerifier({ config: config.breakGlass, clock });
  const workers = config.transfer.hashWorkers;
  const hasher: Hasher =
    workers === false
      ? createInlineHasher()
      : createWorkerHasher(typeof workers === 'number' ? workers : undefined);
  const fetcher = createChunkFetcher({
    hasher,
    cacheBytes: config.transfer.chunkCacheBytes,
    maxBufferedBytes: config.transfer.maxBufferedBytes,
  });

  let active = 0;
  let draining = false;
  const idle: Array<() => void> = [];
  const admission = {
    tryAcquire() {
      if (active >= config.limits.maxConcurrentTransfers) return false;
      active++;
      return true;
    },
    release() {
      active--;
      if (active === 0) for (const wake of idle.splice(0)) wake();
    },
  };

  const handle = createHandler({
    catalog,
    authenticator,
    policy,
    breakGlass,
    stores,
    fetcher,
    transfer: config.transfer,
    metrics,
    logger,
    clock,
    admission,
    draining: () => draining,
  });

  const probes = createReadiness({
    configSource: config.source,
    catalog,
    catalogDir: config.catalog.dir,
    authenticator,
    stores,
    policy,
    draining: () => draining,
    logger,
    clock,
  });
  const readiness = (): ReadinessReport => probes.report();

  const serverOptions: ServerOptions = {
    maxHeaderSize: config.limits.maxHeaderBytes,
    headersTimeout: config.limits.headersTimeoutSeconds * 1000,
    // The request (headers; GET/HEAD have no body) must arrive within this; responses may take as long as they stream.
    requestTimeout: config.limits.headersTimeoutSeconds * 1000 + 1000,
    keepAliveTimeout: 5000,
    highWaterMark: DATA_HIGH_WATER_MARK,
  };
  const onRequest = (req: Parameters<typeof handle>[0], res: Parameters<typeof handle>[1]) => {
    handle(req, res).catch((error: unknown) => logger.error({ err: error }, 'unhandled request error'));
  };
  const tls = config.listen.tls;
  const data: Server = tls
    ? createHttpsServer({ ...serverOptions, ...readTls(tls) }, onRequest)
    : createHttpServer(serverOptions, onRequest);
  // Socket inactivity (a client that stops reading, or an idle keep-alive) closes the connection.
  data.setTimeout(config.limits.idleTimeoutSeconds * 1000, (socket) => socket.destroy());
  const admin = createHttpServer(
    { maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 15_000 },
    createAdminHandler({
      registry: metrics.registry,
      readiness,
      beforeScrape: () => policy.updateGauge(catalog.all().map((r) => r.environment)),
      ...(options.metricsText ? { metricsText: options.metricsText } : {}),
    }),
  );

  const reloadTls = () => {
    if (!tls) return;
    try {
      (data as unknown as { setSecureContext(o: object): void }).setSecureContext(readTls(tls));
      logger.info({ event: 'tls_reloaded', cert: tls.cert }, 'TLS certificate reloaded');
    } catch (error) {
      logger.error(
        { event: 'tls_reload_failed', err: String(error) },
        'TLS reload failed; keeping the previous certificate',
      );
    }
  };

  let webhook: AdmissionListener | undefined;
  return {
    metrics,
    catalog,
    authenticator,
    policy,
    fetcher,
    async start() {
      await Promise.all([catalog.start(), authenticator.start()]);
      // Probes the stores the loaded releases name; logs each failed check once, before listening.
      await probes.check();
      const environments = new Set(catalog.all().map((r) => r.environment));
      policy.updateGauge(environments);
      await listen(data, config.listen.port, config.listen.address);
      const withAdmin = options.adminListener !== false;
      if (withAdmin) await listen(admin, config.admin.port, config.admin.address);
      // Admission webhook (docs/admission.md).
      webhook = await startConfiguredAdmission({
        config,
        catalog,
        environments: policy,
        metrics,
        logger,
        clock,
      });
      if (tls) {
        // Polling survives the symlink swaps Kubernetes uses to update mounted secrets.
        watchFile(tls.cert, { interval: 5000, persistent: false }, reloadTls);
        watchFile(tls.key, { interval: 5000, persistent: false }, reloadTls);
      }
      return {
        dataUrl: urlOf(data, Boolean(tls)),
        adminUrl: withAdmin ? urlOf(admin, false) : '',
        ...(webhook ? { admissionUrl: webhook.url } : {}),
      };
    },
    async reload() {
      await catalog.reload();
      policy.updateGauge(catalog.all().map((r) => r.environment));
    },
    readiness,
    activeTransfers: () => active,
    async shutdown(graceSeconds = config.limits.shutdownGraceSeconds) {
      draining = true;
      catalog.stop();
      const closed = new Promise<void>((resolve) => data.close(() => resolve()));
      data.closeIdleConnections();
      if (active > 0) {
        await Promise.race([
          new Promise<void>((resolve) => idle.push(resolve)),
          new Promise<void>((resolve) => setTimeout(resolve, graceSeconds * 1000).unref()),
        ]);
      }
      const cut = active;
      data.closeAllConnections();
      await closed;
      await webhook?.close();
      if (admin.listening) {
        admin.closeAllConnections();
        await new Promise<void>((resolve) => admin.close(() => resolve()));
      }
      if (tls) {
        unwatchFile(tls.cert, reloadTls);
        unwatchFile(tls.key, reloadTls);
      }
      authenticator.close();
      await Promise.all([stores.close(), hasher.close()]);
      return cut;
    },
  };
}
