import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EnvironmentConfig } from '../../src/config/config.types.ts';
import { createEnvironmentPolicy, describeAuditEnvironments } from '../../src/policy/environments.ts';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.ts';

const ENFORCE_FROM = '2027-01-15T00:00:00Z';
const ENFORCE_FROM_MS = Date.parse(ENFORCE_FROM);

const environments: Record<string, Omit<EnvironmentConfig, 'requiredAttestations'>> = {
  prod: { mode: 'enforce', digestRefsOnly: true },
  staging: { mode: 'audit', enforceFrom: ENFORCE_FROM, digestRefsOnly: false },
  dev: { mode: 'audit', digestRefsOnly: false },
};

/** A clock the test moves by hand. */
function movableClock(start: number) {
  let now = start;
  return {
    clock: () => now,
    set: (ms: number) => {
      now = ms;
    },
  };
}

async function gaugeValues(metrics: Metrics): Promise<Record<string, number>> {
  const { values } = await metrics.environmentEnforcing.get();
  return Object.fromEntries(values.map((v) => [String(v.labels.environment), v.value]));
}

describe('when an audit environment has an enforcement date', () => {
  it('audits before enforceFrom and enforces after it, without a new policy object', () => {
    const time = movableClock(ENFORCE_FROM_MS - 1000);
    const policy = createEnvironmentPolicy({ environments, clock: time.clock });

    assert.deepEqual(policy.stateOf('staging'), {
      name: 'staging',
      mode: 'audit',
      digestRefsOnly: false,
      enforceFrom: ENFORCE_FROM,
      configured: true,
    });

    time.set(ENFORCE_FROM_MS);
    assert.equal(policy.stateOf('staging').mode, 'enforce');
    assert.equal(policy.stateOf('staging').digestRefsOnly, false);

    time.set(ENFORCE_FROM_MS + 86_400_000);
    assert.equal(policy.stateOf('staging').mode, 'enforce');
  });

  it('lists it as auditing only until the date passes', () => {
    const time = movableClock(ENFORCE_FROM_MS - 1);
    const policy = createEnvironmentPolicy({ environments, clock: time.clock });
    assert.deepEqual(
      policy.auditing().map((s) => s.name),
      ['staging', 'dev'],
    );
    time.set(ENFORCE_FROM_MS);
    assert.deepEqual(
      policy.auditing().map((s) => s.name),
      ['dev'],
    );
  });
});

describe('when an environment is in audit mode without a date', () => {
  it('stays in audit however far the clock moves', () => {
    const time = movableClock(0);
    const policy = createEnvironmentPolicy({ environments, clock: time.clock });
    time.set(Date.parse('2100-01-01T00:00:00Z'));
    const state = policy.stateOf('dev');
    assert.equal(state.mode, 'audit');
    assert.equal('enforceFrom' in state, false);
  });
});

describe('when an environment is not configured', () => {
  it('enforces and requires digest references', () => {
    const policy = createEnvironmentPolicy({ environments, clock: () => 0 });
    assert.deepEqual(policy.stateOf('canary'), {
      name: 'canary',
      mode: 'enforce',
      digestRefsOnly: true,
      configured: false,
    });
  });

  it('does not mistake Object.prototype members for configuration', () => {
    const policy = createEnvironmentPolicy({ environments, clock: () => 0 });
    assert.equal(policy.stateOf('constructor').configured, false);
    assert.equal(policy.stateOf('__proto__').mode, 'enforce');
  });
});

describe('when the enforcing gauge is updated', () => {
  it('sets 1 for enforcing and 0 for auditing environments, extra names included', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const time = movableClock(ENFORCE_FROM_MS - 1000);
    const policy = createEnvironmentPolicy({ environments, clock: time.clock, metrics });

    policy.updateGauge(['canary']);
    assert.deepEqual(await gaugeValues(metrics), { prod: 1, staging: 0, dev: 0, canary: 1 });

    time.set(ENFORCE_FROM_MS + 1);
    policy.updateGauge();
    assert.equal((await gaugeValues(metrics)).staging, 1);
    assert.match(
      await metrics.registry.metrics(),
      /^modelgate_environment_enforcing\{environment="staging"\} 1$/m,
    );
  });
});

describe('when audit environments are described for the start-up log', () => {
  it('names each with its enforcement date or its absence', () => {
    const policy = createEnvironmentPolicy({
      environments: {
        ...environments,
        qa: { mode: 'audit', enforceFrom: '2027-03-01T01:00:00+01:00', digestRefsOnly: true },
      },
      clock: () => ENFORCE_FROM_MS - 1000,
    });
    assert.deepEqual(describeAuditEnvironments(policy), [
      'staging: audit until 2027-01-15T00:00:00Z (then enforce)',
      'dev: audit (no enforcement date)',
      'qa: audit until 2027-03-01T00:00:00Z (then enforce)',
    ]);
  });

  it('describes nothing once every date has passed and the rest enforce', () => {
    const policy = createEnvironmentPolicy({
      environments: { prod: environments.prod!, staging: environments.staging! },
      clock: () => ENFORCE_FROM_MS,
    });
    assert.deepEqual(describeAuditEnvironments(policy), []);
  });
});
