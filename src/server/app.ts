import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerOptions,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
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
import { createMemoryBudget } from '../integrity/memory-budget.ts';
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
import { createReleaseGate } from './release-gate.ts';

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

/** How often Node checks header and request timeouts: a quarter of the headers timeout, at most 1 s, at least 10 ms. */
export function connectionsCheckingIntervalMs(headersTimeoutMs: number): number {
  return Math.max(10, Math.min(Math.floor(headersTimeoutMs / 4), 1000));
}

function readTls(tls: TlsConfig) {
  return { cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
}

/** SHA-256 on worker threads (replaced when they die, counted) or inline, as configured. */
function createHasher(config: ModelgateConfig, metrics: Metrics, logger: Logger): Hasher {
  const workers = config.transfer.hashWorkers;
  if (workers === false) return createInlineHasher();
  return createWorkerHasher({
    ...(typeof workers === 'number' ? { size: workers } : {}),
    onWorkerExit(reason) {
      metrics.hashWorkerRestarts.inc();
      logger.warn({ event: 'hash_worker_exit', reason }, 'hash worker died; replaced');
    },
  });
}

/** The data listener with its header, request and idle timeouts. */
function createDataServer(
  config: ModelgateConfig,
  metrics: Metrics,
  onRequest: (req: IncomingMessage, res: ServerResponse) => void,
): Server {
  const headersTimeoutMs = config.limits.headersTimeoutSeconds * 1000;
  const serverOptions: ServerOptions = {
    maxHeaderSize: config.limits.maxHeaderBytes,
    headersTimeout: headersTimeoutMs,
    // Node checks the headers timeout only this often (default 30 s): a slowloris connection lived until then.
    connectionsCheckingInterval: connectionsCheckingIntervalMs(headersTimeoutMs),
    // The request (headers; GET/HEAD have no body) must arrive within this; responses may take as long as they stream.
    requestTimeout: headersTimeoutMs + 1000,
    keepAliveTimeout: 5000,
    highWaterMark: DATA_HIGH_WATER_MARK,
  };
  // Sockets with a response under way: an idle timeout there cut a stalled reader, not an idle keep-alive.
  const inTransfer = new WeakSet<Socket>();
  const tracked = (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    inTransfer.add(socket);
    res.once('close', () => inTransfer.delete(socket));
    onRequest(req, res);
  };
  const tls = config.listen.tls;
  const data: Server = tls
    ? createHttpsServer({ ...serverOptions, ...readTls(tls) }, tracked)
    : createHttpServer(serverOptions, tracked);
  // Socket inactivity (a client that stops reading, or an idle keep-alive) closes the connection.
  // Writes go out in slices (response-target.ts), so a slow but steady reader shows activity.
  data.setTimeout(config.limits.idleTimeoutSeconds * 1000, (socket) => {
    if (inTransfer.has(socket)) metrics.slowClientsDropped.inc({ reason: 'idle' });
    socket.destroy();
  });
  return data;
}

/** Admission control for file transfers: at most `limit` at once (503 beyond, README "HTTP API"). */
function createAdmission(limit: number) {
  let active = 0;
  const idle: Array<() => void> = [];
  return {
    tryAcquire() {
      if (active >= limit) return false;
      active++;
      return true;
    },
    release() {
      active--;
      if (active === 0) for (const wake of idle.splice(0)) wake();
    },
    active: () => active,
    whenIdle: () => new Promise<void>((resolve) => idle.push(resolve)),
  };
}

function reloadCertificate(data: Server, tls: TlsConfig, logger: Logger) {
  try {
    (data as unknown as { setSecureContext(o: object): void }).setSecureContext(readTls(tls));
    logger.info({ event: 'tls_reloaded', cert: tls.cert }, 'TLS certificate reloaded');
  } catch (error) {
    logger.error(
      { event: 'tls_reload_failed', err: String(error) },
      'TLS reload failed; keeping the previous certificate',
    );
  }
}

/** Builds every component from the configuration and wires them; nothing listens until start(). */
export async function createApp(options: AppOptions): Promise<App> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const metrics = options.metrics ?? createMetrics();
  const stores: StoreSet = await createStores(config.stores);
  let gate: ReturnType<typeof createReleaseGate> | undefined;
  const catalog = createCatalog({
    config: config.catalog,
    signers: config.signers.map(toSignerSpec),
    upstreamSigners: config.upstreamSigners.map(toSignerSpec),
    attestors: config.attestors.map(toSignerSpec),
    baseDir: dirname(config.source),
    onScan: () => gate?.refresh(),
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
  gate = createReleaseGate({ config, catalog, environments: policy, metrics, logger, clock });
  const releasePolicy = gate.policy;
  const breakGlass = await createBreakGlassVerifier({ config: config.breakGlass, clock });
  const hasher = createHasher(config, metrics, logger);
  const budget = createMemoryBudget({
    maxBytes: config.transfer.maxBufferedBytes,
    observe: (inUseBytes, waiting) => {
      metrics.transferMemoryBytes.set(inUseBytes);
      metrics.transferMemoryWaiting.set(waiting);
    },
  });
  const fetcher = createChunkFetcher({ hasher, cacheBytes: config.transfer.chunkCacheBytes, budget });

  let draining = false;
  const admission = createAdmission(config.limits.maxConcurrentTransfers);

  const handle = createHandler({
    catalog,
    authenticator,
    policy,
    releasePolicy,
    breakGlass,
    stores,
    fetcher,
    budget,
    transfer: config.transfer,
    pacing: {
      minBytesPerSecond: config.limits.minClientBytesPerSecond,
      windowSeconds: config.limits.minClientRateWindowSeconds,
    },
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

  const tls = config.listen.tls;
  const data = createDataServer(config, metrics, (req, res) => {
    handle(req, res).catch((error: unknown) => logger.error({ err: error }, 'unhandled request error'));
  });
  const admin = createHttpServer(
    { maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 15_000 },
    createAdminHandler({
      registry: metrics.registry,
      readiness,
      beforeScrape: () => {
        policy.updateGauge(catalog.all().map((r) => r.environment));
        gate?.refresh();
      },
      ...(options.metricsText ? { metricsText: options.metricsText } : {}),
    }),
  );

  const reloadTls = () => {
    if (tls) reloadCertificate(data, tls, logger);
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
        policy: releasePolicy,
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
    activeTransfers: () => admission.active(),
    async shutdown(graceSeconds = config.limits.shutdownGraceSeconds) {
      draining = true;
      catalog.stop();
      const closed = new Promise<void>((resolve) => data.close(() => resolve()));
      data.closeIdleConnections();
      if (admission.active() > 0) {
        await Promise.race([
          admission.whenIdle(),
          new Promise<void>((resolve) => setTimeout(resolve, graceSeconds * 1000).unref()),
        ]);
      }
      const cut = admission.active();
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
