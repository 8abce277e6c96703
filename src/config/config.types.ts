import type { FromSchema } from './json-schema.types.ts';
import type { configSchema } from './schema.ts';

/**
 * The validated, defaulted configuration (README "Configuration"), derived
 * from the JSON Schema in schema.ts: the schema is the only place a field is
 * declared, with its default and description. Paths are absolute after
 * loading; `source` is the absolute path of the file it came from.
 */
export type ModelgateConfig = FromSchema<typeof configSchema> & { source: string };

export type ListenConfig = ModelgateConfig['listen'];
export type TlsConfig = NonNullable<ListenConfig['tls']>;
export type AdminConfig = ModelgateConfig['admin'];
export type LimitsConfig = ModelgateConfig['limits'];
export type TransferConfig = ModelgateConfig['transfer'];
export type StoresConfig = ModelgateConfig['stores'];
export type FileStoreConfig = NonNullable<StoresConfig['file']>;
export type S3StoreConfig = NonNullable<StoresConfig['s3']>;
export type GcsStoreConfig = NonNullable<StoresConfig['gcs']>;
export type AzureStoreConfig = NonNullable<StoresConfig['azure']>;
export type AzureAccountConfig = AzureStoreConfig['accounts'][string];
export type StoreTimeouts = FileStoreConfig['timeouts'];
export type CatalogConfig = ModelgateConfig['catalog'];
export type IdentityConfig = ModelgateConfig['identity'];
export type IssuerConfig = ModelgateConfig['issuers'][number];
export type JwsAlgorithm = IssuerConfig['algorithms'][number];
export type ServiceAccountConfig = ModelgateConfig['serviceAccounts'][number];
export type GrantConfig = ServiceAccountConfig['grants'][number];
export type SignerConfig = ModelgateConfig['signers'][number];
export type EnvironmentConfig = ModelgateConfig['environments'][string];
export type BreakGlassConfig = NonNullable<ModelgateConfig['breakGlass']>;
export type LoggingConfig = ModelgateConfig['logging'];
export type AdmissionConfig = NonNullable<ModelgateConfig['admission']>;
