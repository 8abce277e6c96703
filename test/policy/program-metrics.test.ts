import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Gauge } from 'prom-client';
import type { Release } from '../../src/catalog/release.types.ts';
import type { ExceptionConfig } from '../../src/policy/exceptions.ts';
import { updateProgramGauges } from '../../src/policy/program-metrics.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import {
  environment,
  NOW,
  type PolicyConfig,
  policyConfig,
  policyWorld,
  scanAttestation,
  scanRequirement,
  testRelease,
} from './policy-world.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

function exception(id: string, entry: Partial<ExceptionConfig>): ExceptionConfig {
  return {
    id,
    owner: 'ml-platform',
    justification: 'scanner outage',
    environment: 'prod',
    models: ['mistral'],
    waive: ['scan'],
    created: new Date(NOW - DAY_MS).toISOString(),
    expires: new Date(NOW + DAY_MS).toISOString(),
    ...entry,
  };
}

/** The gauge's current series, as `label=value,… → value`, from the real prom-client registry. */
async function series<T extends string>(gauge: Gauge<T>): Promise<Record<string, number>> {
  const { values } = await gauge.get();
  return Object.fromEntries(
    values.map((v) => [
      Object.entries(v.labels)
        .map(([k, l]) => `${k}=${l}`)
        .join(','),
      v.value,
    ]),
  );
}

function run(config: PolicyConfig, releases: Release[], attestations: ReturnType<typeof scanAttestation>[]) {
  const metrics = createMetrics({ defaultMetrics: false });
  const world = policyWorld(config, { releases, attestations });
  const update = (environments: readonly string[], now = NOW) =>
    updateProgramGauges({
      metrics,
      policy: world.policy,
      releases,
      environments,
      exceptions: world.exceptions,
      now,
    });
  return { metrics, update };
}

describe('updateProgramGauges', () => {
  const config = policyConfig({
    environments: {
      prod: environment({ requiredAttestations: [scanRequirement()] }),
      staging: environment(),
      dev: environment(),
    },
    exceptions: [
      exception('EX-ACTIVE', {}),
      exception('EX-ACTIVE-2', { models: ['gemma'] }),
      exception('EX-EXPIRED', {
        created: '2026-11-01T00:00:00Z',
        expires: '2026-11-10T00:00:00Z',
      }),
      exception('EX-FUTURE', {
        environment: 'staging',
        created: '2026-12-01T00:00:00Z',
        expires: '2026-12-05T00:00:00Z',
      }),
      exception('EX-CANARY', { environment: 'canary' }),
    ],
  });
  const passed = testRelease('llama');
  const failed = testRelease('phi');
  const waived = testRelease('mistral');
  const untrusted = testRelease('gemma', { environment: 'staging', trust: 'untrusted_signer' });
  const stagingOk = testRelease('qwen', { environment: 'staging' });
  const canary = testRelease('llama', { environment: 'canary' });
  const releases = [passed, failed, waived, untrusted, stagingOk, canary];
  const attestations = [scanAttestation(passed, 'pass'), scanAttestation(failed, 'fail')];

  describe('when releases meet, fail or lack their environment’s attestations', () => {
    it('counts per environment only the releases with every required attestation satisfied', async () => {
      const { metrics, update } = run(config, releases, attestations);
      update(['prod', 'staging', 'dev']);
      assert.deepEqual(await series(metrics.attestationComplete), {
        // passed only: failed has a failing condition, waived has no scan (a waiver is not a satisfied attestation).
        'environment=prod': 1,
        // nothing required: an untrusted signer is not an attestation gap.
        'environment=staging': 2,
        // configured with no releases: an explicit zero.
        'environment=dev': 0,
        // not configured, but releases claim it.
        'environment=canary': 1,
      });
    });
  });

  describe('when exceptions are active, expired or not yet active', () => {
    it('counts the exceptions in force now per environment, zero for the rest', async () => {
      const { metrics, update } = run(config, releases, attestations);
      update(['prod', 'staging', 'dev']);
      assert.deepEqual(await series(metrics.exceptionsActive), {
        'environment=prod': 2,
        'environment=staging': 0,
        'environment=dev': 0,
        'environment=canary': 1,
      });
    });

    it('follows the instant given: the same register later has fewer in force', async () => {
      const { metrics, update } = run(config, releases, attestations);
      update(['prod', 'staging'], NOW + 2 * DAY_MS);
      assert.deepEqual(await series(metrics.exceptionsActive), {
        'environment=prod': 0,
        'environment=staging': 0,
      });
    });

    it('publishes every exception’s creation and expiry in Unix seconds, expired ones included', async () => {
      const { metrics, update } = run(config, releases, attestations);
      update(['prod']);
      const created = await series(metrics.exceptionCreated);
      const expires = await series(metrics.exceptionExpiry);
      assert.deepEqual(Object.keys(expires).sort(), [
        'id=EX-ACTIVE,environment=prod',
        'id=EX-ACTIVE-2,environment=prod',
        'id=EX-CANARY,environment=canary',
        'id=EX-EXPIRED,environment=prod',
        'id=EX-FUTURE,environment=staging',
      ]);
      assert.equal(expires['id=EX-EXPIRED,environment=prod'], Date.parse('2026-11-10T00:00:00Z') / 1000);
      assert.equal(created['id=EX-EXPIRED,environment=prod'], Date.parse('2026-11-01T00:00:00Z') / 1000);
      assert.equal(created['id=EX-FUTURE,environment=staging'], Date.parse('2026-12-01T00:00:00Z') / 1000);
    });
  });

  describe('when the catalog or configuration changes between updates', () => {
    it('drops the series of environments and exceptions that are gone', async () => {
      const { metrics, update } = run(config, releases, attestations);
      update(['prod', 'staging', 'dev']);
      const emptied = policyConfig({ environments: { prod: environment() } });
      const world = policyWorld(emptied);
      updateProgramGauges({
        metrics,
        policy: world.policy,
        releases: [],
        environments: ['prod'],
        exceptions: world.exceptions,
        now: NOW,
      });
      assert.deepEqual(await series(metrics.attestationComplete), { 'environment=prod': 0 });
      assert.deepEqual(await series(metrics.exceptionsActive), { 'environment=prod': 0 });
      assert.deepEqual(await series(metrics.exceptionExpiry), {});
      assert.deepEqual(await series(metrics.exceptionCreated), {});
    });
  });
});
