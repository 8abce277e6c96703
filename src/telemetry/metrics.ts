import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every metric of docs/metrics.md, in a registry created at start-up (never the global
 * one) so tests can read it. Label values come from configuration or fixed
 * sets, never raw request input: an unknown model is `model="unknown"`.
 */
export interface Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'outcome'>;
  readonly requestDuration: Histogram<'route' | 'outcome'>;
  readonly timeToFirstByte: Histogram<'store'>;
  readonly bytesServed: Counter<'store'>;
  readonly digestMismatches: Counter<'model' | 'environment' | 'store'>;
  readonly authFailures: Counter<'reason'>;
  readonly policyViolations: Counter<'environment' | 'violation' | 'mode'>;
  /** Program metrics (README "Metrics"): attestation completeness, exceptions, verified retrievals. */
  readonly attestationComplete: Gauge<'environment'>;
  readonly exceptionsActive: Gauge<'environment'>;
  readonly exceptionExpiry: Gauge<'id' | 'environment'>;
  readonly exceptionCreated: Gauge<'id' | 'environment'>;
  readonly exceptionRequests: Counter<'id'>;
  readonly retrievals: Counter<'environment' | 'ref' | 'verified'>;
  readonly breakGlassRequests: Counter<'incident' | 'service_account'>;
  readonly sourceRequests: Counter<'store' | 'outcome'>;
  readonly sourceRetries: Counter<'store' | 'reason'>;
  readonly inflightRequests: Gauge;
  readonly catalogReleases: Gauge<'environment'>;
  readonly catalogRejected: Counter<'reason'>;
  readonly signerRevoked: Gauge<'signer'>;
  readonly environmentEnforcing: Gauge<'environment'>;
  /** Admission reviews answered (docs/admission.md): result allowed|denied|warned, reason from a fixed set. */
  readonly admissionReviews: Counter<'environment' | 'result' | 'reason'>;
  readonly transferMemoryBytes: Gauge;
  readonly transferMemoryWaiting: Gauge;
  readonly slowClientsDropped: Counter<'reason'>;
  readonly hashWorkerRestarts: Counter;
  /** Bytes held by the verified disk cache; every worker reports the shared directory, so workers aggregate by max. */
  readonly cacheBytes: Gauge;
  /** Disk cache lookups: hit, miss, or corrupt (deleted, then treated as a miss). */
  readonly cacheRequests: Counter<'result'>;
  /** Bytes read from a source store (not the disk cache), by store. */
  readonly sourceBytes: Counter<'store'>;
  /** Bytes of chunks `POST …/prefetch` has warmed (read or found in the disk cache, verified). */
  readonly prefetchBytes: Counter;
}

/** Result label values of `modelgate_cache_requests_total`. */
export type CacheResult = 'hit' | 'miss' | 'corrupt';

/** Why a client was cut off for its pace: no socket progress for the idle timeout, or below the minimum rate. */
export type SlowClientReason = 'idle' | 'rate';

/** Route label values. */
export type Route = 'manifest' | 'file' | 'blob' | 'prefetch' | 'other';

/** Store label values: the configured store kinds, plus `none` before a source was chosen. */
export type StoreLabel = 's3' | 'gcs' | 'azure' | 'file' | 'cache' | 'none';

export interface CreateMetricsOptions {
  /** Collect Node's default process metrics (off in tests that compare whole expositions). */
  defaultMetrics?: boolean;
}

/** Requests, identity and the admission webhook. */
function requestMetrics(registers: Registry[]) {
  return {
    requests: new Counter({
      name: 'modelgate_requests_total',
      help: 'Requests by route and outcome.',
      labelNames: ['route', 'outcome'],
      registers,
    }),
    requestDuration: new Histogram({
      name: 'modelgate_request_duration_seconds',
      help: 'Time from request to the last byte sent (or the refusal).',
      labelNames: ['route', 'outcome'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800],
      registers,
    }),
    timeToFirstByte: new Histogram({
      name: 'modelgate_time_to_first_byte_seconds',
      help: 'Time from request to the first verified body byte sent, by store.',
      labelNames: ['store'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    bytesServed: new Counter({
      name: 'modelgate_bytes_served_total',
      help: 'Verified body bytes written to clients, by store.',
      labelNames: ['store'],
      registers,
    }),
    authFailures: new Counter({
      name: 'modelgate_auth_failures_total',
      help: 'Refused authentications by reason (error code).',
      labelNames: ['reason'],
      registers,
    }),
    breakGlassRequests: new Counter({
      name: 'modelgate_break_glass_requests_total',
      help: 'Requests served under a break-glass token.',
      labelNames: ['incident', 'service_account'],
      registers,
    }),
    inflightRequests: new Gauge({
      name: 'modelgate_inflight_requests',
      help: 'Requests being handled now.',
      registers,
    }),
    admissionReviews: new Counter({
      name: 'modelgate_admission_reviews_total',
      help: 'Pod admission reviews answered, by environment, result (allowed, denied, warned) and first reason.',
      labelNames: ['environment', 'result', 'reason'],
      registers,
    }),
  };
}

/** Bytes from the sources and the memory and pacing of transfers. */
function integrityMetrics(registers: Registry[]) {
  return {
    digestMismatches: new Counter({
      name: 'modelgate_digest_mismatches_total',
      help: 'Source bytes that did not match the signed manifest (file, chunk or size).',
      labelNames: ['model', 'environment', 'store'],
      registers,
    }),
    sourceRequests: new Counter({
      name: 'modelgate_source_requests_total',
      help: 'Reads sent to a source store, by outcome.',
      labelNames: ['store', 'outcome'],
      registers,
    }),
    sourceRetries: new Counter({
      name: 'modelgate_source_retries_total',
      help: 'Source reads sent again to the same location after a transient failure, by reason (throttled, server_error, connection, timeout).',
      labelNames: ['store', 'reason'],
      registers,
    }),
    transferMemoryBytes: new Gauge({
      name: 'modelgate_transfer_memory_bytes',
      help: 'Transfer memory reserved now (chunks read, hashed, sent or cached); at most transfer.maxBufferedBytes.',
      registers,
    }),
    transferMemoryWaiting: new Gauge({
      name: 'modelgate_transfer_memory_waiting',
      help: 'Reads and transfers waiting for transfer memory now.',
      registers,
    }),
    slowClientsDropped: new Counter({
      name: 'modelgate_slow_clients_dropped_total',
      help: 'Connections cut for their pace: idle (no socket progress for limits.idleTimeoutSeconds) or rate (below limits.minClientBytesPerSecond).',
      labelNames: ['reason'],
      registers,
    }),
    hashWorkerRestarts: new Counter({
      name: 'modelgate_hash_worker_restarts_total',
      help: 'Hash worker threads that died and were replaced.',
      registers,
    }),
  };
}

/** The catalog, signers and environments. */
function policyMetrics(registers: Registry[]) {
  return {
    policyViolations: new Counter({
      name: 'modelgate_policy_violations_total',
      help: 'Policy violations by environment, violation and mode (audit violations are served, enforce ones refused).',
      labelNames: ['environment', 'violation', 'mode'],
      registers,
    }),
    catalogReleases: new Gauge({
      name: 'modelgate_catalog_releases',
      help: 'Releases loaded in the catalog, by environment.',
      labelNames: ['environment'],
      registers,
    }),
    catalogRejected: new Counter({
      name: 'modelgate_catalog_rejected_total',
      help: 'Catalog files rejected at load, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    signerRevoked: new Gauge({
      name: 'modelgate_signer_revoked',
      help: '1 when the signer is revoked (its releases are rejected from the revocation instant on), else 0.',
      labelNames: ['signer'],
      registers,
    }),
    environmentEnforcing: new Gauge({
      name: 'modelgate_environment_enforcing',
      help: '1 when the environment enforces, 0 while it is in audit mode.',
      labelNames: ['environment'],
      registers,
    }),
  };
}

/** The verified disk cache and the bytes read from sources (docs/scaling.md). */
function cacheMetrics(registers: Registry[]) {
  return {
    cacheBytes: new Gauge({
      name: 'modelgate_cache_bytes',
      help: 'Bytes held by the verified disk cache (the shared directory, as this process last counted it).',
      aggregator: 'max',
      registers,
    }),
    cacheRequests: new Counter({
      name: 'modelgate_cache_requests_total',
      help: 'Verified disk cache lookups by result (hit, miss, corrupt: deleted and read from the source).',
      labelNames: ['result'],
      registers,
    }),
    sourceBytes: new Counter({
      name: 'modelgate_source_bytes_total',
      help: 'Bytes read from a source store (cloud or file), by store; cache hits are not counted.',
      labelNames: ['store'],
      registers,
    }),
    prefetchBytes: new Counter({
      name: 'modelgate_prefetch_bytes_total',
      help: 'Bytes of chunks prefetch jobs have warmed into the disk cache (read from a source or found there, verified).',
      registers,
    }),
  };
}

/** The integrity program: attestation completeness, exceptions, verified retrievals (docs/attestations.md). */
function programMetrics(registers: Registry[]) {
  return {
    attestationComplete: new Gauge({
      name: 'modelgate_catalog_attestation_complete',
      help: 'Releases in the catalog with every attestation their environment requires satisfied, by environment.',
      labelNames: ['environment'],
      registers,
    }),
    exceptionsActive: new Gauge({
      name: 'modelgate_exceptions_active',
      help: 'Policy exceptions in force now, by environment.',
      labelNames: ['environment'],
      registers,
    }),
    exceptionExpiry: new Gauge({
      name: 'modelgate_exception_expiry_timestamp_seconds',
      help: 'When each configured policy exception expires (Unix seconds).',
      labelNames: ['id', 'environment'],
      registers,
    }),
    exceptionCreated: new Gauge({
      name: 'modelgate_exception_created_timestamp_seconds',
      help: 'When each configured policy exception was created (Unix seconds); with the expiry, gives exception age.',
      labelNames: ['id', 'environment'],
      registers,
    }),
    exceptionRequests: new Counter({
      name: 'modelgate_exception_requests_total',
      help: 'Requests served only because a policy exception waived a violation, by exception id.',
      labelNames: ['id'],
      registers,
    }),
    retrievals: new Counter({
      name: 'modelgate_retrievals_total',
      help: 'Completed file retrievals by environment, reference kind (digest, version) and whether fully verified (admissible with no waiver, every byte matched).',
      labelNames: ['environment', 'ref', 'verified'],
      registers,
    }),
  };
}

export function createMetrics(options: CreateMetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    ...requestMetrics(registers),
    ...integrityMetrics(registers),
    ...policyMetrics(registers),
    ...programMetrics(registers),
    ...cacheMetrics(registers),
  };
}

/** Why a worker was replaced: it died before it was ready, or while serving (by a signal, or with an exit code). */
export type WorkerRestartReason = 'start_failed' | 'signal' | 'exit';

/** Supervisor states of a worker of `serve --workers N`. */
export type WorkerState = 'starting' | 'ready' | 'backoff';

/**
 * Metrics of the primary process of `serve --workers N`, in a registry of
 * their own: the primary exposes them beside the workers' aggregated metrics,
 * so no name may collide with those (no default process metrics here).
 */
export interface SupervisorMetrics {
  readonly registry: Registry;
  readonly workerRestarts: Counter<'reason'>;
  readonly workers: Gauge<'state'>;
}

export function createSupervisorMetrics(): SupervisorMetrics {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    workerRestarts: new Counter({
      name: 'modelgate_worker_restarts_total',
      help: 'Worker processes started to replace one that died, by how it died (start_failed, signal, exit).',
      labelNames: ['reason'],
      registers,
    }),
    workers: new Gauge({
      name: 'modelgate_workers',
      help: 'Worker processes by supervisor state: starting, ready (serving), backoff (dead, waiting to be replaced).',
      labelNames: ['state'],
      registers,
    }),
  };
}
