/**
 * The lineage gate on its own (README "Lineage"): which releases must name a
 * parent, provenance that lists it (SLSA resolvedDependencies), the parent's
 * environment, the recursion into the parent's own decision, and the chain.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Release } from '../../src/catalog/release.types.ts';
import type { DecisionRequest, PolicyDecision, PolicyFinding } from '../../src/policy/admissible.types.ts';
import type { Attestation } from '../../src/policy/attestations.ts';
import {
  checkLineage,
  type LineageConfig,
  lineageChain,
  provenanceNamesParent,
  SLSA_PROVENANCE_V1,
} from '../../src/policy/lineage.ts';
import { buildFinding, buildRelease, nextDigest } from './policy-fixtures.ts';

const NOW = Date.parse('2026-11-25T12:00:00Z');

function statementNaming(subject: Release, predicateType: string, parents: string[]): Attestation {
  const predicate = {
    buildDefinition: {
      resolvedDependencies: parents.map((digest) => ({
        uri: 'modelgate:x',
        digest: { sha256: digest.slice(7) },
      })),
    },
  };
  return {
    release: subject.digest,
    predicateType,
    statement: { _type: 'https://in-toto.io/Statement/v1', subject: [], predicateType, predicate },
    attestor: 'ci',
    identity: 'ci',
    file: '/catalog/attestations/ci.json',
  };
}

const provenance = (subject: Release, ...parents: Release[]) =>
  statementNaming(
    subject,
    SLSA_PROVENANCE_V1,
    parents.map((p) => p.digest),
  );

/** A lineage gate over a small catalog; the parent decision is recorded and answered by `parentBlocking`. */
function gate(options: {
  releases: Release[];
  attestations: Attestation[];
  lineage?: LineageConfig;
  parentBlocking?: PolicyFinding[];
}) {
  const asked: DecisionRequest[] = [];
  const check = checkLineage({
    lineageOf: () => options.lineage,
    attestations: { forRelease: (digest) => options.attestations.filter((a) => a.release === digest) },
    releaseByDigest: (digest) => options.releases.find((r) => r.digest === digest),
    decide: (request): PolicyDecision => {
      asked.push(request);
      const blocking = options.parentBlocking ?? [];
      return {
        release: request.release,
        environment: { name: request.environment, mode: 'enforce', digestRefsOnly: true, configured: true },
        findings: blocking,
        blocking,
        admissible: blocking.length === 0,
        enforced: true,
        exceptions: [],
        lineage: [request.release.digest],
      };
    },
  });
  return {
    asked,
    check: (release: Release, visiting?: string[]) =>
      check({
        release,
        environment: release.environment,
        now: NOW,
        refIsVersion: true,
        ...(visiting === undefined ? {} : { visiting }),
      }),
  };
}

const messages = (findings: PolicyFinding[]) => findings.map((f) => f.message);
const QUANTIZED: LineageConfig = { requireParentFor: ['*-gguf', '*-int8'], parentEnvironments: ['prod'] };

describe('when a release names no parent', () => {
  it('passes when its environment has no lineage settings', () => {
    assert.deepEqual(gate({ releases: [], attestations: [] }).check(buildRelease('fraud-int8')), []);
  });

  it('passes when its model matches none of requireParentFor', () => {
    const g = gate({ releases: [], attestations: [], lineage: QUANTIZED });
    assert.deepEqual(g.check(buildRelease('fraud')), []);
  });

  it('is a broken lineage when its model matches any one of requireParentFor', () => {
    const g = gate({ releases: [], attestations: [], lineage: QUANTIZED });
    const findings = g.check(buildRelease('fraud-int8'));
    assert.deepEqual(findings, [
      {
        violation: 'lineage',
        code: 'MG_LINEAGE_BROKEN',
        message: 'fraud-int8 must name the release it was derived from (parent)',
      },
    ]);
  });
});

describe('when a release names a parent', () => {
  it('is admitted when one of its provenance attestations lists the parent, and decides the parent with the chain so far', () => {
    const parent = buildRelease('fraud');
    const child = buildRelease('fraud-int8', { parent: parent.digest });
    const g = gate({
      releases: [parent, child],
      attestations: [provenance(child), provenance(child, parent)],
      lineage: QUANTIZED,
    });
    assert.deepEqual(g.check(child), []);
    assert.deepEqual(g.asked, [
      { release: parent, environment: 'prod', now: NOW, refIsVersion: false, visiting: [child.digest] },
    ]);
  });

  it('passes the chain it was given on to the parent, with itself appended', () => {
    const parent = buildRelease('fraud');
    const child = buildRelease('fraud-int8', { parent: parent.digest });
    const g = gate({
      releases: [parent, child],
      attestations: [provenance(child, parent)],
      lineage: QUANTIZED,
    });
    const above = nextDigest();
    assert.deepEqual(g.check(child, [above]), []);
    assert.deepEqual(g.asked[0]?.visiting, [above, child.digest]);
  });

  it('is broken when only an attestation of another predicate type lists the parent', () => {
    const parent = buildRelease('fraud');
    const child = buildRelease('fraud-int8', { parent: parent.digest });
    const g = gate({
      releases: [parent, child],
      attestations: [statementNaming(child, 'https://slsa.dev/provenance/v0.2', [parent.digest])],
    });
    assert.deepEqual(messages(g.check(child)), [
      `no ${SLSA_PROVENANCE_V1} attestation lists the parent ${parent.digest} in resolvedDependencies`,
    ]);
    assert.deepEqual(g.asked, []);
  });

  it('is broken when the parent chain loops back to a release being decided', () => {
    const parent = buildRelease('fraud');
    const child = buildRelease('fraud-int8', { parent: parent.digest });
    const g = gate({ releases: [parent, child], attestations: [provenance(child, parent)] });
    assert.deepEqual(messages(g.check(child, [parent.digest])), [
      `the parent chain loops back to ${parent.digest}`,
    ]);
    assert.deepEqual(g.asked, []);
  });

  it('is broken when the parent is not in the catalog', () => {
    const parent = buildRelease('fraud');
    const child = buildRelease('fraud-int8', { parent: parent.digest });
    const g = gate({ releases: [child], attestations: [provenance(child, parent)] });
    assert.deepEqual(messages(g.check(child)), [`the parent ${parent.digest} is not in the catalog`]);
  });
});

describe('when the parent belongs to another environment', () => {
  const parent = buildRelease('fraud', { environment: 'staging' });
  const child = buildRelease('fraud-int8', { parent: parent.digest });

  it('without lineage settings, is broken unless the parent is in the same environment', () => {
    const g = gate({ releases: [parent, child], attestations: [provenance(child, parent)] });
    assert.deepEqual(messages(g.check(child)), [
      `the parent ${parent.digest} belongs to environment staging, not one of prod`,
    ]);
    assert.deepEqual(g.asked, []);
  });

  it('is admitted when parentEnvironments lists it, and the parent is decided in its own environment', () => {
    const g = gate({
      releases: [parent, child],
      attestations: [provenance(child, parent)],
      lineage: { requireParentFor: [], parentEnvironments: ['prod', 'staging'] },
    });
    assert.deepEqual(g.check(child), []);
    assert.equal(g.asked[0]?.environment, 'staging');
  });

  it('is broken when parentEnvironments does not list it, naming the allowed ones', () => {
    const g = gate({
      releases: [parent, child],
      attestations: [provenance(child, parent)],
      lineage: { requireParentFor: [], parentEnvironments: ['prod', 'canary'] },
    });
    assert.deepEqual(messages(g.check(child)), [
      `the parent ${parent.digest} belongs to environment staging, not one of prod, canary`,
    ]);
  });
});

describe('when the parent is not admissible itself', () => {
  it('is broken, quoting every blocking finding of the parent', () => {
    const parent = buildRelease('fraud');
    const child = buildRelease('fraud-int8', { parent: parent.digest });
    const g = gate({
      releases: [parent, child],
      attestations: [provenance(child, parent)],
      parentBlocking: [buildFinding('unsigned_release'), buildFinding('attestation_missing')],
    });
    assert.deepEqual(g.check(child), [
      {
        violation: 'lineage',
        code: 'MG_LINEAGE_BROKEN',
        message: `the parent fraud@${parent.digest} is not admissible in prod: unsigned_release found; attestation_missing found`,
      },
    ]);
  });
});

describe('when reading provenance', () => {
  it('finds the parent among several resolved dependencies of one statement', () => {
    const parent = buildRelease('fraud');
    const child = buildRelease('fraud-int8', { parent: parent.digest });
    const attestations = [statementNaming(child, SLSA_PROVENANCE_V1, [nextDigest(), parent.digest])];
    const lookup = { forRelease: (digest: string) => attestations.filter((a) => a.release === digest) };
    assert.equal(provenanceNamesParent(lookup, child, parent.digest), true);
    assert.equal(provenanceNamesParent(lookup, child, nextDigest()), false);
  });
});

describe('when listing the lineage chain', () => {
  it('follows parents to the original, this release first', () => {
    const original = buildRelease('fraud');
    const converted = buildRelease('fraud-gguf', { parent: original.digest });
    const quantized = buildRelease('fraud-gguf-int8', { parent: converted.digest });
    const releases = [original, converted, quantized];
    const byDigest = (digest: string) => releases.find((r) => r.digest === digest);
    assert.deepEqual(lineageChain(quantized, byDigest), [
      quantized.digest,
      converted.digest,
      original.digest,
    ]);
  });

  it('stops at a parent missing from the catalog, listing it', () => {
    const missing = nextDigest();
    const child = buildRelease('fraud-int8', { parent: missing });
    assert.deepEqual(
      lineageChain(child, () => undefined),
      [child.digest, missing],
    );
  });

  it('stops at a loop without repeating a digest', () => {
    const a = buildRelease('fraud-a');
    const b = buildRelease('fraud-b', { parent: a.digest });
    a.manifest.parent = b.digest;
    const releases = [a, b];
    assert.deepEqual(
      lineageChain(a, (digest) => releases.find((r) => r.digest === digest)),
      [a.digest, b.digest],
    );
  });
});
