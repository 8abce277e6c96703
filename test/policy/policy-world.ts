import type { Manifest, Release, ReleaseTrust } from '../../src/catalog/release.types.ts';
import type { Attestation } from '../../src/policy/attestations.ts';
import { buildReleasePolicy, type compileGates } from '../../src/policy/build-policy.ts';
import { createEnvironmentPolicy } from '../../src/policy/environments.ts';

/** The policy part of a configuration, as compileGates and buildReleasePolicy take it. */
export type PolicyConfig = Parameters<typeof compileGates>[0];
type EnvironmentEntry = PolicyConfig['environments'][string];

export const NOW = Date.parse('2026-11-25T12:00:00Z');
export const SCAN = 'https://modelgate.dev/attestation/scan/v1';

/** An environment entry with the schema's defaults (enforce, digest refs only, nothing required). */
export function environment(entry: Partial<EnvironmentEntry> = {}): EnvironmentEntry {
  return { mode: 'enforce', digestRefsOnly: true, requiredAttestations: [], ...entry };
}

/** A required scan attestation from `scanner` whose result must be pass. */
export function scanRequirement(name = 'scan'): EnvironmentEntry['requiredAttestations'][number] {
  return {
    name,
    predicateType: SCAN,
    attestors: ['scanner'],
    conditions: [{ path: 'predicate.result', equals: 'pass' }],
  };
}

/** A policy config with the schema's defaults for what is not given. */
export function policyConfig(config: Partial<PolicyConfig> = {}): PolicyConfig {
  return {
    attestors: [
      { name: 'ci', jwksFile: '/keys/ci.jwks.json' },
      { name: 'scanner', jwksFile: '/keys/scanner.jwks.json' },
    ],
    environments: {},
    exceptions: [],
    exceptionMaxDays: 30,
    ...config,
  } as PolicyConfig;
}

let counter = 0;

/** A distinct 64-hex release digest on every call. */
export function nextDigest(): string {
  counter += 1;
  return `sha256:${counter.toString(16).padStart(64, 'a')}`;
}

/** A verified, trusted in-memory release (a fresh digest and version each call unless given). */
export function testRelease(
  model: string,
  options: {
    environment?: string;
    version?: string;
    parent?: string;
    trust?: ReleaseTrust;
    digest?: string;
    signer?: string;
  } = {},
): Release {
  const digest = options.digest ?? nextDigest();
  const manifest: Manifest = {
    schema: 'modelgate/release/v1',
    model,
    version: options.version ?? `v${counter}`,
    environment: options.environment ?? 'prod',
    created: '2026-11-25T10:00:00Z',
    files: [],
  };
  if (options.parent !== undefined) manifest.parent = options.parent;
  return {
    model,
    version: manifest.version,
    environment: manifest.environment,
    digest,
    payload: Buffer.from('{}'),
    manifest,
    signer: options.signer ?? 'ci',
    trust: options.trust ?? 'trusted',
    sourceFile: `/catalog/${model}.jws`,
    files: new Map(),
  };
}

/** A scan attestation about `subject` with the given result. */
export function scanAttestation(subject: Release, result: string, attestor = 'scanner'): Attestation {
  return {
    release: subject.digest,
    predicateType: SCAN,
    statement: {
      _type: 'https://in-toto.io/Statement/v1',
      subject: [],
      predicateType: SCAN,
      predicate: { result },
    },
    attestor,
    identity: attestor,
    file: `/catalog/attestations/${attestor}.json`,
  };
}

/** The release policy of a config over an in-memory catalog, as serving builds it. */
export function policyWorld(
  config: PolicyConfig,
  catalog: { releases?: Release[]; attestations?: Attestation[] } = {},
) {
  const releases = catalog.releases ?? [];
  const attestations = catalog.attestations ?? [];
  const environments = createEnvironmentPolicy({ environments: config.environments, clock: () => NOW });
  const built = buildReleasePolicy(config, environments, {
    attestations: () => ({ forRelease: (digest) => attestations.filter((a) => a.release === digest) }),
    byDigest: (digest) => releases.find((r) => r.digest === digest),
  });
  return { ...built, releases, attestations };
}
