import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import { createCatalog } from '../catalog/catalog.ts';
import type { Catalog } from '../catalog/catalog.types.ts';
import type { Clock } from '../clock.ts';
import type { ModelgateConfig } from '../config/config.types.ts';
import { createAuthenticator } from '../identity/authenticator.ts';
import type { Authenticator } from '../identity/authenticator.types.ts';
import type { ChunkFetcher } from '../integrity/chunk-fetcher.ts';
import type { MemoryBudget } from '../integrity/memory-budget.ts';
import type { WholeFileCache } from '../integrity/transfer.ts';
import type { AdmissionPolicy } from '../policy/admissible.types.ts';
import { createBreakGlassVerifier } from '../policy/break-glass.ts';
import { createEnvironmentPolicy } from '../policy/environments.ts';
import type { EnvironmentPolicy } from '../policy/policy.types.ts';
import type { StoreSet } from '../stores/index.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { toSignerSpec } from '../trust/signer-config.ts';
import { createHandler } from './handler.ts';
import type { Prefetcher } from './prefetch.ts';
import { createReadiness, type Readiness } from './readiness.ts';
import { createReleaseGate } from './release-gate.ts';

/** What lives as long as the process: listeners' resources, stores, the integrity engine. */
export interface SharedParts {
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
  stores: StoreSet;
  fetcher: ChunkFetcher;
  budget: MemoryBudget;
  /** Warms the disk cache for `POST …/prefetch` (only with `cache:`); outlives reloads with the cache. */
  prefetcher?: Prefetcher;
  /** The verified disk cache for whole-file-mode files (only with `cache:`). */
  disk?: WholeFileCache;
  admission: { tryAcquire(): boolean; release(): void };
  draining(): boolean;
  /** Catalog changes at debug only (all workers of `serve --workers N` but the first). */
  quietCatalog?: boolean;
}

/**
 * Everything a configuration decides about trust and access: issuers and
 * service accounts, signers and the catalog they verify, environments,
 * attestations, exceptions, break-glass — and the request handler over them.
 * SIGHUP builds a new one from the reloaded file and swaps it in whole; a
 * request keeps the state it started with (README "Signals").
 */
export interface TrustState {
  readonly config: ModelgateConfig;
  readonly catalog: Catalog;
  readonly authenticator: Authenticator;
  readonly policy: EnvironmentPolicy;
  readonly releasePolicy: AdmissionPolicy;
  readonly probes: Readiness;
  /** Program gauges that depend on time and the catalog (before each scrape). */
  refreshGauges(): void;
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Loads keys and the catalog; throws (naming the file) when a key file is unusable. */
  start(): Promise<void>;
  /** Stops polling and key refreshes; requests still running finish. */
  stop(): void;
}

export async function buildTrustState(config: ModelgateConfig, shared: SharedParts): Promise<TrustState> {
  const { metrics, logger, clock } = shared;
  let gate: ReturnType<typeof createReleaseGate> | undefined;
  const catalog = createCatalog({
    config: config.catalog,
    signers: config.signers.map(toSignerSpec),
    upstreamSigners: config.upstreamSigners.map(toSignerSpec),
    attestors: config.attestors.map(toSignerSpec),
    baseDir: dirname(config.source),
    onScan: () => gate?.refresh(),
    quiet: shared.quietCatalog ?? false,
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
  const handle = createHandler({
    ...shared,
    catalog,
    authenticator,
    policy,
    releasePolicy,
    breakGlass,
    transfer: config.transfer,
    pacing: {
      minBytesPerSecond: config.limits.minClientBytesPerSecond,
      windowSeconds: config.limits.minClientRateWindowSeconds,
    },
  });
  const probes = createReadiness({
    configSource: config.source,
    catalog,
    catalogDir: config.catalog.dir,
    authenticator,
    stores: shared.stores,
    policy,
    draining: shared.draining,
    logger,
    clock,
  });
  return {
    config,
    catalog,
    authenticator,
    policy,
    releasePolicy,
    probes,
    handle,
    refreshGauges() {
      policy.updateGauge(catalog.all().map((r) => r.environment));
      gate?.refresh();
    },
    async start() {
      await Promise.all([catalog.start(), authenticator.start()]);
      policy.updateGauge(new Set(catalog.all().map((r) => r.environment)));
    },
    stop() {
      catalog.stop();
      authenticator.close();
    },
  };
}
