import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Command } from '../../src/commands/command.types.ts';
import { createKeygenCommand } from '../../src/commands/keygen.ts';
import { createSignCommand } from '../../src/commands/sign.ts';
import { createVerifyCommand } from '../../src/commands/verify.ts';
import { RELEASE_PAYLOAD_TYPE, verifyReleaseBundle } from '../../src/trust/release-bundle.ts';
import { createVerifier } from '../../src/trust/verifier.ts';
import { issue, makeRoot } from '../trust/test-pki.ts';

async function run(
  factory: typeof createSignCommand,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const command: Command = factory({
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  });
  const code = await command.run(args);
  return { code, stdout, stderr };
}

let root: string;
let model: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'modelgate-sign-sigstore-'));
  model = join(root, 'model');
  await mkdir(model);
  await writeFile(join(model, 'model.bin'), Buffer.alloc(3 * 1024 * 1024 + 5, 7));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function signArgs(key: string, out: string, extra: string[] = []): string[] {
  return [
    model,
    '--key',
    key,
    '--format',
    'sigstore',
    '--model',
    'team/fraud',
    '--version',
    '2.0',
    '--environment',
    'prod',
    '--source-prefix',
    's3://ml-models/fraud/2.0',
    '--chunk-size',
    '1MiB',
    '--out',
    out,
    ...extra,
  ];
}

describe('when sign --format sigstore signs with a PEM or keygen key', () => {
  const keys = [
    ['P-256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ['P-384', () => generateKeyPairSync('ec', { namedCurve: 'P-384' })],
    ['Ed25519', () => generateKeyPairSync('ed25519')],
    ['RSA', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
  ] as const;
  for (const [kind, generate] of keys) {
    it(`writes MODEL-VERSION.sigstore.json that verifies with the ${kind} public key`, async () => {
      const { privateKey, publicKey } = generate();
      const dir = await mkdtemp(join(root, `${kind}-`));
      const keyFile = join(dir, 'signing.pem');
      const publicFile = join(dir, 'signing.pub.pem');
      await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
      await writeFile(publicFile, publicKey.export({ type: 'spki', format: 'pem' }));
      const result = await run(createSignCommand, signArgs(keyFile, dir));
      assert.equal(result.code, 0, result.stderr);
      const bytes = await readFile(join(dir, 'team_fraud-2.0.sigstore.json'));
      const bundle = JSON.parse(bytes.toString());
      assert.equal(bundle.mediaType, 'application/vnd.dev.sigstore.bundle.v0.3+json');
      assert.equal(bundle.dsseEnvelope.payloadType, RELEASE_PAYLOAD_TYPE);
      assert.match(bundle.verificationMaterial.publicKey.hint, /^[0-9a-f]{64}$/);
      const verifier = await createVerifier({ name: 'partner', publicKeyFile: publicFile }, dir);
      const verified = await verifyReleaseBundle(bytes, [verifier]);
      assert.ok(result.stdout.includes(`release team/fraud@${verified.digest}`));
      const manifest = JSON.parse(verified.payload.toString());
      assert.equal(manifest.files[0].chunks.length, 4);
    });
  }

  it('signs with a key written by modelgate keygen', async () => {
    const dir = await mkdtemp(join(root, 'keygen-'));
    assert.equal((await run(createKeygenCommand, ['--out', dir, '--name', 'rel'])).code, 0);
    const result = await run(createSignCommand, signArgs(join(dir, 'rel.private.jwk.json'), dir));
    assert.equal(result.code, 0, result.stderr);
    const jwks = JSON.parse(await readFile(join(dir, 'rel.jwks.json'), 'utf8'));
    const publicFile = join(dir, 'rel.pub.pem');
    await writeFile(
      publicFile,
      createPublicKey({ key: jwks.keys[0], format: 'jwk' }).export({ type: 'spki', format: 'pem' }),
    );
    const verifier = await createVerifier({ name: 'rel', publicKeyFile: publicFile }, dir);
    const verified = await verifyReleaseBundle(await readFile(join(dir, 'team_fraud-2.0.sigstore.json')), [
      verifier,
    ]);
    assert.equal(verified.signature.signer, 'rel');
  });

  it('puts a certificate chain in the bundle with --certificate-chain, verified against the root', async () => {
    const dir = await mkdtemp(join(root, 'chain-'));
    const ca = makeRoot(dir, 'sign-root');
    const intermediate = issue(dir, 'sign-int', ca, { ca: true });
    const leaf = issue(dir, 'sign-leaf', intermediate);
    const chainFile = join(dir, 'chain.pem');
    await writeFile(chainFile, leaf.pem + intermediate.pem);
    const result = await run(
      createSignCommand,
      signArgs(leaf.keyFile, dir, ['--certificate-chain', chainFile]),
    );
    assert.equal(result.code, 0, result.stderr);
    const verifier = await createVerifier({ name: 'ngc', certificate: { caFile: ca.certFile } }, dir);
    const verified = await verifyReleaseBundle(await readFile(join(dir, 'team_fraud-2.0.sigstore.json')), [
      verifier,
    ]);
    assert.equal(verified.signature.identity, 'CN=sign-leaf');
  });

  it('exits 2 for --certificate-chain without --format sigstore, and for --alg with it', async () => {
    const dir = await mkdtemp(join(root, 'usage-'));
    const args = signArgs(join(dir, 'k.pem'), dir).filter((arg) => arg !== '--format' && arg !== 'sigstore');
    assert.equal((await run(createSignCommand, [...args, '--certificate-chain', 'c.pem'])).code, 2);
    assert.equal(
      (await run(createSignCommand, signArgs(join(dir, 'k.pem'), dir, ['--alg', 'ES256']))).code,
      2,
    );
  });
});

describe('when a .sigstore.json release is checked with modelgate verify', () => {
  let dir: string;
  let publicFile: string;
  let bundleFile: string;

  before(async () => {
    dir = await mkdtemp(join(root, 'verify-'));
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    await writeFile(join(dir, 'k.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    publicFile = join(dir, 'k.pub.pem');
    await writeFile(publicFile, publicKey.export({ type: 'spki', format: 'pem' }));
    assert.equal((await run(createSignCommand, signArgs(join(dir, 'k.pem'), dir))).code, 0);
    bundleFile = join(dir, 'team_fraud-2.0.sigstore.json');
  });

  it('exits 0 and prints the release digest, the signer identity and the files', async () => {
    const result = await run(createVerifyCommand, [bundleFile, '--public-key', publicFile]);
    assert.equal(result.code, 0, result.stderr);
    const verified = await verifyReleaseBundle(await readFile(bundleFile), [
      await createVerifier({ name: 'k', publicKeyFile: publicFile }, dir),
    ]);
    assert.ok(result.stdout.includes(`release      team/fraud@${verified.digest}`));
    assert.ok(result.stdout.includes(`signer       key ${verified.signature.identity}`));
    assert.ok(result.stdout.includes('  model.bin  3145733'));
  });

  it('exits 1 naming untrusted_key for another key, and 2 for --jwks', async () => {
    const other = join(dir, 'other.pub.pem');
    await writeFile(
      other,
      generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }),
    );
    const wrong = await run(createVerifyCommand, [bundleFile, '--public-key', other]);
    assert.equal(wrong.code, 1);
    assert.ok(wrong.stderr.includes('untrusted_key'));
    assert.equal((await run(createVerifyCommand, [bundleFile, '--jwks', publicFile])).code, 2);
  });
});
