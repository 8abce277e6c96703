import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Manifest } from '../../src/catalog/release.types.ts';
import { createAttestCommand } from '../../src/commands/attest.ts';
import { createReportCommand } from '../../src/commands/report.ts';
import {
  buildManifest,
  createSigner,
  releaseDigest,
  signRelease,
  writeRelease,
} from '../helpers/releases.ts';

const SCAN = 'https://modelgate.dev/attestation/scan/v1';
const PROVENANCE = 'https://slsa.dev/provenance/v1';

let root: string;
const digests: Record<string, string> = {};

const quiet = { stdout: { write: () => true }, stderr: { write: () => true } };

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const command = createReportCommand({
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  });
  return { code: await command.run(args), stdout, stderr };
}

function short(name: string): string {
  return `${(digests[name] ?? '').slice(0, 19)}…`;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'modelgate-report-'));
  const catalog = join(root, 'releases');
  await mkdir(join(catalog, 'attestations'), { recursive: true });
  const keys = join(root, 'keys');
  await mkdir(keys);
  const signer = await createSigner(keys, 'release');
  const scanner = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  await writeFile(
    join(keys, 'scanner.pem'),
    scanner.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  );
  await writeFile(
    join(keys, 'scanner.pub.pem'),
    scanner.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  );

  const release = async (name: string, model: string, environment: string, extra: Partial<Manifest> = {}) => {
    const manifest = {
      ...buildManifest({
        model,
        version: '1',
        environment,
        files: [{ path: 'model.bin', bytes: Buffer.from(model), sources: [`file:${model}/model.bin`] }],
      }),
      ...extra,
    };
    const jws = await signRelease(manifest, signer);
    await writeRelease(catalog, `${name}.jws`, jws);
    digests[name] = releaseDigest(jws);
  };
  const attest = async (name: string, model: string, type: string, predicate: unknown) => {
    const file = join(root, `${name}-${type.length}.json`);
    await writeFile(file, JSON.stringify(predicate));
    const out = join(catalog, 'attestations', `${name}-${type === SCAN ? 'scan' : 'provenance'}.json`);
    const args = ['--release', `${model}@${digests[name]}`, '--predicate-type', type, '--predicate', file];
    assert.equal(
      await createAttestCommand(quiet).run([...args, '--key', join(keys, 'scanner.pem'), '--out', out]),
      0,
    );
  };

  await release('good', 'fraud', 'prod');
  await attest('good', 'fraud', SCAN, { result: 'pass' });
  await release('failing', 'churn', 'prod');
  await attest('failing', 'churn', SCAN, { result: 'fail' });
  await release('waived', 'ranker', 'prod');
  await release('orphan', 'fraud-int8', 'prod', { parent: `sha256:${'e'.repeat(64)}` });
  await attest('orphan', 'fraud-int8', SCAN, { result: 'pass' });
  await release('staging', 'fraud', 'staging');

  await writeFile(
    join(root, 'modelgate.yaml'),
    `
stores: { file: { root: ./models } }
catalog: { dir: ./releases }
issuers:
  - { name: prod, issuer: https://oidc.example.com, jwksFile: ./keys/release.jwks.json, audiences: [modelgate], algorithms: [ES256] }
serviceAccounts: []
signers:
  - { name: release-pipeline, jwksFile: ./keys/release.jwks.json, environments: [prod, staging] }
attestors:
  - { name: scanner, publicKeyFile: ./keys/scanner.pub.pem }
environments:
  prod:
    requiredAttestations:
      - { name: scan, predicateType: "${SCAN}", attestors: [scanner], conditions: [{ path: predicate.result, in: [pass] }] }
  staging: { mode: audit }
exceptions:
  - id: EXC-7
    owner: ml-platform
    justification: scanner cannot read this format yet
    environment: prod
    release: "ranker@${digests.waived}"
    waive: [scan]
    created: 2026-11-20T00:00:00Z
    expires: 2026-12-01T00:00:00Z
`,
  );
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('modelgate report', () => {
  it('prints, per environment, the admissible count, what each inadmissible release lacks, and the exceptions', async () => {
    const result = await run(['--config', join(root, 'modelgate.yaml'), '--at', '2026-11-25T12:00:00Z']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout.split('\n'), [
      'environment prod (enforce): 4 releases, 2 admissible',
      `  churn@${short('failing')} (1): not admissible`,
      '    - attestation_condition: the scan attestation does not meet: predicate.result in ["pass"]',
      `  fraud-int8@${short('orphan')} (1): not admissible`,
      `    - lineage: no ${PROVENANCE} attestation lists the parent sha256:${'e'.repeat(64)} in resolvedDependencies`,
      `  ranker@${short('waived')} (1): admissible under EXC-7`,
      `  exception EXC-7 (owner ml-platform) waives scan for ranker@${digests.waived}: 5.5 days left`,
      'environment staging (audit): 1 releases, 1 admissible',
      '',
    ]);
  });

  it('after the exception expires, reports the waived release as lacking its scan', async () => {
    const result = await run([
      '--config',
      join(root, 'modelgate.yaml'),
      '--at',
      '2026-12-02T00:00:00Z',
      '--fail-on-inadmissible',
    ]);
    assert.equal(result.code, 3);
    const lines = result.stdout.split('\n');
    assert.ok(lines.includes('environment prod (enforce): 4 releases, 1 admissible'), result.stdout);
    assert.ok(lines.includes(`  ranker@${short('waived')} (1): not admissible`), result.stdout);
    assert.ok(
      lines.includes(
        '    - attestation_missing: no scan attestation (https://modelgate.dev/attestation/scan/v1) from scanner',
      ),
    );
    assert.ok(
      lines.includes(
        `  exception EXC-7 (owner ml-platform) waives scan for ranker@${digests.waived}: expired 1.0 days ago`,
      ),
    );
  });

  it('refuses to run without --config (exit 2)', async () => {
    assert.equal((await run([])).code, 2);
  });
});
