import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCatalog } from '../../src/catalog/catalog.ts';
import type { Catalog } from '../../src/catalog/catalog.types.ts';
import { createAttestCommand } from '../../src/commands/attest.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import {
  buildManifest,
  createSigner,
  releaseDigest,
  signRelease,
  writeRelease,
} from '../helpers/releases.ts';

const SCAN = 'https://modelgate.dev/attestation/scan/v1';

let root: string;
let scannerKey: string;
let strangerKey: string;
let scannerPublic: string;
const catalogs: Catalog[] = [];

async function pemPair(dir: string, name: string): Promise<{ privateFile: string; publicFile: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const privateFile = join(dir, `${name}.key.pem`);
  const publicFile = join(dir, `${name}.pub.pem`);
  await writeFile(privateFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  await writeFile(publicFile, publicKey.export({ type: 'spki', format: 'pem' }).toString());
  return { privateFile, publicFile };
}

async function attest(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const command = createAttestCommand({
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  });
  const code = await command.run(args);
  return { code, stdout, stderr };
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'modelgate-attest-'));
  const keys = join(root, 'keys');
  await mkdir(keys);
  const scanner = await pemPair(keys, 'scanner');
  const stranger = await pemPair(keys, 'stranger');
  scannerKey = scanner.privateFile;
  scannerPublic = scanner.publicFile;
  strangerKey = stranger.privateFile;
});

after(async () => {
  for (const catalog of catalogs) catalog.stop();
  await rm(root, { recursive: true, force: true });
});

describe('modelgate attest', () => {
  it('refuses a release reference that is not MODEL@sha256:HEX (exit 2)', async () => {
    const result = await attest([
      '--release',
      'fraud:1',
      '--predicate-type',
      SCAN,
      '--predicate',
      '-',
      '--key',
      scannerKey,
    ]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--release: expected MODEL@sha256/);
  });

  it('refuses a predicate that is not JSON (exit 1)', async () => {
    const predicate = join(root, 'bad.json');
    await writeFile(predicate, '{not json');
    const result = await attest([
      '--release',
      `fraud@sha256:${'a'.repeat(64)}`,
      '--predicate-type',
      SCAN,
      '--predicate',
      predicate,
      '--key',
      scannerKey,
    ]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /not JSON/);
  });
});

describe('when the catalog holds attestations made by modelgate attest', () => {
  it('attaches the ones an attestor verifies to their release and rejects the others with a reason', async () => {
    const dir = join(root, 'catalog');
    await mkdir(join(dir, 'attestations', 'scans'), { recursive: true });
    const signer = await createSigner(join(root, 'keys'), 'release');
    const manifest = buildManifest({
      model: 'fraud',
      version: '1',
      environment: 'prod',
      files: [{ path: 'model.bin', bytes: Buffer.from('weights'), sources: ['file:fraud/model.bin'] }],
    });
    const jws = await signRelease(manifest, signer);
    await writeRelease(dir, 'fraud-1.jws', jws);
    const digest = releaseDigest(jws);
    const predicate = join(root, 'scan.json');
    await writeFile(predicate, JSON.stringify({ result: 'pass', scanner: 'modelscan 0.8' }));
    const common = ['--release', `fraud@${digest}`, '--predicate-type', SCAN, '--predicate', predicate];
    for (const [file, key, format] of [
      ['attestations/scans/bundle.json', scannerKey, 'sigstore'],
      ['attestations/plain-dsse.json', scannerKey, 'dsse'],
      ['attestations/stranger.json', strangerKey, 'sigstore'],
    ] as const) {
      const result = await attest([...common, '--key', key, '--format', format, '--out', join(dir, file)]);
      assert.equal(result.code, 0, result.stderr);
    }
    const lines: Array<{ msg: string; reason?: string; file?: string }> = [];
    const metrics = createMetrics({ defaultMetrics: false });
    const catalog = createCatalog({
      config: { dir, pollSeconds: 0 },
      signers: [{ name: 'ci', jwksFile: signer.jwksFile, environments: ['prod'] }],
      attestors: [{ name: 'scanner', publicKeyFile: scannerPublic }],
      logger: createLogger({
        level: 'debug',
        destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
      }),
      metrics,
    });
    catalogs.push(catalog);
    const report = await catalog.start();
    assert.equal(report.loaded, 1);
    const found = catalog.attestations().forRelease(digest);
    assert.deepEqual(
      found.map((a) => [
        a.file,
        a.attestor,
        a.predicateType,
        (a.statement.predicate as { result: string }).result,
      ]),
      [
        ['attestations/plain-dsse.json', 'scanner', SCAN, 'pass'],
        ['attestations/scans/bundle.json', 'scanner', SCAN, 'pass'],
      ],
    );
    assert.deepEqual(
      report.rejected.map((r) => [r.file, r.reason]),
      [['attestations/stranger.json', 'attestation_unverified']],
    );
    assert.ok(lines.some((l) => l.msg === 'catalog file rejected' && l.reason === 'attestation_unverified'));
  });
});
