import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Release } from '../../src/catalog/release.types.ts';
import type { Attestation } from '../../src/policy/attestations.ts';
import type { ExceptionConfig } from '../../src/policy/exceptions.ts';
import { formatPolicyReport } from '../../src/policy/report.ts';
import {
  environment,
  NOW,
  type PolicyConfig,
  policyConfig,
  policyWorld,
  SCAN,
  scanAttestation,
  scanRequirement,
  testRelease,
} from './policy-world.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const SBOM = 'https://spdx.dev/Document';

function exception(id: string, entry: Partial<ExceptionConfig>): ExceptionConfig {
  return {
    id,
    owner: 'ml-platform',
    justification: 'scanner outage',
    environment: 'prod',
    waive: ['scan'],
    created: new Date(NOW - DAY_MS).toISOString(),
    expires: new Date(NOW + 1.5 * DAY_MS).toISOString(),
    ...entry,
  };
}

/** The report for a config over releases and attestations, with the configured environments in config order. */
function report(
  config: PolicyConfig,
  releases: Release[],
  attestations: Attestation[] = [],
  now = NOW,
): string[] {
  const world = policyWorld(config, { releases, attestations });
  return formatPolicyReport({
    policy: world.policy,
    environments: Object.keys(config.environments),
    releases,
    exceptions: config.exceptions,
    now,
  });
}

/** `<model>@sha256:aaaaaaaaaaaa… (<version>)`: testRelease digests start with twelve a's. */
const shown = (release: Release) => `${release.model}@sha256:aaaaaaaaaaaa… (${release.version})`;

describe('formatPolicyReport', () => {
  describe('when every release of an environment is admissible', () => {
    it('prints only the counts, with the environment’s mode', () => {
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
      });
      const a = testRelease('llama');
      const b = testRelease('phi');
      assert.deepEqual(report(config, [a, b], [scanAttestation(a, 'pass'), scanAttestation(b, 'pass')]), [
        'environment prod (enforce): 2 releases, 2 admissible',
      ]);
    });
  });

  describe('when a release is not admissible', () => {
    it('names it and lists each blocking finding with its violation', () => {
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
      });
      const ok = testRelease('llama');
      const failed = testRelease('phi');
      const unsigned = testRelease('qwen', { trust: 'unsigned' });
      const lines = report(
        config,
        [ok, failed, unsigned],
        [scanAttestation(ok, 'pass'), scanAttestation(failed, 'fail')],
      );
      assert.equal(lines[0], 'environment prod (enforce): 3 releases, 1 admissible');
      assert.equal(lines[1], `  ${shown(failed)}: not admissible`);
      assert.match(lines[2] ?? '', /^ {4}- attestation_condition: .*predicate\.result equals "pass"/);
      assert.equal(lines[3], `  ${shown(unsigned)}: not admissible`);
      assert.match(lines[4] ?? '', /^ {4}- unsigned_release: /);
      assert.match(lines[5] ?? '', /^ {4}- attestation_missing: no scan attestation/);
      assert.equal(lines.length, 6);
    });
  });

  describe('when an audit environment serves what it would refuse', () => {
    it('shows the mode and still lists the release as not admissible', () => {
      const config = policyConfig({
        environments: { staging: environment({ mode: 'audit', requiredAttestations: [scanRequirement()] }) },
      });
      const release = testRelease('llama', { environment: 'staging' });
      const lines = report(config, [release]);
      assert.deepEqual(lines.slice(0, 2), [
        'environment staging (audit): 1 releases, 0 admissible',
        `  ${shown(release)}: not admissible`,
      ]);
    });
  });

  describe('when an exception makes a release admissible', () => {
    it('names the exception beside the release and shows the exception with its time left', () => {
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
        exceptions: [exception('EX-1', { models: ['mistral', 'mixtral-*'] })],
      });
      const release = testRelease('mistral');
      assert.deepEqual(report(config, [release]), [
        'environment prod (enforce): 1 releases, 1 admissible',
        `  ${shown(release)}: admissible under EX-1`,
        '  exception EX-1 (owner ml-platform) waives scan for mistral, mixtral-*: 1.5 days left',
      ]);
    });
  });

  describe('when exceptions are expired, not yet active, or scoped to one release', () => {
    it('says how long ago each expired, which have not started, and names the release scope', () => {
      const pinned = `llama@sha256:${'b'.repeat(64)}`;
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
        exceptions: [
          exception('EX-OLD', {
            models: ['phi'],
            waive: ['scan', 'unsigned'],
            created: new Date(NOW - 10 * DAY_MS).toISOString(),
            expires: new Date(NOW - 2.25 * DAY_MS).toISOString(),
          }),
          exception('EX-NEXT', {
            release: pinned,
            created: new Date(NOW + DAY_MS).toISOString(),
            expires: new Date(NOW + 3 * DAY_MS).toISOString(),
          }),
          exception('EX-NOW', { models: ['qwen'], created: new Date(NOW).toISOString() }),
          exception('EX-STAGING', { environment: 'staging', models: ['phi'] }),
        ],
      });
      const release = testRelease('phi');
      assert.deepEqual(report(config, [release]).slice(-3), [
        '  exception EX-OLD (owner ml-platform) waives scan, unsigned for phi: expired 2.3 days ago',
        `  exception EX-NEXT (owner ml-platform) waives scan for ${pinned}: not yet active`,
        '  exception EX-NOW (owner ml-platform) waives scan for qwen: 1.5 days left',
      ]);
      assert.equal(report(config, [release])[1], `  ${shown(release)}: not admissible`);
    });
  });

  describe('when an exception expires at the instant reported', () => {
    it('says it expired, as the register that no longer applies it does', () => {
      // The report said "0.0 days left" for an exception the policy had already stopped applying.
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
        exceptions: [exception('EX-END', { models: ['phi'], expires: new Date(NOW).toISOString() })],
      });
      const release = testRelease('phi');
      assert.deepEqual(report(config, [release]), [
        'environment prod (enforce): 1 releases, 0 admissible',
        `  ${shown(release)}: not admissible`,
        `    - attestation_missing: no scan attestation (${SCAN}) from scanner`,
        '  exception EX-END (owner ml-platform) waives scan for phi: expired 0.0 days ago',
      ]);
    });
  });

  describe('when two exceptions each waive part of what a release lacks', () => {
    it('names both beside the release', () => {
      const config = policyConfig({
        environments: {
          prod: environment({
            requiredAttestations: [scanRequirement(), { ...scanRequirement('sbom'), predicateType: SBOM }],
          }),
        },
        exceptions: [
          exception('EX-SCAN', { models: ['phi'] }),
          exception('EX-SBOM', { models: ['phi'], waive: ['sbom'] }),
        ],
      });
      const release = testRelease('phi');
      assert.equal(report(config, [release])[1], `  ${shown(release)}: admissible under EX-SCAN, EX-SBOM`);
    });
  });

  describe('when environments are configured with and without releases, and releases claim others', () => {
    it('prints configured environments in config order, then the others sorted, releases by model and version', () => {
      const config = policyConfig({
        environments: {
          staging: environment({ requiredAttestations: [scanRequirement()] }),
          dev: environment(),
        },
        exceptions: [exception('EX-DEV', { environment: 'dev', models: ['phi'] })],
      });
      const llama2 = testRelease('llama', { environment: 'staging', version: '2.0' });
      const phi = testRelease('phi', { environment: 'staging', version: '1.0' });
      const llama1 = testRelease('llama', { environment: 'staging', version: '1.0' });
      const zed = testRelease('zed', { environment: 'zz-canary' });
      const alpha = testRelease('alpha', { environment: 'alpha', trust: 'unsigned' });
      const lines = report(config, [llama2, phi, zed, llama1, alpha]);
      assert.deepEqual(
        lines.filter((line) => !line.startsWith('    ')),
        [
          'environment staging (enforce): 3 releases, 0 admissible',
          `  ${shown(llama1)}: not admissible`,
          `  ${shown(llama2)}: not admissible`,
          `  ${shown(phi)}: not admissible`,
          'environment dev: 0 releases, 0 admissible',
          '  exception EX-DEV (owner ml-platform) waives scan for phi: 1.5 days left',
          'environment alpha (enforce): 1 releases, 0 admissible',
          `  ${shown(alpha)}: not admissible`,
          'environment zz-canary (enforce): 1 releases, 1 admissible',
        ],
      );
    });
  });

  describe('when nothing is configured and the catalog is empty', () => {
    it('prints nothing', () => {
      assert.deepEqual(report(policyConfig(), []), []);
    });
  });
});
