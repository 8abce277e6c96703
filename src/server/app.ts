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
import { type AdmissionListener, startConfiguredAdmission } from '../admission/listener.ts';
import { type ChunkCache, createChunkCache } from '../cache/index.ts';
import type { Catalog } from '../catalog/catalog.types.ts';
import { type Clock, systemClock } from '../clock.ts';
import type { ModelgateConfig, TlsConfig } from '../config/config.types.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { Authenticator } from '../identity/authenticator.types.ts';
import { type ChunkFetcher, createChunkFetcher } from '../integrity/chunk-fetcher.ts';
import { createInlineHasher, createWorkerHasher, type Hasher } from '../integrity/hasher.ts';
import { createMemoryBudget, type MemoryBudget } from '../integrity/memory-budget.ts';
import type { EnvironmentPolicy } from '../policy/policy.types.ts';
import { createStores, type StoreSet } from '../stores/index.ts';
import type { Logger } from '../telemetry/logger.ts';
import { createMetrics, type Metrics } from '../telemetry/metrics.ts';
import { type AdminDeps, createAdminHandler, type ReadinessReport } from './admin.ts';
import { createPrefetcher } from './prefetch.ts';
import { buildTrustState, type SharedParts, type TrustState } from './trust-state.ts';

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
  /** True in all workers but the first: catalog changes are logged once, not once per worker. */
  quietCatalog?: boolean;
}

/** What a SIGHUP reload did. */
export interface ConfigReloadResult {
  applied: boolean;
  /** Why it was refused (each names the field or file). */
  problems: string[];
  /** Changed sections a running process cannot apply (listeners, stores, …). */
  needsRestart?: string[];
}

export interface App {
  readonly metrics: Metrics;
  readonly catalog: Catalog;
  readonly authenticator: Authenticator;
  readonly policy: EnvironmentPolicy;
  readonly fetcher: ChunkFetcher;
  /** Listens on every listener; resolves with their URLs (`admissionUrl` when `admission:` is configured). */
  start(): Promise<{ dataUrl: string; adminUrl: string; admissionUrl?: string }>;
  /** Re-scans the catalog (the poll, or a reload that found the configuration unchanged). */
  reload(): Promise<void>;
  /**
   * SIGHUP: reloads the whole configuration file. An invalid file (or an
   * unreadable key file) changes nothing; a valid one replaces identities,
   * signers, the catalog, environments and exceptions for new requests while
   * requests in flight finish under the configuration they started with.
   */
  reloadConfig(): Promise<ConfigReloadResult>;
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

/** The verified disk cache (`cache:`), hashed on the engine's hash workers; undefined when not configured. */
async function openDiskCache(
  config: ModelgateConfig,
  hasher: Hasher,
  metrics: Metrics,
  logger: Logger,
): Promise<ChunkCache | undefined> {
  if (!config.cache) return undefined;
  return createChunkCache({
    dir: config.cache.dir,
    maxBytes: config.cache.maxBytes,
    metrics,
    logger,
    hash: async (bytes, { owned }) => {
      const hashed = await hasher.digest(bytes, { owned });
      return { hex: hashed.digest.toString('hex'), bytes: hashed.data };
    },
  });
}

/** The chunk fetcher over the disk cache (`cache:`), and the prefetcher that warms it. */
async function createReadPath(
  config: ModelgateConfig,
  parts: { hasher: Hasher; budget: MemoryBudget; stores: StoreSet; metrics: Metrics; logger: Logger },
) {
  const { hasher, budget, stores, metrics, logger } = parts;
  const disk = await openDiskCache(config, hasher, metrics, logger);
  const fetcher = createChunkFetcher({
    hasher,
    cacheBytes: config.transfer.chunkCacheBytes,
    budget,
    ...(disk ? { disk } : {}),
  });
  const prefetcher =
    disk && config.cache
      ? createPrefetcher({
          dir: config.cache.dir,
          fetcher,
          stores,
          transfer: config.transfer,
          metrics,
          logger,
        })
      : undefined;
  return { disk, fetcher, prefetcher };
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

/** Settings a SIGHUP cannot change in a running process (listeners, stores, the integrity engine). */
const RESTART_ONLY = [
  'listen',
  'admin',
  'admission',
  'stores',
  'transfer',
  'cache',
  'limits',
  'workers',
] as const;

/** Which restart-only sections differ between two configurations. */
function restartOnlyChanges(before: ModelgateConfig, after: ModelgateConfig): string[] {
  return RESTART_ONLY.filter((key) => JSON.stringify(before[key]) !== JSON.stringify(after[key]));
}

/**
 * Validates the configuration file again and, when it is valid, builds and
 * starts the new trust state (keys, catalog, policy) beside the current one.
 * An invalid file, or a key file that cannot be read, is refused and logged.
 */
async function prepareReload(
  current: TrustState,
  shared: SharedParts,
): Promise<ConfigReloadResult | { candidate: TrustState; needsRestart: string[] }> {
  const { logger } = shared;
  let next: ModelgateConfig;
  try {
    next = loadConfig(current.config.source);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    logger.error(
      { event: 'config_reload_refused', problems: error.problems },
      'SIGHUP: the configuration is invalid; the previous configuration keeps serving',
    );
    return { applied: false, problems: error.problems.map((p) => `${p.path}: ${p.message}`) };
  }
  let candidate: TrustState;
  try {
    candidate = await buildTrustState(next, shared);
    await candidate.start();
  } catch (error) {
    logger.error(
      { event: 'config_reload_refused', err: error },
      'SIGHUP: the new configuration cannot be loaded; the previous configuration keeps serving',
    );
    return { applied: false, problems: [error instanceof Error ? error.message : String(error)] };
  }
  const needsRestart = restartOnlyChanges(current.config, next);
  if (needsRestart.length > 0) {
    logger.warn(
      { event: 'config_reload_partial', needsRestart },
      `SIGHUP: changes to ${needsRestart.join(', ')} take effect only after a restart`,
    );
  }
  return { candidate, needsRestart };
}

/** Builds every component from the configuration and wires them; nothing listens until start(). */
export async function createApp(options: AppOptions): Promise<App> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const metrics = options.metrics ?? createMetrics();
  const stores: StoreSet = await createStores(config.stores);
  const hasher = createHasher(config, metrics, logger);
  const budget = createMemoryBudget({
    maxBytes: config.transfer.maxBufferedBytes,
    observe: (inUseBytes, waiting) => {
      metrics.transferMemoryBytes.set(inUseBytes);
      metrics.transferMemoryWaiting.set(waiting);
    },
  });
  const { disk, fetcher, prefetcher } = await createReadPath(config, {
    hasher,
    budget,
    stores,
    metrics,
    logger,
  });
  let draining = false;
  const admission = createAdmission(config.limits.maxConcurrentTransfers);
  const shared: SharedParts = {
    metrics,
    logger,
    clock,
    stores,
    fetcher,
    budget,
    ...(prefetcher ? { prefetcher } : {}),
    ...(disk ? { disk } : {}),
    admission,
    draining: () => draining,
    quietCatalog: options.quietCatalog ?? false,
  };
  // Swapped whole by reloadConfig(); each request reads it once, when it arrives.
  let state = await buildTrustState(config, shared);

  const tls = config.listen.tls;
  const data = createDataServer(config, metrics, (req, res) => {
    state.handle(req, res).catch((error: unknown) => logger.error({ err: error }, 'unhandled request error'));
  });
  const admin = createHttpServer(
    { maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 15_000 },
    createAdminHandler({
      registry: metrics.registry,
      readiness: () => state.probes.report(),
      beforeScrape: () => state.refreshGauges(),
      ...(options.metricsText ? { metricsText: options.metricsText } : {}),
    }),
  );
  const reloadTls = () => {
    if (tls) reloadCertificate(data, tls, logger);
  };

  let webhook: AdmissionListener | undefined;
  const admissionDeps = (s: TrustState) => ({
    catalog: s.catalog,
    policy: s.releasePolicy,
    environments: s.policy,
    issuers: s.config.issuers,
    serviceAccounts: s.config.serviceAccounts,
  });

  /** SIGHUP (README "Signals"): a valid file becomes the new trust state; anything else changes nothing. */
  async function reloadConfig(): Promise<ConfigReloadResult> {
    const prepared = await prepareReload(state, shared);
    if ('applied' in prepared) return prepared;
    const previous = state;
    state = prepared.candidate;
    webhook?.update(admissionDeps(state));
    previous.stop();
    logger.info(
      { event: 'config_reloaded', releases: state.catalog.all().length },
      'SIGHUP: configuration reloaded',
    );
    return { applied: true, problems: [], needsRestart: prepared.needsRestart };
  }

  return {
    metrics,
    get catalog() {
      return state.catalog;
    },
    get authenticator() {
      return state.authenticator;
    },
    get policy() {
      return state.policy;
    },
    fetcher,
    async start() {
      await state.start();
      // Probes the stores the loaded releases name; logs each failed check once, before listening.
      await state.probes.check();
      await listen(data, config.listen.port, config.listen.address);
      const withAdmin = options.adminListener !== false;
      if (withAdmin) await listen(admin, config.admin.port, config.admin.address);
      // Admission webhook (docs/admission.md).
      webhook = await startConfiguredAdmission({ config, ...admissionDeps(state), metrics, logger, clock });
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
      await state.catalog.reload();
      state.refreshGauges();
    },
    reloadConfig,
    readiness: () => state.probes.report(),
    activeTransfers: () => admission.active(),
    async shutdown(graceSeconds = config.limits.shutdownGraceSeconds) {
      draining = true;
      state.catalog.stop();
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
      state.stop();
      // Chunks already sent may still be on their way to the disk cache: finish them (and their claims) first.
      await fetcher.flush();
      await Promise.all([stores.close(), hasher.close(), disk?.close()]);
      return cut;
    },
  };
}
