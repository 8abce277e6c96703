import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildReleasePolicy, compileGates, exceptionConfigProblems } from '../../src/policy/build-policy.ts';
import { createEnvironmentPolicy } from '../../src/policy/environments.ts';
import type { ExceptionConfig } from '../../src/policy/exceptions.ts';
import {
  environment,
  NOW,
  policyConfig,
  policyWorld,
  SCAN,
  scanAttestation,
  scanRequirement,
  testRelease,
} from './policy-world.ts';

const PROVENANCE = 'https://slsa.dev/provenance/v1';

function exception(entry: Partial<ExceptionConfig> = {}): ExceptionConfig {
  return {
    id: 'EX-1',
    owner: 'ml-platform',
    justification: 'scanner outage',
    environment: 'prod',
    models: ['llama-*'],
    waive: ['scan'],
    created: '2026-11-20T00:00:00Z',
    expires: '2026-12-01T00:00:00Z',
    ...entry,
  };
}

describe('compileGates', () => {
  describe('when every environment is well formed', () => {
    const config = policyConfig({
      environments: {
        prod: environment({
          requiredAttestations: [
            scanRequirement(),
            { name: 'provenance', predicateType: PROVENANCE, attestors: ['ci'], conditions: [] },
          ],
          lineage: { requireParentFor: ['*-int8'], parentEnvironments: ['prod', 'staging'] },
        }),
        staging: environment({ lineage: { requireParentFor: ['*-int8'] } }),
        dev: environment(),
      },
    });
    const { gates, problems } = compileGates(config);

    it('reports no problems and compiles a gate per environment', () => {
      assert.deepEqual(problems, []);
      assert.deepEqual([...gates.keys()], ['prod', 'staging', 'dev']);
    });

    it('keeps each requirement in order, with its predicate type, attestors and compiled conditions', () => {
      const required = gates.get('prod')?.requiredAttestations ?? [];
      assert.deepEqual(
        required.map((r) => [r.name, r.predicateType, r.attestors, r.conditions.length]),
        [
          ['scan', SCAN, ['scanner'], 1],
          ['provenance', PROVENANCE, ['ci'], 0],
        ],
      );
      const [condition] = required[0]?.conditions ?? [];
      assert.equal(condition?.test({ predicate: { result: 'pass' } }), true);
      assert.equal(condition?.test({ predicate: { result: 'fail' } }), false);
    });

    it('keeps the configured lineage parent environments', () => {
      assert.deepEqual(gates.get('prod')?.lineage, {
        requireParentFor: ['*-int8'],
        parentEnvironments: ['prod', 'staging'],
      });
    });

    it('defaults the lineage parent environments to the environment itself', () => {
      assert.deepEqual(gates.get('staging')?.lineage, {
        requireParentFor: ['*-int8'],
        parentEnvironments: ['staging'],
      });
    });

    it('gives an environment without lineage no lineage gate and no requirements', () => {
      assert.deepEqual(gates.get('dev'), { requiredAttestations: [] });
    });
  });

  describe('when two requirements share a name', () => {
    it('reports the second one at its name field', () => {
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement(), scanRequirement()] }) },
      });
      assert.deepEqual(compileGates(config).problems, [
        {
          path: 'environments.prod.requiredAttestations[1].name',
          message: 'duplicate attestation name scan',
        },
      ]);
    });
  });

  describe('when a requirement names an attestor that is not configured', () => {
    it('reports the attestor field and lists the configured attestors', () => {
      const config = policyConfig({
        environments: {
          prod: environment({
            requiredAttestations: [{ ...scanRequirement(), attestors: ['scanner', 'auditor'] }],
          }),
        },
      });
      assert.deepEqual(compileGates(config).problems, [
        {
          path: 'environments.prod.requiredAttestations[0].attestors[1]',
          message: 'no attestor named auditor (configured: ci, scanner)',
        },
      ]);
    });

    it('says none when no attestor is configured', () => {
      const config = policyConfig({
        attestors: [],
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
      });
      assert.deepEqual(compileGates(config).problems, [
        {
          path: 'environments.prod.requiredAttestations[0].attestors[0]',
          message: 'no attestor named scanner (configured: none)',
        },
      ]);
    });
  });

  describe('when a condition is malformed', () => {
    const config = policyConfig({
      environments: {
        prod: environment({
          requiredAttestations: [
            {
              ...scanRequirement(),
              conditions: [
                { path: 'predicate.result', equals: 'pass' },
                { path: 'predicate..result', equals: 'pass' },
                { path: 'predicate.result', frobs: 1 } as never,
              ],
            },
          ],
        }),
      },
    });
    const { gates, problems } = compileGates(config);

    it('reports each bad condition at its field, without repeating the field in the message', () => {
      assert.deepEqual(problems, [
        {
          path: 'environments.prod.requiredAttestations[0].conditions[1].path',
          message:
            'expected a dot path of names with optional [*] or [N], got "predicate..result" (bad segment "")',
        },
        {
          path: 'environments.prod.requiredAttestations[0].conditions[2].frobs',
          message: 'unknown operator; expected one of equals, in, matches, exists, absent',
        },
      ]);
    });

    it('still compiles the good conditions of the requirement', () => {
      assert.equal(gates.get('prod')?.requiredAttestations[0]?.conditions.length, 1);
    });
  });

  describe('when compiling a condition fails for a reason other than the configuration', () => {
    it('throws that error instead of reporting it as a problem', () => {
      // JSON.stringify cannot serialise a BigInt: a programming error, not a config problem.
      const config = policyConfig({
        environments: {
          prod: environment({
            requiredAttestations: [
              { ...scanRequirement(), conditions: [{ path: 'predicate.n', equals: 1n }] },
            ],
          }),
        },
      });
      assert.throws(() => compileGates(config), { name: 'TypeError', message: /BigInt/ });
    });
  });
});

describe('exceptionConfigProblems', () => {
  describe('when the register is valid', () => {
    it('reports nothing, accepting waivers named after the environment’s required attestations', () => {
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
        exceptions: [exception(), exception({ id: 'EX-2', waive: ['unsigned'] })],
      });
      assert.deepEqual(exceptionConfigProblems(config), []);
    });
  });

  describe('when entries are incomplete', () => {
    it('splits each problem into its field path and message', () => {
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
        exceptions: [exception({ owner: ' ', release: `llama@sha256:${'b'.repeat(64)}` })],
      });
      assert.deepEqual(exceptionConfigProblems(config), [
        { path: 'exceptions[0].owner', message: 'every exception needs an owner' },
        { path: 'exceptions[0]', message: 'expected exactly one of release or models' },
      ]);
    });

    it('applies exceptionMaxDays', () => {
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
        exceptionMaxDays: 5,
        exceptions: [exception()],
      });
      assert.deepEqual(exceptionConfigProblems(config), [
        {
          path: 'exceptions[0].expires',
          message: 'expected at most exceptionMaxDays (5) after created, got 11.0 days',
        },
      ]);
    });
  });

  describe('when an exception waives an attestation its environment does not require', () => {
    it('lists the environment’s required attestations', () => {
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
        exceptions: [exception({ waive: ['sbom'] })],
      });
      assert.deepEqual(exceptionConfigProblems(config), [
        {
          path: 'exceptions[0].waive[0]',
          message:
            '"sbom" is neither a required attestation of prod (scan) nor one of unsigned, untrusted_signer, lineage, upstream_unverified',
        },
      ]);
    });

    it('says none for an environment that is not configured', () => {
      const config = policyConfig({
        environments: { prod: environment({ requiredAttestations: [scanRequirement()] }) },
        exceptions: [exception({ environment: 'staging' })],
      });
      assert.deepEqual(exceptionConfigProblems(config), [
        {
          path: 'exceptions[0].waive[0]',
          message:
            '"scan" is neither a required attestation of staging (none) nor one of unsigned, untrusted_signer, lineage, upstream_unverified',
        },
      ]);
    });
  });
});

describe('buildReleasePolicy', () => {
  const config = policyConfig({
    environments: {
      prod: environment({
        requiredAttestations: [scanRequirement()],
        lineage: { requireParentFor: ['*-int8'] },
      }),
    },
    exceptions: [exception({ models: ['mistral'] })],
  });

  describe('when a release has the attestations its environment requires', () => {
    it('is admissible, judged by the catalog’s attestations', () => {
      const release = testRelease('llama');
      const world = policyWorld(config, {
        releases: [release],
        attestations: [scanAttestation(release, 'pass')],
      });
      const decision = world.policy.decide({ release, environment: 'prod', now: NOW, refIsVersion: false });
      assert.equal(decision.admissible, true);
      assert.deepEqual(decision.findings, []);
    });
  });

  describe('when a release lacks a required attestation', () => {
    it('is refused for the configured requirement', () => {
      const release = testRelease('llama');
      const world = policyWorld(config, {
        releases: [release],
        attestations: [scanAttestation(release, 'fail')],
      });
      const decision = world.policy.decide({ release, environment: 'prod', now: NOW, refIsVersion: false });
      assert.equal(decision.admissible, false);
      assert.deepEqual(
        decision.blocking.map((f) => [f.violation, f.requirement]),
        [['attestation_condition', 'scan']],
      );
    });

    it('is admissible under a configured exception that covers it', () => {
      const release = testRelease('mistral');
      const world = policyWorld(config, { releases: [release] });
      const decision = world.policy.decide({ release, environment: 'prod', now: NOW, refIsVersion: false });
      assert.equal(decision.admissible, true);
      assert.deepEqual(decision.exceptions, ['EX-1']);
      assert.deepEqual(
        world.exceptions.active(NOW).map((e) => e.id),
        ['EX-1'],
      );
    });
  });

  describe('when a release names a parent in the catalog', () => {
    it('decides lineage against the catalog’s releases', () => {
      const parent = testRelease('llama');
      const child = testRelease('llama-int8', { parent: parent.digest });
      const provenance = {
        ...scanAttestation(child, 'pass', 'ci'),
        predicateType: PROVENANCE,
        statement: {
          predicate: {
            buildDefinition: { resolvedDependencies: [{ digest: { sha256: parent.digest.slice(7) } }] },
          },
        },
      };
      const world = policyWorld(config, {
        releases: [parent, child],
        attestations: [scanAttestation(parent, 'pass'), scanAttestation(child, 'pass'), provenance],
      });
      const decision = world.policy.decide({
        release: child,
        environment: 'prod',
        now: NOW,
        refIsVersion: false,
      });
      assert.deepEqual(decision.blocking, []);
      assert.deepEqual(decision.lineage, [child.digest, parent.digest]);
    });

    it('refuses the child when the parent is missing from the catalog', () => {
      const parent = testRelease('llama');
      const child = testRelease('llama-int8', { parent: parent.digest });
      const provenance = {
        ...scanAttestation(child, 'pass', 'ci'),
        predicateType: PROVENANCE,
        statement: {
          predicate: {
            buildDefinition: { resolvedDependencies: [{ digest: { sha256: parent.digest.slice(7) } }] },
          },
        },
      };
      const world = policyWorld(config, {
        releases: [child],
        attestations: [scanAttestation(child, 'pass'), provenance],
      });
      const decision = world.policy.decide({
        release: child,
        environment: 'prod',
        now: NOW,
        refIsVersion: false,
      });
      assert.deepEqual(
        decision.blocking.map((f) => f.message),
        [`the parent ${parent.digest} is not in the catalog`],
      );
    });
  });

  describe('when asked for an environment', () => {
    const world = policyWorld(config);

    it('returns the compiled gates of a configured one', () => {
      assert.deepEqual(
        world.gatesOf('prod').requiredAttestations.map((r) => r.name),
        ['scan'],
      );
      assert.deepEqual(world.gatesOf('prod').lineage?.parentEnvironments, ['prod']);
    });

    it('requires no attestations of an unconfigured one', () => {
      assert.deepEqual(world.gatesOf('staging'), { requiredAttestations: [] });
      const release = testRelease('llama', { environment: 'staging' });
      const decision = world.policy.decide({
        release,
        environment: 'staging',
        now: NOW,
        refIsVersion: false,
      });
      assert.equal(decision.admissible, true);
    });
  });

  describe('when the catalog changes after the policy is built', () => {
    it('decides with the catalog’s current attestations', () => {
      const release = testRelease('llama');
      const attestations = [scanAttestation(release, 'fail')];
      const environments = createEnvironmentPolicy({ environments: config.environments, clock: () => NOW });
      const { policy } = buildReleasePolicy(config, environments, {
        attestations: () => ({ forRelease: (digest) => attestations.filter((a) => a.release === digest) }),
        byDigest: () => undefined,
      });
      const request = { release, environment: 'prod', now: NOW, refIsVersion: false };
      assert.equal(policy.decide(request).admissible, false);
      attestations.splice(0, 1, scanAttestation(release, 'pass'));
      assert.equal(policy.decide(request).admissible, true);
    });
  });
});
