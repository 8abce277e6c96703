import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every metric of SPEC §5, in a registry created at start-up (never the global
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
  /** Bytes held by the verified disk cache (SPEC §11); every worker reports the shared directory, so workers aggregate by max. */
  readonly cacheBytes: Gauge;
  /** Disk cache lookups: hit, miss, or corrupt (deleted, then treated as a miss). */
  readonly cacheRequests: Counter<'result'>;
  /** Bytes read from a source store (not the disk cache), by store. */
  readonly sourceBytes: Counter<'store'>;
}

/** Result label values of `modelgate_cache_requests_total`. */
export type CacheResult = 'hit' | 'miss' | 'corrupt';

/** Route label values. */
export type Route = 'manifest' | 'file' | 'blob' | 'other';

/** Store label values: the configured store kinds, plus `none` before a source was chosen. */
export type StoreLabel = 's3' | 'gcs' | 'azure' | 'file' | 'cache' | 'none';

export interface CreateMetricsOptions {
  /** Collect Node's default process metrics (off in tests that compare whole expositions). */
  defaultMetrics?: boolean;
}

export function createMetrics(options: CreateMetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
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
    digestMismatches: new Counter({
      name: 'modelgate_digest_mismatches_total',
      help: 'Source bytes that did not match the signed manifest (file, chunk or size).',
      labelNames: ['model', 'environment', 'store'],
      registers,
    }),
    authFailures: new Counter({
      name: 'modelgate_auth_failures_total',
      help: 'Refused authentications by reason (error code).',
      labelNames: ['reason'],
      registers,
    }),
    policyViolations: new Counter({
      name: 'modelgate_policy_violations_total',
      help: 'Policy violations by environment, violation and mode (audit violations are served, enforce ones refused).',
      labelNames: ['environment', 'violation', 'mode'],
      registers,
    }),
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
    breakGlassRequests: new Counter({
      name: 'modelgate_break_glass_requests_total',
      help: 'Requests served under a break-glass token.',
      labelNames: ['incident', 'service_account'],
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
    inflightRequests: new Gauge({
      name: 'modelgate_inflight_requests',
      help: 'Requests being handled now.',
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
    admissionReviews: new Counter({
      name: 'modelgate_admission_reviews_total',
      help: 'Pod admission reviews answered, by environment, result (allowed, denied, warned) and first reason.',
      labelNames: ['environment', 'result', 'reason'],
      registers,
    }),
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
  };
}
