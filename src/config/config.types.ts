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
  /**
   * Slowest client read rate tolerated, measured only while the client owes a
   * read (a write is pending); below it over `minClientRateWindowSeconds` the
   * transfer is dropped. 0 disables the check (the idle timeout still applies).
   */
  minClientBytesPerSecond: number;
  /** Seconds of owed time the client rate is measured over. */
  minClientRateWindowSeconds: number;
}

export interface TransferConfig {
  /** Chunk reads in flight per chunk-mode transfer; memory per transfer ≈ readAhead × chunkSize. */
  readAhead: number;
  /** Bytes of verified chunks kept in memory and shared between concurrent callers (0 disables). */
  chunkCacheBytes: number;
  /**
   * Hard cap on transfer memory live in the process (chunks being read,
   * hashed, sent or cached, plus a fixed share per whole-file transfer);
   * reads wait for memory instead of going over it.
   */
  maxBufferedBytes: number;
  /** Longest wait for transfer memory before the first byte; then 503 MG_OVERLOADED with Retry-After. */
  memoryWaitSeconds: number;
  /** Hash on worker threads (true) or on the event loop (false). */
  hashWorkers: boolean | number;
  /** Retries of one piece after a broken or stalled source connection, before failing. */
  retries: number;
  /** First backoff in milliseconds; doubles on each retry. */
  retryBackoffMs: number;
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

export interface ModelgateConfig {
  /** Absolute path of the file this came from (for messages). */
  source: string;
  listen: ListenConfig;
  admin: AdminConfig;
  limits: LimitsConfig;
  transfer: TransferConfig;
  stores: StoresConfig;
  catalog: CatalogConfig;
  identity: IdentityConfig;
  issuers: IssuerConfig[];
  serviceAccounts: ServiceAccountConfig[];
  signers: SignerConfig[];
  environments: Record<string, EnvironmentConfig>;
  breakGlass?: BreakGlassConfig;
  logging: LoggingConfig;
}
