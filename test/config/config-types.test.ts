import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type {
  EnvironmentConfig,
  IssuerConfig,
  ModelgateConfig,
  S3StoreConfig,
  ServiceAccountConfig,
  TransferConfig,
} from '../../src/config/config.types.ts';
import { parseConfig } from '../../src/config/load.ts';

// Type-level checks: `npm run typecheck` fails when the types derived from the schema drift from what
// the code relies on (a defaulted field turning optional, an enum widening to string, a field lost).
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;

export type Checks = [
  Expect<Equal<IssuerConfig['name'], string>>,
  Expect<Equal<IssuerConfig['jwksFile'], string | undefined>>,
  Expect<Equal<IssuerConfig['discovery'], boolean>>,
  Expect<Equal<IssuerConfig['maxTokenLifetimeSeconds'], number | undefined>>,
  Expect<
    Equal<
      IssuerConfig['algorithms'][number],
      'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA'
    >
  >,
  Expect<Equal<TransferConfig['hashWorkers'], boolean | number>>,
  Expect<Equal<TransferConfig['readAhead'], number>>,
  Expect<Equal<EnvironmentConfig['mode'], 'enforce' | 'audit'>>,
  Expect<Equal<EnvironmentConfig['enforceFrom'], string | undefined>>,
  Expect<Equal<ServiceAccountConfig['claims'], Record<string, string | number | boolean>>>,
  Expect<
    Equal<
      S3StoreConfig['credentials'],
      { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined
    >
  >,
  Expect<
    Equal<
      ModelgateConfig['logging']['level'],
      'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'
    >
  >,
  Expect<Equal<ModelgateConfig['source'], string>>,
];

describe('configuration types derived from the schema', () => {
  it('describe what the loader returns: every defaulted field is present', () => {
    const config: ModelgateConfig = parseConfig(
      `catalog: { dir: ./r }
issuers: [{ name: a, issuer: "https://i", jwksFile: k.json, audiences: [m], algorithms: [ES256] }]
serviceAccounts: []
`,
      '/x/m.yaml',
      {},
    );
    const defaulted: Array<[string, unknown]> = [
      ['listen.port', config.listen.port],
      ['limits.maxConcurrentTransfers', config.limits.maxConcurrentTransfers],
      ['transfer.hashWorkers', config.transfer.hashWorkers],
      ['issuers[0].discovery', config.issuers[0]?.discovery],
      ['issuers[0].cacheSeconds', config.issuers[0]?.cacheSeconds],
      ['logging.level', config.logging.level],
    ];
    for (const [path, value] of defaulted) assert.notEqual(value, undefined, path);
  });
});
