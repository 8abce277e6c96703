import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CreateCatalogOptions, createCatalog } from '../../src/catalog/catalog.ts';
import type { Catalog } from '../../src/catalog/catalog.types.ts';
import type { Manifest } from '../../src/catalog/release.types.ts';
import { canonicalJson } from '../../src/catalog/signature.ts';
import { createIntakeCommand } from '../../src/commands/intake.ts';
import { createKeygenCommand } from '../../src/commands/keygen.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.ts';
import { RELEASE_PAYLOAD_TYPE, signReleaseBundle } from '../../src/trust/release-bundle.ts';
import { buildManifest } from '../helpers/releases.ts';
import { keylessBundle, makeLog, trustedRootFor } from '../trust/test-keyless.ts';
import { issue, makeRoot, type TestCert } from '../trust/test-pki.ts';

const REPO = new URL('../../', import.meta.url).pathname;
const FIXTURES = join(REPO, 'test/fixtures/oms');

interface LogLine {
  level: number | string;
  msg: string;
  file?: string;
  reason?: string;
}

let root: string;
const catalogs: Catalog[] = [];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'modelgate-catalog-trust-'));
});

after(async () => {
  for (const catalog of catalogs) catalog.stop();
  await rm(root, { recursive: true, force: true });
});

let count = 0;
async function harness(
  options: Pick<CreateCatalogOptions, 'signers' | 'upstreamSigners'> & { clock?: () => number },
) {
  const dir = join(root, `catalog-${count++}`);
  await mkdir(dir);
  const lines: LogLine[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) },
  });
  const metrics = createMetrics({ defaultMetrics: false });
  const catalog = createCatalog({
    config: { dir, pollSeconds: 0 },
    logger,
    metrics,
    baseDir: root,
    ...options,
  });
  catalogs.push(catalog);
  return { dir, catalog, metrics, lines };
}

function manifest(model: string, version: string, environment = 'prod'): Manifest {
  return buildManifest({
    model,
    version,
    environment,
    files: [
      { path: 'model.bin', bytes: Buffer.from(`${model}@${version}`), sources: [`file:${model}/model.bin`] },
    ],
  });
}

async function rejected(metrics: Metrics): Promise<Record<string, number>> {
  const metric = metrics.registry.getSingleMetric('modelgate_catalog_rejected_total');
  const out: Record<string, number> = {};
  for (const value of (await metric?.get())?.values ?? []) out[String(value.labels.reason)] = value.value;
  return out;
}

function pemKey(curve: 'P-256' | 'P-384' | 'ed25519'): { privateKey: KeyObject; publicPem: string } {
  const pair =
    curve === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: curve === 'P-256' ? 'prime256v1' : 'secp384r1' });
  return {
    privateKey: pair.privateKey,
    publicPem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

describe('when the catalog holds Sigstore-bundle releases', () => {
  it('serves releases signed with P-256, P-384 and Ed25519 keys, naming the signer and its key', async () => {
    const signers = [];
    const files: Array<[string, string]> = [];
    for (const curve of ['P-256', 'P-384', 'ed25519'] as const) {
      const { privateKey, publicPem } = pemKey(curve);
      const keyFile = join(root, `${curve}-${count}.pem`);
      await writeFile(keyFile, publicPem);
      signers.push({ name: `partner-${curve}`, publicKeyFile: keyFile, environments: ['prod'] });
      files.push([
        `m-${curve.toLowerCase()}-1.sigstore.json`,
        signReleaseBundle(manifest(`m-${curve.toLowerCase()}`, '1'), privateKey),
      ]);
    }
    const h = await harness({ signers });
    for (const [name, text] of files) await writeFile(join(h.dir, name), text);
    const report = await h.catalog.start();
    assert.deepEqual(report.rejected, []);
    for (const curve of ['p-256', 'p-384', 'ed25519']) {
      const release = h.catalog.resolve(`m-${curve}`, { kind: 'version', version: '1' });
      assert.equal(release.trust, 'trusted');
      assert.equal(release.signer, `partner-${curve === 'ed25519' ? 'ed25519' : curve.toUpperCase()}`);
      assert.equal(release.signature?.method, 'key');
      assert.match(release.signature?.identity ?? '', /^sha256:[0-9a-f]{64}$/);
    }
  });

  it('never reads a .sigstore.json file as an unsigned manifest', async () => {
    const h = await harness({ signers: [] });
    await writeFile(join(h.dir, 'plain.sigstore.json'), canonicalJson(manifest('plain', '1')));
    const report = await h.catalog.start();
    assert.equal(report.loaded, 0);
    assert.equal(report.rejected[0]?.reason, 'invalid_bundle');
  });

  describe('signed through a certificate chain', () => {
    let ca: TestCert;
    let good: TestCert;
    let expired: TestCert;
    let noUsage: TestCert;
    before(async () => {
      const pki = join(root, 'pki');
      await mkdir(pki);
      ca = makeRoot(pki, 'release-ca');
      good = issue(pki, 'good', ca);
      expired = issue(pki, 'expired', ca, { days: -1 });
      noUsage = issue(pki, 'no-usage', ca, { codeSigning: false });
    });

    const sign = (leaf: TestCert, m: Manifest) =>
      signReleaseBundle(m, createPrivateKey(execFileSync('cat', [leaf.keyFile])), [leaf.der]);

    it('serves a valid chain and rejects an expired or wrong-usage certificate with its reason', async () => {
      const h = await harness({
        signers: [{ name: 'ngc', certificate: { caFile: ca.certFile }, environments: ['prod'] }],
      });
      await writeFile(join(h.dir, 'good.sigstore.json'), sign(good, manifest('good', '1')));
      await writeFile(join(h.dir, 'expired.sigstore.json'), sign(expired, manifest('expired', '1')));
      await writeFile(join(h.dir, 'usage.sigstore.json'), sign(noUsage, manifest('usage', '1')));
      const report = await h.catalog.start();
      assert.equal(report.loaded, 1);
      const release = h.catalog.resolve('good', { kind: 'version', version: '1' });
      assert.equal(release.signature?.method, 'certificate');
      assert.match(release.signature?.identity ?? '', /good/);
      assert.deepEqual(await rejected(h.metrics), { certificate_expired: 1, wrong_usage: 1 });
      const reasons = h.lines.filter((l) => l.msg === 'catalog file rejected').map((l) => l.reason);
      assert.deepEqual(reasons.sort(), ['certificate_expired', 'wrong_usage']);
    });
  });

  it('rejects a release whose key no signer has as unknown_signer', async () => {
    const trustedKey = pemKey('P-256');
    const stranger = pemKey('P-256');
    const keyFile = join(root, `trusted-${count}.pem`);
    await writeFile(keyFile, trustedKey.publicPem);
    const h = await harness({
      signers: [{ name: 'partner', publicKeyFile: keyFile, environments: ['prod'] }],
    });
    await writeFile(
      join(h.dir, 'x.sigstore.json'),
      signReleaseBundle(manifest('x', '1'), stranger.privateKey),
    );
    await h.catalog.start();
    assert.deepEqual(await rejected(h.metrics), { unknown_signer: 1 });
  });

  it('rejects a keyless release whose identity is outside the policy as untrusted_identity', async () => {
    const pki = join(root, `keyless-${count}`);
    await mkdir(pki);
    const fulcio = makeRoot(pki, 'fulcio');
    const log = makeLog();
    const trustedRoot = join(pki, 'trusted_root.json');
    await writeFile(trustedRoot, JSON.stringify(trustedRootFor(fulcio, log)));
    const issuer = 'https://token.actions.example';
    const inside = issue(pki, 'inside', fulcio, { email: 'release@acme.example', oidcIssuer: issuer });
    const outside = issue(pki, 'outside', fulcio, { email: 'mallory@acme.example', oidcIssuer: issuer });
    const h = await harness({
      signers: [
        {
          name: 'ci-keyless',
          sigstore: { trustedRoot, identities: [{ issuer, subject: 'release@acme.example' }] },
          environments: ['prod'],
        },
      ],
    });
    for (const [name, leaf] of [
      ['inside', inside],
      ['outside', outside],
    ] as const) {
      const payload = Buffer.from(canonicalJson(manifest(name, '1')));
      const bundle = keylessBundle({ payloadType: RELEASE_PAYLOAD_TYPE, payload, leaf, log });
      await writeFile(join(h.dir, `${name}.sigstore.json`), JSON.stringify(bundle));
    }
    const report = await h.catalog.start();
    assert.equal(report.loaded, 1);
    const release = h.catalog.resolve('inside', { kind: 'version', version: '1' });
    assert.deepEqual(release.signature, { method: 'sigstore', identity: 'release@acme.example', issuer });
    assert.deepEqual(await rejected(h.metrics), { untrusted_identity: 1 });
  });
});

describe('when a signer is revoked', () => {
  it('rejects its releases from the revocation instant on, at the next scan, and sets the gauge', async () => {
    const key = pemKey('P-256');
    const keyFile = join(root, `revoked-${count}.pem`);
    await writeFile(keyFile, key.publicPem);
    let now = Date.parse('2026-11-25T00:00:00Z');
    const h = await harness({
      signers: [
        {
          name: 'partner',
          publicKeyFile: keyFile,
          environments: ['prod'],
          revoked: { at: '2026-11-26T00:00:00Z', reason: 'key leaked' },
        },
      ],
      clock: () => now,
    });
    await writeFile(join(h.dir, 'r.sigstore.json'), signReleaseBundle(manifest('r', '1'), key.privateKey));
    assert.equal((await h.catalog.start()).loaded, 1);
    const gauge = () => h.metrics.registry.getSingleMetric('modelgate_signer_revoked')?.get();
    assert.equal((await gauge())?.values[0]?.value, 0);
    now = Date.parse('2026-11-26T00:00:01Z');
    const report = await h.catalog.reload();
    assert.equal(report.loaded, 0);
    assert.equal(report.rejected[0]?.reason, 'signer_revoked');
    assert.throws(() => h.catalog.resolve('r', { kind: 'version', version: '1' }), {
      code: 'MG_MODEL_NOT_FOUND',
    });
    assert.equal((await gauge())?.values[0]?.value, 1);
  });
});

describe('when releases carry upstream OMS evidence', () => {
  const upstreamSigner = {
    name: 'oms-partner',
    publicKeyFile: join(FIXTURES, 'keys/signing-key-pub.pem'),
    models: ['partner/*'],
  };
  let keys: string;
  let releaseSigner: { name: string; jwksFile: string; environments: string[] };

  const quiet = { stdout: { write: () => true }, stderr: { write: () => true } };

  before(async () => {
    keys = join(root, 'intake-keys');
    assert.equal(await createKeygenCommand(quiet).run(['--out', keys, '--name', 'intake']), 0);
    releaseSigner = { name: 'intake', jwksFile: join(keys, 'intake.jwks.json'), environments: ['prod'] };
  });

  /** Runs `modelgate intake` on the elliptic-key fixture into `out`; returns the release file. */
  async function intake(out: string, model: string): Promise<string> {
    const dir = join(FIXTURES, 'v1.1.0-elliptic-key');
    const code = await createIntakeCommand(quiet).run([
      dir,
      '--oms',
      join(dir, 'model.sig'),
      '--ignore-path',
      join(dir, 'ignore-me'),
      '--model',
      model,
      '--version',
      '1',
      '--environment',
      'prod',
      '--source-prefix',
      'file:partner/',
      '--key',
      join(keys, 'intake.private.jwk.json'),
      '--public-key',
      join(FIXTURES, 'keys/signing-key-pub.pem'),
      '--out',
      out,
    ]);
    assert.equal(code, 0);
    const [name] = (await readdir(out)).filter((f) => f.endsWith('.jws'));
    assert.ok(name);
    return join(out, name);
  }

  it('re-verifies the evidence at load and records the upstream identity', async () => {
    const h = await harness({ signers: [releaseSigner], upstreamSigners: [upstreamSigner] });
    await intake(h.dir, 'partner/llm');
    const report = await h.catalog.start();
    assert.deepEqual(report.rejected, []);
    const release = h.catalog.resolve('partner/llm', { kind: 'version', version: '1' });
    assert.equal(release.upstream?.method, 'key');
    assert.equal(release.upstream?.signer, 'oms-partner');
    assert.match(release.upstream?.identity ?? '', /^sha256:[0-9a-f]{64}$/);
  });

  it('rejects a release whose embedded bundle was altered (upstream_unverified) and never serves it', async () => {
    const h = await harness({ signers: [releaseSigner], upstreamSigners: [upstreamSigner] });
    const file = await intake(await mkdtemp(join(root, 'x-')), 'partner/llm');
    // Re-sign the manifest with the release key after changing the evidence: the release signature is
    // valid, only the upstream evidence is not.
    const { verifyRelease, loadSigner, signManifest } = await import('../../src/catalog/signature.ts');
    const signer = await loadSigner(releaseSigner);
    const { manifest } = await verifyRelease(await readFile(file, 'utf8'), [signer]);
    const upstream = manifest.upstream;
    assert.ok(upstream);
    const envelope = upstream.bundle.dsseEnvelope as { signatures: Array<{ sig: string }> };
    const sig = Buffer.from(envelope.signatures[0]?.sig ?? '', 'base64');
    sig[sig.length - 1] = (sig.at(-1) ?? 0) ^ 1;
    envelope.signatures[0] = { ...envelope.signatures[0], sig: sig.toString('base64') };
    const privateJwk = JSON.parse(await readFile(join(keys, 'intake.private.jwk.json'), 'utf8'));
    await writeFile(
      join(h.dir, 'altered.jws'),
      await signManifest(manifest, privateJwk, privateJwk.kid, privateJwk.alg),
    );
    const report = await h.catalog.start();
    assert.equal(report.loaded, 0);
    assert.equal(report.rejected[0]?.reason, 'upstream_unverified');
    assert.deepEqual(await rejected(h.metrics), { upstream_unverified: 1 });
  });

  it('rejects a release of a covered model that carries no evidence at all', async () => {
    const h = await harness({ signers: [releaseSigner], upstreamSigners: [upstreamSigner] });
    const privateJwk = JSON.parse(await readFile(join(keys, 'intake.private.jwk.json'), 'utf8'));
    const { signManifest } = await import('../../src/catalog/signature.ts');
    await writeFile(
      join(h.dir, 'bare.jws'),
      await signManifest(manifest('partner/bare', '1'), privateJwk, privateJwk.kid, privateJwk.alg),
    );
    const report = await h.catalog.start();
    assert.equal(report.rejected[0]?.reason, 'upstream_unverified');
  });

  it('loads evidence on a model no upstream signer covers without requiring it', async () => {
    const h = await harness({ signers: [releaseSigner], upstreamSigners: [upstreamSigner] });
    await intake(h.dir, 'inhouse/llm');
    const report = await h.catalog.start();
    assert.equal(report.loaded, 1);
    assert.equal(h.catalog.resolve('inhouse/llm', { kind: 'version', version: '1' }).upstream, undefined);
  });
});
