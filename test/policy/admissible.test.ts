/**
 * The admissibility building blocks on their own: the digest-reference check,
 * the signer check, and how createAdmissionPolicy combines findings, waivers,
 * the environment's mode and the lineage chain into one decision.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkReference, checkSigner, createAdmissionPolicy } from '../../src/policy/admissible.ts';
import type { DecisionRequest } from '../../src/policy/admissible.types.ts';
import { createEnvironmentPolicy } from '../../src/policy/environments.ts';
import { buildFinding, buildRelease, nextDigest } from './policy-fixtures.ts';

const NOW = Date.parse('2026-11-25T12:00:00Z');
const environments = createEnvironmentPolicy({
  environments: {
    prod: { mode: 'enforce', digestRefsOnly: true },
    dev: { mode: 'audit', digestRefsOnly: false },
  },
  clock: () => NOW,
});

function request(overrides: Partial<DecisionRequest> = {}): DecisionRequest {
  return { release: buildRelease('fraud'), environment: 'prod', now: NOW, refIsVersion: false, ...overrides };
}

describe('when checking how the release was referenced', () => {
  const check = checkReference(environments);

  it('finds a version reference in an environment that requires digests', () => {
    const release = buildRelease('fraud');
    assert.deepEqual(check(request({ release, refIsVersion: true })), [
      {
        violation: 'mutable_reference',
        code: 'MG_DIGEST_REF_REQUIRED',
        message: `environment prod requires a sha256: release reference (fraud@${release.digest})`,
      },
    ]);
  });

  it('finds nothing wrong with a digest reference there', () => {
    assert.deepEqual(check(request({ refIsVersion: false })), []);
  });

  it('accepts a version reference where digests are not required', () => {
    assert.deepEqual(check(request({ environment: 'dev', refIsVersion: true })), []);
  });

  it('requires digests in an environment that is not configured (the safe default)', () => {
    assert.equal(
      check(request({ environment: 'unknown', refIsVersion: true }))[0]?.code,
      'MG_DIGEST_REF_REQUIRED',
    );
  });
});

describe('when checking who signed the release', () => {
  it('finds an unsigned release', () => {
    assert.deepEqual(checkSigner(request({ release: buildRelease('fraud', { trust: 'unsigned' }) })), [
      {
        violation: 'unsigned_release',
        code: 'MG_RELEASE_UNSIGNED',
        message: 'the release manifest is not signed',
      },
    ]);
  });

  it('finds a signer not trusted for the release’s environment, naming both', () => {
    const release = buildRelease('fraud', {
      trust: 'untrusted_signer',
      signer: 'lab-ci',
      environment: 'prod',
    });
    assert.deepEqual(checkSigner(request({ release })), [
      {
        violation: 'untrusted_signer',
        code: 'MG_SIGNER_UNTRUSTED',
        message: 'signer lab-ci is not trusted for environment prod',
      },
    ]);
  });

  it('finds nothing wrong with a trusted signer', () => {
    assert.deepEqual(checkSigner(request({ release: buildRelease('fraud', { trust: 'trusted' }) })), []);
  });
});

describe('when deciding with the default options (no exceptions, no lineage)', () => {
  const policy = createAdmissionPolicy({ environments, checks: [checkReference(environments), checkSigner] });

  it('admits a trusted release referenced by digest, listing no exception and only itself as lineage', () => {
    const release = buildRelease('fraud');
    const decision = policy.decide(request({ release }));
    assert.equal(decision.admissible, true);
    assert.equal(decision.enforced, true);
    assert.deepEqual(decision.exceptions, []);
    assert.deepEqual(decision.lineage, [release.digest]);
    assert.equal(decision.release, release);
    assert.equal(decision.environment.name, 'prod');
  });

  it('blocks on every finding of every check', () => {
    const decision = policy.decide(
      request({ release: buildRelease('fraud', { trust: 'unsigned' }), refIsVersion: true }),
    );
    assert.equal(decision.admissible, false);
    assert.deepEqual(
      decision.blocking.map((f) => f.violation),
      ['mutable_reference', 'unsigned_release'],
    );
    assert.deepEqual(decision.findings, decision.blocking);
    assert.deepEqual(decision.exceptions, []);
  });

  it('reports an audit environment as not enforced', () => {
    const decision = policy.decide(
      request({ environment: 'dev', release: buildRelease('fraud', { trust: 'unsigned' }) }),
    );
    assert.equal(decision.admissible, false);
    assert.equal(decision.enforced, false);
  });
});

describe('when an exception waives some findings', () => {
  const chain = [nextDigest(), nextDigest()];
  const policy = createAdmissionPolicy({
    environments,
    checks: [
      () => [buildFinding('attestation_missing', { requirement: 'scan' })],
      () => [buildFinding('lineage')],
    ],
    waive: (_request, findings) => {
      for (const finding of findings) if (finding.requirement === 'scan') finding.waivedBy = 'EXC-7';
      return ['EXC-7'];
    },
    lineageOf: () => chain,
  });

  it('keeps the waived finding in findings, blocks on the rest, and lists the exception and the chain', () => {
    const decision = policy.decide(request());
    assert.equal(decision.admissible, false);
    assert.deepEqual(
      decision.findings.map((f) => f.waivedBy),
      ['EXC-7', undefined],
    );
    assert.deepEqual(
      decision.blocking.map((f) => f.violation),
      ['lineage'],
    );
    assert.deepEqual(decision.exceptions, ['EXC-7']);
    assert.deepEqual(decision.lineage, chain);
  });

  it('admits once every finding is waived', () => {
    const waiveAll = createAdmissionPolicy({
      environments,
      checks: [() => [buildFinding('lineage')]],
      waive: (_request, findings) => {
        for (const finding of findings) finding.waivedBy = 'EXC-8';
        return ['EXC-8'];
      },
    });
    const decision = waiveAll.decide(request());
    assert.equal(decision.admissible, true);
    assert.deepEqual(decision.blocking, []);
    assert.deepEqual(decision.exceptions, ['EXC-8']);
  });
});
