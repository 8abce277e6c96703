import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Release } from '../../src/catalog/release.types.ts';
import type { PolicyDecision } from '../../src/policy/admissible.types.ts';
import type { Attestation, AttestationRequirement } from '../../src/policy/attestations.ts';
import { type ConditionConfig, compileCondition } from '../../src/policy/conditions.ts';
import { createEnvironmentPolicy } from '../../src/policy/environments.ts';
import {
  createExceptionRegister,
  type ExceptionConfig,
  exceptionProblems,
} from '../../src/policy/exceptions.ts';
import { SLSA_PROVENANCE_V1 } from '../../src/policy/lineage.ts';
import { createReleasePolicy, type EnvironmentGates } from '../../src/policy/release-policy.ts';
import { testRelease } from './policy-world.ts';

const SCAN = 'https://modelgate.dev/attestation/scan/v1';
const BUILDER = 'https://github.com/acme/ml/.github/workflows/release.yml@refs/heads/main';
const NOW = Date.parse('2026-11-25T12:00:00Z');

const release = testRelease;

function attestation(
  subject: Release,
  predicateType: string,
  predicate: unknown,
  attestor: string,
): Attestation {
  return {
    release: subject.digest,
    predicateType,
    statement: { _type: 'https://in-toto.io/Statement/v1', subject: [], predicateType, predicate },
    attestor,
    identity: attestor,
    file: `/catalog/attestations/${attestor}.json`,
  };
}

function provenance(subject: Release, parents: Release[] = [], builder = BUILDER): Attestation {
  return attestation(
    subject,
    SLSA_PROVENANCE_V1,
    {
      buildDefinition: {
        resolvedDependencies: parents.map((p) => ({
          uri: `modelgate:${p.model}`,
          digest: { sha256: p.digest.slice(7) },
        })),
      },
      runDetails: { builder: { id: builder } },
    },
    'ci',
  );
}

function requirement(
  name: string,
  predicateType: string,
  attestors: string[],
  conditions: ConditionConfig[],
): AttestationRequirement {
  return {
    name,
    predicateType,
    attestors,
    conditions: conditions.map((c, i) => compileCondition(c, `test.conditions[${i}]`)),
  };
}

const PROD_GATES: EnvironmentGates = {
  requiredAttestations: [
    requirement(
      'provenance',
      SLSA_PROVENANCE_V1,
      ['ci'],
      [{ path: 'predicate.runDetails.builder.id', equals: BUILDER }],
    ),
    requirement('scan', SCAN, ['scanner'], [{ path: 'predicate.result', in: ['pass'] }]),
  ],
  lineage: { requireParentFor: ['*-int8'], parentEnvironments: ['prod'] },
};

function world(options: { mode?: 'enforce' | 'audit'; exceptions?: ExceptionConfig[] } = {}) {
  const releases: Release[] = [];
  const attestations: Attestation[] = [];
  const environments = createEnvironmentPolicy({
    environments: { prod: { mode: options.mode ?? 'enforce', digestRefsOnly: true } },
    clock: () => NOW,
  });
  const policy = createReleasePolicy({
    environments,
    gatesOf: (environment) => (environment === 'prod' ? PROD_GATES : { requiredAttestations: [] }),
    attestations: { forRelease: (digest) => attestations.filter((a) => a.release === digest) },
    releaseByDigest: (digest) => releases.find((r) => r.digest === digest),
    exceptions: createExceptionRegister(options.exceptions ?? []),
  });
  return {
    add(...items: Release[]) {
      releases.push(...items);
    },
    attest(...items: Attestation[]) {
      attestations.push(...items);
    },
    decide(subject: Release, now = NOW): PolicyDecision {
      return policy.decide({ release: subject, environment: subject.environment, now, refIsVersion: false });
    },
  };
}

function violations(decision: PolicyDecision): string[] {
  return decision.blocking.map((f) => f.violation);
}

function fullyAttested(w: ReturnType<typeof world>, subject: Release, parents: Release[] = []) {
  w.add(subject);
  w.attest(provenance(subject, parents), attestation(subject, SCAN, { result: 'pass' }, 'scanner'));
}

describe('attestation gates in an enforce environment requiring provenance and a scan', () => {
  it('admits a release with both', () => {
    const w = world();
    const r = release('fraud');
    fullyAttested(w, r);
    const decision = w.decide(r);
    assert.equal(decision.admissible, true, JSON.stringify(decision.blocking));
    assert.equal(decision.enforced, true);
  });

  it('refuses a release without the scan as attestation_missing', () => {
    const w = world();
    const r = release('fraud');
    w.add(r);
    w.attest(provenance(r));
    const decision = w.decide(r);
    assert.deepEqual(violations(decision), ['attestation_missing']);
    assert.equal(decision.blocking[0]?.requirement, 'scan');
    assert.equal(decision.blocking[0]?.code, 'MG_ATTESTATION_MISSING');
  });

  it('refuses a failing scan as attestation_condition, naming the condition', () => {
    const w = world();
    const r = release('fraud');
    w.add(r);
    w.attest(provenance(r), attestation(r, SCAN, { result: 'fail' }, 'scanner'));
    const decision = w.decide(r);
    assert.deepEqual(violations(decision), ['attestation_condition']);
    assert.match(decision.blocking[0]?.message ?? '', /predicate\.result in \["pass"\]/);
  });

  it('refuses a scan signed by an attestor not listed for it', () => {
    const w = world();
    const r = release('fraud');
    w.add(r);
    w.attest(provenance(r), attestation(r, SCAN, { result: 'pass' }, 'ci'));
    const decision = w.decide(r);
    assert.deepEqual(violations(decision), ['attestation_missing']);
    assert.match(decision.blocking[0]?.message ?? '', /signed by ci, not by a required attestor \(scanner\)/);
  });

  it('refuses provenance from another builder', () => {
    const w = world();
    const r = release('fraud');
    w.add(r);
    w.attest(
      provenance(r, [], 'https://evil.example/builder'),
      attestation(r, SCAN, { result: 'pass' }, 'scanner'),
    );
    assert.deepEqual(violations(w.decide(r)), ['attestation_condition']);
  });

  it('in audit mode reports the same findings but does not enforce them', () => {
    const w = world({ mode: 'audit' });
    const r = release('fraud');
    w.add(r);
    const decision = w.decide(r);
    assert.equal(decision.enforced, false);
    assert.deepEqual(violations(decision).sort(), ['attestation_missing', 'attestation_missing']);
  });
});

describe('lineage', () => {
  it('admits a quantized release naming an admissible parent with provenance listing it', () => {
    const w = world();
    const original = release('fraud');
    fullyAttested(w, original);
    const quantized = release('fraud-int8', { parent: original.digest });
    fullyAttested(w, quantized, [original]);
    const decision = w.decide(quantized);
    assert.equal(decision.admissible, true, JSON.stringify(decision.blocking));
    assert.deepEqual(decision.lineage, [quantized.digest, original.digest]);
  });

  it('refuses a release that must have a parent but names none', () => {
    const w = world();
    const quantized = release('fraud-int8');
    fullyAttested(w, quantized);
    assert.deepEqual(violations(w.decide(quantized)), ['lineage']);
  });

  it('refuses when no provenance lists the parent', () => {
    const w = world();
    const original = release('fraud');
    fullyAttested(w, original);
    const quantized = release('fraud-int8', { parent: original.digest });
    fullyAttested(w, quantized, []);
    const decision = w.decide(quantized);
    assert.deepEqual(violations(decision), ['lineage']);
    assert.match(
      decision.blocking[0]?.message ?? '',
      /no https:\/\/slsa.dev\/provenance\/v1 attestation lists the parent/,
    );
  });

  it('refuses when the parent is not in the catalog', () => {
    const w = world();
    const original = release('fraud');
    const quantized = release('fraud-int8', { parent: original.digest });
    fullyAttested(w, quantized, [original]);
    assert.match(w.decide(quantized).blocking[0]?.message ?? '', /is not in the catalog/);
  });

  it('refuses when the parent itself is not admissible (its scan failed)', () => {
    const w = world();
    const original = release('fraud');
    w.add(original);
    w.attest(provenance(original), attestation(original, SCAN, { result: 'fail' }, 'scanner'));
    const quantized = release('fraud-int8', { parent: original.digest });
    fullyAttested(w, quantized, [original]);
    const decision = w.decide(quantized);
    assert.deepEqual(violations(decision), ['lineage']);
    assert.match(
      decision.blocking[0]?.message ?? '',
      /is not admissible in prod: the scan attestation does not meet/,
    );
  });

  it('refuses a cycle of two releases instead of looping', () => {
    const w = world();
    const a = release('fraud-a');
    const b = release('fraud-b', { parent: a.digest });
    a.manifest.parent = b.digest;
    fullyAttested(w, a, [b]);
    fullyAttested(w, b, [a]);
    const decision = w.decide(a);
    assert.deepEqual(violations(decision), ['lineage']);
    assert.match(JSON.stringify(decision.blocking), /loops back/);
    assert.deepEqual(decision.lineage, [a.digest, b.digest]);
  });
});

describe('exceptions', () => {
  const waiveScan = (subject: Release): ExceptionConfig => ({
    id: 'EXC-12',
    owner: 'ml-platform',
    justification: 'scanner outage, manual review done',
    environment: 'prod',
    release: `${subject.model}@${subject.digest}`,
    waive: ['scan'],
    created: '2026-11-20T00:00:00Z',
    expires: '2026-12-01T00:00:00Z',
  });

  it('waives the scan for one release until it expires, and nothing after', () => {
    const r = release('fraud');
    const w = world({ exceptions: [waiveScan(r)] });
    w.add(r);
    w.attest(provenance(r));
    const during = w.decide(r);
    assert.equal(during.admissible, true);
    assert.deepEqual(during.exceptions, ['EXC-12']);
    assert.equal(during.findings[0]?.waivedBy, 'EXC-12');
    const after = w.decide(r, Date.parse('2026-12-01T00:00:00Z'));
    assert.equal(after.admissible, false);
    assert.deepEqual(after.exceptions, []);
  });

  it('does not waive another release of the same model or another violation', () => {
    const covered = release('fraud');
    const other = release('fraud');
    const w = world({ exceptions: [waiveScan(covered)] });
    w.add(covered, other);
    assert.equal(w.decide(other).admissible, false);
    // The exception names the scan only: a missing provenance is still blocking.
    assert.deepEqual(violations(w.decide(covered)), ['attestation_missing']);
  });

  it('refuses a register with an exception longer than exceptionMaxDays or without an owner, naming the field', () => {
    const r = release('fraud');
    const tooLong = { ...waiveScan(r), expires: '2027-02-01T00:00:00Z' };
    const ownerless = { ...waiveScan(r), id: 'EXC-13', owner: '' };
    const problems = exceptionProblems([tooLong, ownerless], 30, () => ['provenance', 'scan']);
    assert.deepEqual(problems, [
      'exceptions[0].expires: expected at most exceptionMaxDays (30) after created, got 73.0 days',
      'exceptions[1].owner: every exception needs an owner',
    ]);
  });

  it('refuses a waiver name that is neither a required attestation nor a waivable violation', () => {
    const r = release('fraud');
    const problems = exceptionProblems([{ ...waiveScan(r), waive: ['digest_mismatch'] }], 30, () => ['scan']);
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /^exceptions\[0\]\.waive\[0\]:/);
  });
});
