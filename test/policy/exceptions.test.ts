/**
 * The exception register (README "Exceptions"): what makes a register invalid
 * (each problem naming its field), when an exception is active, and which
 * releases, environments and findings it waives.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DecisionRequest, PolicyFinding, ReleaseViolation } from '../../src/policy/admissible.types.ts';
import {
  createExceptionRegister,
  type ExceptionConfig,
  exceptionProblems,
  WAIVABLE_VIOLATIONS,
} from '../../src/policy/exceptions.ts';
import { buildFinding, buildRelease, nextDigest } from './policy-fixtures.ts';

const CREATED = '2026-11-20T00:00:00Z';
const EXPIRES = '2026-12-01T00:00:00Z';
const CREATED_MS = Date.parse(CREATED);
const EXPIRES_MS = Date.parse(EXPIRES);
const DAY_MS = 24 * 60 * 60 * 1000;
const DIGEST = `sha256:${'a'.repeat(64)}`;

function exception(overrides: Partial<ExceptionConfig> = {}): ExceptionConfig {
  return {
    id: 'EXC-1',
    owner: 'ml-platform',
    justification: 'scanner outage, manual review done',
    environment: 'prod',
    release: `fraud@${DIGEST}`,
    waive: ['scan'],
    created: CREATED,
    expires: EXPIRES,
    ...overrides,
  };
}

/** A models-scoped exception (no `release` key at all). */
function modelsException(models: string[], overrides: Partial<ExceptionConfig> = {}): ExceptionConfig {
  const { release: _release, ...rest } = exception(overrides);
  return { ...rest, models };
}

const problemsOf = (exceptions: ExceptionConfig[], names: string[] = ['provenance', 'scan']) =>
  exceptionProblems(exceptions, 30, () => names);

describe('when the register is valid', () => {
  it('reports no problem for a release-scoped and a models-scoped exception', () => {
    assert.deepEqual(problemsOf([exception(), modelsException(['fraud-*'], { id: 'EXC-2' })]), []);
  });

  it('accepts every waivable violation name even when the environment requires no attestation', () => {
    assert.deepEqual(WAIVABLE_VIOLATIONS, ['unsigned', 'untrusted_signer', 'lineage', 'upstream_unverified']);
    assert.deepEqual(problemsOf([exception({ waive: [...WAIVABLE_VIOLATIONS] })], []), []);
  });

  it('accepts an exception lasting exactly exceptionMaxDays', () => {
    const expires = new Date(CREATED_MS + 30 * DAY_MS).toISOString();
    assert.deepEqual(problemsOf([exception({ expires })]), []);
  });
});

describe('when the register has problems', () => {
  it('names a duplicate id on its second use only', () => {
    assert.deepEqual(problemsOf([exception(), exception({ release: `other@${DIGEST}` })]), [
      'exceptions[1].id: duplicate exception id EXC-1',
    ]);
  });

  it('requires an owner and a justification, blank or absent', () => {
    const blank = exception({ owner: '  ', justification: '\t' });
    const absent = exception({ id: 'EXC-2' }) as Partial<ExceptionConfig>;
    delete absent.owner;
    delete absent.justification;
    assert.deepEqual(problemsOf([blank, absent as ExceptionConfig]), [
      'exceptions[0].owner: every exception needs an owner',
      'exceptions[0].justification: every exception needs a justification',
      'exceptions[1].owner: every exception needs an owner',
      'exceptions[1].justification: every exception needs a justification',
    ]);
  });

  it('names instants that do not parse, without also comparing them', () => {
    assert.deepEqual(problemsOf([exception({ created: 'yesterday', expires: 'never' })]), [
      'exceptions[0].created: expected an RFC 3339 instant, got "yesterday"',
      'exceptions[0].expires: expected an RFC 3339 instant, got "never"',
    ]);
    assert.deepEqual(problemsOf([exception({ expires: 'never' })]), [
      'exceptions[0].expires: expected an RFC 3339 instant, got "never"',
    ]);
    assert.deepEqual(problemsOf([exception({ created: 'yesterday' })]), [
      'exceptions[0].created: expected an RFC 3339 instant, got "yesterday"',
    ]);
  });

  it('refuses an expiry equal to or before creation', () => {
    assert.deepEqual(
      problemsOf([
        exception({ expires: CREATED }),
        exception({ id: 'EXC-2', expires: '2026-11-19T00:00:00Z' }),
      ]),
      [
        `exceptions[0].expires: must be after created (${CREATED})`,
        `exceptions[1].expires: must be after created (${CREATED})`,
      ],
    );
  });

  it('refuses an exception one millisecond longer than exceptionMaxDays', () => {
    const expires = new Date(CREATED_MS + 30 * DAY_MS + 1).toISOString();
    assert.deepEqual(problemsOf([exception({ expires })]), [
      'exceptions[0].expires: expected at most exceptionMaxDays (30) after created, got 30.0 days',
    ]);
  });

  it('requires exactly one of release or models', () => {
    const neither = modelsException([]) as Partial<ExceptionConfig>;
    delete neither.models;
    const both = exception({ id: 'EXC-2', models: ['fraud-*'] });
    assert.deepEqual(problemsOf([neither as ExceptionConfig, both]), [
      'exceptions[0]: expected exactly one of release or models',
      'exceptions[1]: expected exactly one of release or models',
    ]);
  });

  it('refuses a release that is not <model>@sha256:<64 hex>', () => {
    const releases = [
      'fraud',
      `fraud:${DIGEST}`,
      `@${DIGEST}`,
      `Fraud Model@${DIGEST}`,
      'fraud@sha256:abc',
      `fraud@${DIGEST.toUpperCase()}`,
    ];
    const problems = problemsOf(releases.map((release, i) => exception({ id: `EXC-${i}`, release })));
    assert.deepEqual(
      problems,
      releases.map(
        (release, i) =>
          `exceptions[${i}].release: expected <model>@sha256:<64 hex>, got ${JSON.stringify(release)}`,
      ),
    );
  });

  it('names an unknown waiver, listing the environment’s required attestations and the waivable violations', () => {
    const problems = problemsOf([exception({ waive: ['scan', 'digest_mismatch'] })]);
    assert.deepEqual(problems, [
      'exceptions[0].waive[1]: "digest_mismatch" is neither a required attestation of prod (provenance, scan) nor one of unsigned, untrusted_signer, lineage, upstream_unverified',
    ]);
  });

  it('says none when the environment requires no attestation', () => {
    const problems = exceptionProblems([exception({ environment: 'dev' })], 30, (environment) =>
      environment === 'prod' ? ['scan'] : [],
    );
    assert.deepEqual(problems, [
      'exceptions[0].waive[0]: "scan" is neither a required attestation of dev (none) nor one of unsigned, untrusted_signer, lineage, upstream_unverified',
    ]);
  });
});

describe('when asking which exceptions are active or expired', () => {
  const register = createExceptionRegister([exception()]);
  const ids = (list: ExceptionConfig[]) => list.map((e) => e.id);

  it('is active from created (inclusive) until expires (exclusive)', () => {
    assert.deepEqual(ids(register.active(CREATED_MS - 1)), []);
    assert.deepEqual(ids(register.active(CREATED_MS)), ['EXC-1']);
    assert.deepEqual(ids(register.active(EXPIRES_MS - 1)), ['EXC-1']);
    assert.deepEqual(ids(register.active(EXPIRES_MS)), []);
  });

  it('is expired from its expiry on, and not before', () => {
    assert.deepEqual(ids(register.expired(CREATED_MS - 1)), []);
    assert.deepEqual(ids(register.expired(EXPIRES_MS - 1)), []);
    assert.deepEqual(ids(register.expired(EXPIRES_MS)), ['EXC-1']);
    assert.deepEqual(ids(register.expired(EXPIRES_MS + DAY_MS)), ['EXC-1']);
  });

  it('lists every exception, active or not', () => {
    const later = exception({
      id: 'EXC-2',
      created: '2027-01-01T00:00:00Z',
      expires: '2027-01-02T00:00:00Z',
    });
    const both = createExceptionRegister([exception(), later]);
    assert.deepEqual(ids([...both.all()]), ['EXC-1', 'EXC-2']);
    assert.deepEqual(ids(both.active(CREATED_MS)), ['EXC-1']);
  });
});

describe('when an exception waives findings', () => {
  const fraud = buildRelease('fraud', { digest: DIGEST });
  const request = (overrides: Partial<DecisionRequest> = {}): DecisionRequest => ({
    release: fraud,
    environment: 'prod',
    now: CREATED_MS,
    refIsVersion: false,
    ...overrides,
  });
  const scanMissing = () => buildFinding('attestation_missing', { requirement: 'scan' });

  it('waives the named attestation for the named release and reports its id', () => {
    const register = createExceptionRegister([exception()]);
    const findings = [scanMissing()];
    assert.deepEqual(register.waive(request(), findings), ['EXC-1']);
    assert.equal(findings[0]?.waivedBy, 'EXC-1');
  });

  it('waives nothing before created or from expires on', () => {
    const register = createExceptionRegister([exception()]);
    for (const now of [CREATED_MS - 1, EXPIRES_MS]) {
      const findings = [scanMissing()];
      assert.deepEqual(register.waive(request({ now }), findings), []);
      assert.equal(findings[0]?.waivedBy, undefined);
    }
  });

  it('waives nothing in another environment', () => {
    const register = createExceptionRegister([exception()]);
    const findings = [scanMissing()];
    assert.deepEqual(register.waive(request({ environment: 'staging' }), findings), []);
    assert.equal(findings[0]?.waivedBy, undefined);
  });

  it('waives nothing for another release of the same model, or the same digest under another model', () => {
    const register = createExceptionRegister([exception()]);
    for (const release of [buildRelease('fraud'), buildRelease('fraud-v2', { digest: DIGEST })]) {
      const findings = [scanMissing()];
      assert.deepEqual(register.waive(request({ release }), findings), []);
    }
  });

  it('waives for any model matched by one of its globs, and no other', () => {
    const register = createExceptionRegister([modelsException(['credit', 'fraud-*'])]);
    const matched = [scanMissing()];
    assert.deepEqual(register.waive(request({ release: buildRelease('fraud-int8') }), matched), ['EXC-1']);
    const unmatched = [scanMissing()];
    assert.deepEqual(register.waive(request({ release: buildRelease('churn') }), unmatched), []);
  });

  it('waives each waivable violation by its short name', () => {
    const byName: Record<string, ReleaseViolation> = {
      unsigned: 'unsigned_release',
      untrusted_signer: 'untrusted_signer',
      lineage: 'lineage',
      upstream_unverified: 'upstream_unverified',
    };
    for (const [name, violation] of Object.entries(byName)) {
      const register = createExceptionRegister([exception({ waive: [name] })]);
      const findings = [buildFinding(violation), buildFinding('mutable_reference')];
      assert.deepEqual(register.waive(request(), findings), ['EXC-1'], name);
      assert.equal(findings[0]?.waivedBy, 'EXC-1', name);
      assert.equal(findings[1]?.waivedBy, undefined, `${name} must not waive a mutable reference`);
    }
  });

  it('waives a finding named by any one of its waivers, and leaves the others blocking', () => {
    const register = createExceptionRegister([exception({ waive: ['scan', 'lineage'] })]);
    const findings: PolicyFinding[] = [
      buildFinding('lineage'),
      buildFinding('attestation_missing', { requirement: 'provenance' }),
      buildFinding('attestation_condition', { requirement: 'scan' }),
    ];
    assert.deepEqual(register.waive(request(), findings), ['EXC-1']);
    assert.deepEqual(
      findings.map((f) => f.waivedBy),
      ['EXC-1', undefined, 'EXC-1'],
    );
  });

  it('reports each exception that waived something once, and not one that waived nothing', () => {
    const register = createExceptionRegister([
      exception({ id: 'EXC-A', waive: ['scan'] }),
      exception({ id: 'EXC-B', waive: ['lineage'] }),
      exception({ id: 'EXC-C', waive: ['unsigned'] }),
    ]);
    const findings = [scanMissing(), buildFinding('lineage'), scanMissing()];
    assert.deepEqual(register.waive(request(), findings), ['EXC-A', 'EXC-B']);
  });

  it('skips an exception for another digest and uses a later one that covers the release', () => {
    const other = nextDigest();
    const register = createExceptionRegister([
      exception({ id: 'EXC-OTHER', release: `fraud@${other}` }),
      exception({ id: 'EXC-THIS' }),
    ]);
    const findings = [scanMissing()];
    assert.deepEqual(register.waive(request(), findings), ['EXC-THIS']);
  });
});
