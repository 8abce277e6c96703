import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Release } from '../../src/catalog/release.types.ts';
import {
  type Attestation,
  type AttestationRequirement,
  checkAttestations,
  unmetRequirement,
} from '../../src/policy/attestations.ts';
import { type ConditionConfig, compileCondition } from '../../src/policy/conditions.ts';

const SCAN = 'https://modelgate.dev/attestation/scan/v1';
const SBOM = 'https://spdx.dev/Document/v2.3';
const DIGEST = `sha256:${'a'.repeat(64)}`;

const RESULT_PASS: ConditionConfig = { path: 'predicate.result', equals: 'pass' };
const NO_CRITICAL: ConditionConfig = { path: 'predicate.critical', equals: 0 };

function scan(
  attestor: string,
  predicate: unknown,
  options: { predicateType?: string; release?: string } = {},
) {
  const predicateType = options.predicateType ?? SCAN;
  const attestation: Attestation = {
    release: options.release ?? DIGEST,
    predicateType,
    statement: { _type: 'https://in-toto.io/Statement/v1', subject: [], predicateType, predicate },
    attestor,
    identity: `${attestor}@example.com`,
    file: `/catalog/attestations/${attestor}.json`,
  };
  return attestation;
}

function requirement(attestors: string[], conditions: ConditionConfig[]): AttestationRequirement {
  return {
    name: 'scan',
    predicateType: SCAN,
    attestors,
    conditions: conditions.map((c, i) =>
      compileCondition(c, `prod.requiredAttestations[0].conditions[${i}]`),
    ),
  };
}

function missing(message: string) {
  return { violation: 'attestation_missing', code: 'MG_ATTESTATION_MISSING', requirement: 'scan', message };
}

function unmet(message: string) {
  return {
    violation: 'attestation_condition',
    code: 'MG_ATTESTATION_CONDITION',
    requirement: 'scan',
    message,
  };
}

describe('when a requirement looks for its predicate type', () => {
  it('reports the requirement missing when no attestation has that type, naming type and attestors', () => {
    const sbom = scan('scanner', { result: 'pass', critical: 0 }, { predicateType: SBOM });
    assert.deepEqual(
      unmetRequirement(requirement(['scanner', 'security'], [RESULT_PASS]), [sbom]),
      missing(`no scan attestation (${SCAN}) from scanner, security`),
    );
  });

  it('does not let an attestation of another type meet it, even from a required attestor', () => {
    const sbom = scan('scanner', { result: 'pass' }, { predicateType: SBOM });
    assert.equal(unmetRequirement(requirement(['scanner'], []), [sbom])?.violation, 'attestation_missing');
  });

  it('is met by a required attestor with no conditions to check', () => {
    assert.equal(unmetRequirement(requirement(['scanner'], []), [scan('scanner', {})]), undefined);
  });
});

describe('when the attestation is signed by an attestor the requirement does not list', () => {
  it('reports it missing, naming each signer once and the required attestors', () => {
    const found = [
      scan('ci', { result: 'pass' }),
      scan('intern', { result: 'pass' }),
      scan('ci', { result: 'pass' }),
    ];
    assert.deepEqual(
      unmetRequirement(requirement(['scanner', 'security'], [RESULT_PASS]), found),
      missing('the scan attestation is signed by ci, intern, not by a required attestor (scanner, security)'),
    );
  });

  it('ignores its passing result when a required attestor signed a failing one', () => {
    const found = [scan('ci', { result: 'pass' }), scan('scanner', { result: 'fail' })];
    assert.equal(
      unmetRequirement(requirement(['scanner'], [RESULT_PASS]), found)?.violation,
      'attestation_condition',
    );
  });
});

describe('when required attestors signed attestations of the type', () => {
  it('is met by one attestation meeting every condition, even beside failing ones', () => {
    const found = [
      scan('scanner', { result: 'fail', critical: 2 }),
      scan('security', { result: 'pass', critical: 0 }),
      scan('scanner', { result: 'pass', critical: 1 }),
    ];
    assert.equal(
      unmetRequirement(requirement(['scanner', 'security'], [RESULT_PASS, NO_CRITICAL]), found),
      undefined,
    );
  });

  it('names only the condition that no attestation meets', () => {
    const found = [scan('scanner', { result: 'pass', critical: 1 })];
    assert.deepEqual(
      unmetRequirement(requirement(['scanner'], [RESULT_PASS, NO_CRITICAL]), found),
      unmet('the scan attestation does not meet: predicate.critical equals 0'),
    );
  });

  it('counts a condition as met when any one attestation meets it', () => {
    const found = [
      scan('scanner', { result: 'pass', critical: 1 }),
      scan('scanner', { result: 'fail', critical: 3 }),
    ];
    assert.deepEqual(
      unmetRequirement(requirement(['scanner'], [RESULT_PASS, NO_CRITICAL]), found),
      unmet('the scan attestation does not meet: predicate.critical equals 0'),
    );
  });

  it('names every condition when each is met only by a different attestation', () => {
    // No single attestation meets both, so no condition alone is to blame: all are listed.
    const found = [
      scan('scanner', { result: 'pass', critical: 1 }),
      scan('scanner', { result: 'fail', critical: 0 }),
    ];
    assert.deepEqual(
      unmetRequirement(requirement(['scanner'], [RESULT_PASS, NO_CRITICAL]), found),
      unmet(
        'the scan attestation does not meet: predicate.result equals "pass"; predicate.critical equals 0',
      ),
    );
  });
});

describe('when the attestation gate checks a release', () => {
  const release = { digest: DIGEST } as Release;
  const other = `sha256:${'b'.repeat(64)}`;

  function gate(attestations: Attestation[], requirements: AttestationRequirement[]) {
    const check = checkAttestations((environment) => (environment === 'prod' ? requirements : []), {
      forRelease: (digest) => attestations.filter((a) => a.release === digest),
    });
    return (environment: string) => check({ release, environment, now: 0, refIsVersion: false });
  }

  it('only counts attestations whose subject is the release digest', () => {
    const findings = gate(
      [scan('scanner', { result: 'pass' }, { release: other })],
      [requirement(['scanner'], [RESULT_PASS])],
    );
    assert.deepEqual(
      findings('prod').map((f) => f.violation),
      ['attestation_missing'],
    );
  });

  it('reports one finding per unmet requirement of the environment and none elsewhere', () => {
    const sbomRequirement = { ...requirement(['scanner'], []), name: 'sbom', predicateType: SBOM };
    const findings = gate(
      [scan('scanner', { result: 'pass' })],
      [requirement(['scanner'], [RESULT_PASS]), sbomRequirement],
    );
    assert.deepEqual(
      findings('prod').map((f) => f.requirement),
      ['sbom'],
    );
    assert.deepEqual(findings('dev'), []);
  });
});
