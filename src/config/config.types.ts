/** The validated, defaulted configuration (SPEC §6). Paths are absolute after loading. */

export interface TlsConfig {
  cert: string;
  key: string;
}

export interface ListenConfig {
  address: string;
  port: number;
  tls?: TlsConfig;
}

export interface AdminConfig {
  address: string;
  port: number;
}

export interface LimitsConfig {
  /** Concurrent file transfers before new ones get 503 + Retry-After. */
  maxConcurrentTransfers: number;
  /** Seconds a client may take to send its request headers (slowloris). */
  headersTimeoutSeconds: number;
  /** Seconds a connection may sit idle (keep-alive or a stalled reader) before it is closed. */
  idleTimeoutSeconds: number;
  /** Largest request header block in bytes; beyond it Node answers 431. */
  maxHeaderBytes: number;
  /** On SIGTERM/SIGINT: seconds transfers in flight get to finish before the process exits. */
  shutdownGraceSeconds: number;
}

export interface TransferConfig {
  /** Chunk reads in flight per chunk-mode transfer; memory per transfer ≈ readAhead × chunkSize. */
  readAhead: number;
  /** Bytes of verified chunks kept in memory and shared between concurrent callers (0 disables). */
  chunkCacheBytes: number;
  /** Live chunk memory (cache included) above which transfers stop reading ahead (soft limit). */
  maxBufferedBytes: number;
  /** Hash on worker threads (true) or on the event loop (false). */
  hashWorkers: boolean | number;
  /**
   * Retries of one piece (a chunk, or the rest of a whole file) on the same
   * source location after a transient failure — throttling (429, 503,
   * `SlowDown`…), a 500/502/504, a connection reset or refused, a stream that
   * broke or stalled — before failing over to the next mirror.
   */
  retries: number;
  /** Backoff ceiling of the first retry in milliseconds; doubles on each retry (full jitter: a random wait below it). */
  retryBackoffMs: number;
  /** Longest single backoff in milliseconds, `Retry-After` included. */
  retryBackoffMaxMs: number;
  /** Seconds one piece may spend failing (answers and backoff) before it stops retrying and only fails over. */
  retryBudgetSeconds: number;
}

export interface StoreTimeouts {
  connectSeconds: number;
  firstByteSeconds: number;
  idleSeconds: number;
}

export interface FileStoreConfig {
  root: string;
  timeouts: StoreTimeouts;
}

export interface S3StoreConfig {
  region: string;
  endpoint?: string;
  forcePathStyle: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  maxSockets: number;
  timeouts: StoreTimeouts;
}

export interface GcsStoreConfig {
  projectId?: string;
  apiEndpoint?: string;
  keyFilename?: string;
  maxSockets: number;
  timeouts: StoreTimeouts;
}

export interface AzureAccountConfig {
  endpoint?: string;
  connectionString?: string;
  accountKey?: string;
}

export interface AzureStoreConfig {
  accounts: Record<string, AzureAccountConfig>;
  maxSockets: number;
  timeouts: StoreTimeouts;
}

export interface StoresConfig {
  file?: FileStoreConfig;
  s3?: S3StoreConfig;
  gcs?: GcsStoreConfig;
  azure?: AzureStoreConfig;
}

export interface CatalogConfig {
  dir: string;
  pollSeconds: number;
}

export type JwsAlgorithm =
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512'
  | 'EdDSA';

export interface IssuerConfig {
  name: string;
  issuer: string;
  jwksUri?: string;
  jwksFile?: string;
  discovery: boolean;
  audiences: string[];
  algorithms: JwsAlgorithm[];
  clockToleranceSeconds: number;
  maxTokenLifetimeSeconds?: number;
  /** How long fetched keys are trusted before a refresh. */
  cacheSeconds: number;
  /** Minimum seconds between re-fetches triggered by an unknown `kid`. */
  cooldownSeconds: number;
  /** Timeout of one key or discovery fetch. */
  timeoutSeconds: number;
  /** Admission maps Pods' service accounts (`system:serviceaccount:<ns>:<sa>`) through this issuer's accounts. */
  kubernetes?: boolean;
}

export interface GrantConfig {
  models: string[];
  environments: string[];
}

export interface ServiceAccountConfig {
  name: string;
  issuer: string;
  subject: string;
  /** Dotted claim paths (e.g. `kubernetes.io.namespace`) that must equal these values exactly. */
  claims: Record<string, string | number | boolean>;
  grants: GrantConfig[];
}

export interface SignerConfig {
  name: string;
  jwksFile: string;
  environments: string[];
}

export interface EnvironmentConfig {
  mode: 'enforce' | 'audit';
  enforceFrom?: string;
  digestRefsOnly: boolean;
}

export interface BreakGlassConfig {
  jwksFile: string;
  maxTtlSeconds: number;
  incidentPattern: string;
}

export interface IdentityConfig {
  /** Verified tokens kept (by SHA-256) until their `exp`. */
  tokenCacheEntries: number;
}

export interface LoggingConfig {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
}

/** The admission webhook listener (docs/admission.md). */
export interface AdmissionConfig {
  address: string;
  port: number;
  /** Required; relative paths resolve against the configuration file's folder. Reloaded when the files change. */
  tls: TlsConfig;
  /** Deny (audit: warn about) Pods that reference no model. */
  requireModels: boolean;
}

/** The verified disk cache (SPEC §11, src/cache/): absent means no disk cache. */
export interface CacheConfig {
  /** Directory shared by the workers of one `serve` (a hostPath or local volume in node-local mode). */
  dir: string;
  /** Bytes kept on disk before least-recently-used entries are evicted (default 10 GiB). */
  maxBytes: number;
}

export interface ModelgateConfig {
  /** Absolute path of the file this came from (for messages). */
  source: string;
  listen: ListenConfig;
  admin: AdminConfig;
  limits: LimitsConfig;
  transfer: TransferConfig;
  cache?: CacheConfig;
  stores: StoresConfig;
  catalog: CatalogConfig;
  identity: IdentityConfig;
  issuers: IssuerConfig[];
  serviceAccounts: ServiceAccountConfig[];
  signers: SignerConfig[];
  environments: Record<string, EnvironmentConfig>;
  breakGlass?: BreakGlassConfig;
  admission?: AdmissionConfig;
  logging: LoggingConfig;
}
