import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/load.ts';

const BASE = `
stores: { file: { root: ./models } }
catalog: { dir: ./releases }
issuers:
  - name: prod
    issuer: https://oidc.example.com
    jwksFile: ./keys/issuer.jwks.json
    audiences: [modelgate]
    algorithms: [RS256]
serviceAccounts: []
signers:
  - { name: release-pipeline, jwksFile: ./keys/release.jwks.json, environments: [prod] }
  - { name: partner, publicKeyFile: ./trust/partner.pem, environments: [staging], revoked: { at: "2026-11-01T00:00:00Z", reason: leaked } }
  - name: ngc
    certificate: { caFile: ./trust/ngc-ca.pem }
    environments: [prod]
  - name: ci-keyless
    sigstore:
      trustedRoot: ./trust/trusted_root.json
      identities: [{ issuer: "https://token.actions.githubusercontent.com", subjectPattern: "^https://github.com/acme/.*$" }]
    environments: [prod]
upstreamSigners:
  - { name: oms, publicKeyFile: ./trust/oms.pem, models: ["partner/*"] }
attestors:
  - { name: scanner, publicKeyFile: ./trust/scanner.pem }
  - { name: ci, publicKeyFile: ./trust/ci.pem }
environments:
  prod:
    mode: enforce
    requiredAttestations:
      - name: provenance
        predicateType: https://slsa.dev/provenance/v1
        attestors: [ci]
        conditions: [{ path: predicate.runDetails.builder.id, equals: "https://ci.example/release" }]
      - name: scan
        predicateType: https://modelgate.dev/attestation/scan/v1
        attestors: [scanner]
        conditions: [{ path: predicate.result, in: [pass] }]
    lineage: { requireParentFor: ["*-int8"], parentEnvironments: [prod] }
  staging: { mode: audit }
exceptionMaxDays: 30
`;

const EXCEPTION = `
exceptions:
  - id: EXC-12
    owner: ml-platform
    justification: scanner outage, manual review done
    environment: prod
    release: "fraud-detector@sha256:${'a'.repeat(64)}"
    waive: [scan]
    created: 2026-11-20T00:00:00Z
    expires: 2026-12-01T00:00:00Z
`;

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, '/etc/modelgate/modelgate.yaml', {});
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems.map((p) => `${p.path}: ${p.message}`);
  }
  return [];
}

describe('trust and policy configuration', () => {
  it('accepts every signer kind, upstream signers, attestors, gates and an exception', () => {
    assert.deepEqual(problemsOf(BASE + EXCEPTION), []);
    const config = parseConfig(BASE + EXCEPTION, '/etc/modelgate/modelgate.yaml', {});
    assert.equal(config.signers[1]?.publicKeyFile, '/etc/modelgate/trust/partner.pem');
    assert.equal(config.signers[2]?.certificate?.caFile, '/etc/modelgate/trust/ngc-ca.pem');
    assert.equal(config.signers[3]?.sigstore?.trustedRoot, '/etc/modelgate/trust/trusted_root.json');
    assert.equal(config.attestors[0]?.publicKeyFile, '/etc/modelgate/trust/scanner.pem');
  });

  it('refuses a signer with two key sources, or none, naming it', () => {
    const problems = problemsOf(
      `${BASE}
  - { name: both, jwksFile: a.json, publicKeyFile: b.pem, environments: [prod] }
  - { name: none, environments: [prod] }
`
        .replace('exceptionMaxDays: 30\n', '')
        .replace('environments:\n  prod:', 'exceptionMaxDays: 30\nenvironments:\n  prod:')
        .replace(/upstreamSigners:/, 'upstreamSigners:'),
    );
    void problems;
    const two = problemsOf(
      BASE.replace(
        '- { name: release-pipeline, jwksFile: ./keys/release.jwks.json,',
        '- { name: release-pipeline, jwksFile: ./keys/release.jwks.json, publicKeyFile: x.pem,',
      ),
    );
    assert.ok(
      two.some((p) => p.startsWith('signers[0]')),
      two.join('\n'),
    );
    const none = problemsOf(
      BASE.replace(
        '- { name: release-pipeline, jwksFile: ./keys/release.jwks.json,',
        '- { name: release-pipeline,',
      ),
    );
    assert.ok(
      none.some((p) => p.startsWith('signers[0]')),
      none.join('\n'),
    );
  });

  it('refuses an unknown condition operator and a malformed path, naming the field', () => {
    const unknown = problemsOf(
      BASE.replace('{ path: predicate.result, in: [pass] }', '{ path: predicate.result, contains: pass }'),
    );
    assert.ok(
      unknown.some((p) => p.startsWith('environments.prod.requiredAttestations[1].conditions[0]')),
      unknown.join('\n'),
    );
    const path = problemsOf(
      BASE.replace('{ path: predicate.result, in: [pass] }', '{ path: "predicate..result", in: [pass] }'),
    );
    assert.deepEqual(path.filter((p) => p.includes('conditions[0].path')).length, 1, path.join('\n'));
  });

  it('refuses a required attestation naming an attestor that does not exist', () => {
    const problems = problemsOf(BASE.replace('attestors: [scanner]', 'attestors: [scaner]'));
    assert.deepEqual(problems, [
      'environments.prod.requiredAttestations[1].attestors[0]: no attestor named scaner (configured: scanner, ci)',
    ]);
  });

  it('refuses an exception longer than exceptionMaxDays, or without an owner, naming it', () => {
    const long = problemsOf(BASE + EXCEPTION.replace('2026-12-01T00:00:00Z', '2027-02-01T00:00:00Z'));
    assert.deepEqual(long, [
      'exceptions[0].expires: expected at most exceptionMaxDays (30) after created, got 73.0 days',
    ]);
    const ownerless = problemsOf(BASE + EXCEPTION.replace('    owner: ml-platform\n', ''));
    assert.ok(
      ownerless.some((p) => p.startsWith('exceptions[0]') && p.includes('owner')),
      ownerless.join('\n'),
    );
  });

  it('refuses a waiver that names neither a required attestation nor a waivable violation', () => {
    const problems = problemsOf(BASE + EXCEPTION.replace('waive: [scan]', 'waive: [digest_mismatch]'));
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /^exceptions\[0\]\.waive\[0\]:/);
  });
});
