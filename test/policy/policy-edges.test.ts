/**
 * Environment and grant edges a mutation run found unguarded: a bad
 * `enforceFrom` stops start-up, the enforcing gauge works without extra names
 * and without metrics, a hand-made policy's unparsable instant is shown as
 * written, and a grant listing several globs allows a model matched by any one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Principal } from '../../src/identity/principal.types.ts';
import { createEnvironmentPolicy, describeAuditEnvironments } from '../../src/policy/environments.ts';
import { isGranted, mayReadModel } from '../../src/policy/grants.ts';
import type { EnvironmentPolicy } from '../../src/policy/policy.types.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';

describe('when an environment’s enforceFrom is not an instant', () => {
  it('refuses to build the policy, naming the environment and the value', () => {
    assert.throws(
      () =>
        createEnvironmentPolicy({
          environments: { staging: { mode: 'audit', enforceFrom: 'soon', digestRefsOnly: false } },
        }),
      /environments\.staging\.enforceFrom: expected an RFC 3339 instant, got "soon"/,
    );
  });
});

describe('when the enforcing gauge is updated without extra names', () => {
  it('sets exactly the configured environments', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const policy = createEnvironmentPolicy({
      environments: {
        prod: { mode: 'enforce', digestRefsOnly: true },
        dev: { mode: 'audit', digestRefsOnly: false },
      },
      metrics,
    });
    policy.updateGauge();
    const { values } = await metrics.environmentEnforcing.get();
    assert.deepEqual(Object.fromEntries(values.map((v) => [String(v.labels.environment), v.value])), {
      prod: 1,
      dev: 0,
    });
  });

  it('does nothing (and does not throw) when no metrics were given', () => {
    const policy = createEnvironmentPolicy({
      environments: { prod: { mode: 'enforce', digestRefsOnly: true } },
    });
    assert.doesNotThrow(() => policy.updateGauge(['other']));
  });
});

describe('when an auditing environment’s instant cannot be parsed', () => {
  it('describes it with the instant as written', () => {
    const policy: EnvironmentPolicy = {
      stateOf: (name) => ({ name, mode: 'audit', digestRefsOnly: false, configured: true }),
      auditing: () => [
        { name: 'lab', mode: 'audit', digestRefsOnly: false, configured: true, enforceFrom: 'next week' },
      ],
      updateGauge: () => {},
    };
    assert.deepEqual(describeAuditEnvironments(policy), ['lab: audit until next week (then enforce)']);
  });
});

describe('when one grant lists several model globs', () => {
  const principal: Principal = {
    issuerName: 'prod-cluster',
    issuer: 'https://oidc.example.com',
    subject: 'system:serviceaccount:fraud:inference',
    serviceAccount: 'fraud-inference',
    grants: [{ models: ['alpha-*', 'beta-*'], environments: ['prod'] }],
    expiresAt: 2_000_000_000,
  };

  it('allows a model matched by any one of them', () => {
    assert.equal(mayReadModel(principal, 'beta-ranker'), true);
    assert.equal(isGranted(principal, 'beta-ranker', 'prod'), true);
    assert.equal(mayReadModel(principal, 'gamma-ranker'), false);
  });
});
