import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MANIFEST_SCHEMA } from '../../src/catalog/manifest.ts';
import type { Manifest } from '../../src/catalog/release.types.ts';
import { parseBundle } from '../../src/trust/bundle.ts';
import {
  RELEASE_PAYLOAD_TYPE,
  signReleaseBundle,
  verifyReleaseBundle,
} from '../../src/trust/release-bundle.ts';
import { TrustRefusedError } from '../../src/trust/trust-error.ts';
import { createVerifier, verifyWithAny } from '../../src/trust/verifier.ts';
import type {
  SignerSpec,
  SigstoreIdentity,
  TrustRefusalReason,
  TrustVerifier,
} from '../../src/trust/verifier.types.ts';
import { keylessBundle, makeLog, type TestLog, trustedRootFor } from './test-keyless.ts';
import { issue, makeRoot, type TestCert } from './test-pki.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'oms');
const PUBLIC_GOOD = 'sigstore-public-good.trusted_root.json';

const manifest: Manifest = {
  schema: MANIFEST_SCHEMA,
  model: 'fraud-detector',
  version: '1.0.0',
  environment: 'prod',
  created: '2026-11-25T10:00:00Z',
  files: [
    {
      path: 'model.bin',
      size: 0,
      digest: `sha256:${'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'}`,
      sources: ['file:m/model.bin'],
    },
  ],
};

async function refusal(promise: Promise<unknown>): Promise<TrustRefusalReason> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof TrustRefusedError) return error.reason;
    throw error;
  }
  assert.fail('expected a refusal, got a verified signature');
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'modelgate-trust-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function keyVerifier(publicKey: KeyObject, name = 'partner'): Promise<TrustVerifier> {
  const file = join(dir, `${name}-${Math.random().toString(36).slice(2)}.pem`);
  await writeFile(file, publicKey.export({ type: 'spki', format: 'pem' }));
  return createVerifier({ name, publicKeyFile: file }, dir);
}

describe('when releases are signed as Sigstore bundles with PEM keys', () => {
  const kinds = [
    ['ECDSA P-256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ['ECDSA P-384', () => generateKeyPairSync('ec', { namedCurve: 'P-384' })],
    ['ECDSA P-521', () => generateKeyPairSync('ec', { namedCurve: 'P-521' })],
    ['Ed25519', () => generateKeyPairSync('ed25519')],
    ['RSA 2048', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
  ] as const;
  for (const [kind, generate] of kinds) {
    it(`verifies a ${kind} bundle and returns the payload, digest and key identity`, async () => {
      const { privateKey, publicKey } = generate();
      const bundle = Buffer.from(signReleaseBundle(manifest, privateKey));
      const verified = await verifyReleaseBundle(bundle, [await keyVerifier(publicKey)]);
      assert.equal(JSON.parse(verified.payload.toString()).model, 'fraud-detector');
      assert.match(verified.digest, /^sha256:[0-9a-f]{64}$/);
      assert.equal(verified.signature.method, 'key');
      assert.match(verified.signature.identity, /^sha256:[0-9a-f]{64}$/);
      assert.equal(JSON.parse(bundle.toString()).dsseEnvelope.payloadType, RELEASE_PAYLOAD_TYPE);
    });
  }

  it('refuses a bundle signed by a key it does not know (untrusted_key)', async () => {
    const signer = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const bundle = Buffer.from(signReleaseBundle(manifest, signer.privateKey));
    assert.equal(
      await refusal(verifyReleaseBundle(bundle, [await keyVerifier(other.publicKey)])),
      'untrusted_key',
    );
  });

  it('refuses a bundle whose payload was changed after signing (bad_signature)', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const json = JSON.parse(signReleaseBundle(manifest, privateKey));
    json.dsseEnvelope.payload = Buffer.from(JSON.stringify({ ...manifest, environment: 'dev' })).toString(
      'base64',
    );
    const bundle = Buffer.from(JSON.stringify(json));
    assert.equal(await refusal(verifyReleaseBundle(bundle, [await keyVerifier(publicKey)])), 'bad_signature');
  });

  it('refuses a signed OMS statement offered as a release (wrong_envelope)', async () => {
    const sig = await readFile(join(FIXTURES, 'v1.1.0-elliptic-key', 'model.sig'));
    const verifier = await createVerifier({ name: 'k', publicKeyFile: 'keys/signing-key-pub.pem' }, FIXTURES);
    assert.equal(await refusal(verifyReleaseBundle(sig, [verifier])), 'wrong_envelope');
  });
});

describe('when a signer is revoked', () => {
  it('refuses what it signed from the revocation instant on (signer_revoked), and not before', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const file = join(dir, 'revoked.pem');
    await writeFile(file, publicKey.export({ type: 'spki', format: 'pem' }));
    const spec: SignerSpec = {
      name: 'partner',
      publicKeyFile: file,
      revoked: { at: '2026-06-01T00:00:00Z', reason: 'key leaked' },
    };
    const verifier = await createVerifier(spec, dir);
    const bundle = Buffer.from(signReleaseBundle(manifest, privateKey));
    const at = new Date('2026-06-01T00:00:00Z');
    assert.equal(await refusal(verifyReleaseBundle(bundle, [verifier], { at })), 'signer_revoked');
    const before = await verifyReleaseBundle(bundle, [verifier], { at: new Date('2026-05-31T23:59:59Z') });
    assert.equal(before.signature.signer, 'partner');
  });
});

describe('when the signer is an X.509 chain to configured roots', () => {
  let root: TestCert;
  let intermediate: TestCert;
  let leaf: TestCert;
  let verifier: TrustVerifier;

  before(async () => {
    root = makeRoot(dir, 'test-root');
    intermediate = issue(dir, 'test-int', root, { ca: true });
    leaf = issue(dir, 'test-leaf', intermediate, { days: 30, curve: 'P-384' });
    verifier = await createVerifier({ name: 'ngc', certificate: { caFile: root.certFile } }, dir);
  });

  async function signedWith(signing: TestCert, chain: TestCert[]): Promise<Buffer> {
    const { createPrivateKey } = await import('node:crypto');
    const key = createPrivateKey(await readFile(signing.keyFile));
    return Buffer.from(
      signReleaseBundle(
        manifest,
        key,
        chain.map((cert) => cert.der),
      ),
    );
  }

  it('verifies a leaf → intermediate chain and names the leaf subject and the root subject', async () => {
    const verified = await verifyReleaseBundle(await signedWith(leaf, [leaf, intermediate]), [verifier]);
    assert.equal(verified.signature.method, 'certificate');
    assert.equal(verified.signature.identity, 'CN=test-leaf');
    assert.equal(verified.signature.issuer, 'CN=test-root');
  });

  it('refuses a chain that is missing its intermediate (certificate_invalid)', async () => {
    assert.equal(
      await refusal(verifyReleaseBundle(await signedWith(leaf, [leaf]), [verifier])),
      'certificate_invalid',
    );
  });

  it('refuses a chain to another root (certificate_invalid)', async () => {
    const otherRoot = makeRoot(dir, 'other-root');
    const other = await createVerifier({ name: 'other', certificate: { caFile: otherRoot.certFile } }, dir);
    const bundle = await signedWith(leaf, [leaf, intermediate]);
    assert.equal(await refusal(verifyReleaseBundle(bundle, [other])), 'certificate_invalid');
  });

  it('refuses a leaf from another CA placed in front of the trusted intermediate (certificate_invalid)', async () => {
    const rogueRoot = makeRoot(dir, 'rogue-root');
    const rogueLeaf = issue(dir, 'rogue-leaf', rogueRoot);
    const bundle = await signedWith(rogueLeaf, [rogueLeaf, intermediate]);
    assert.equal(await refusal(verifyReleaseBundle(bundle, [verifier])), 'certificate_invalid');
  });

  it('refuses a leaf without the codeSigning usage (wrong_usage)', async () => {
    const server = issue(dir, 'test-noeku', intermediate, { codeSigning: false });
    assert.equal(
      await refusal(verifyReleaseBundle(await signedWith(server, [server, intermediate]), [verifier])),
      'wrong_usage',
    );
  });

  it('refuses a chain outside its validity at the signing instant (certificate_expired)', async () => {
    const bundle = await signedWith(leaf, [leaf, intermediate]);
    const later = new Date(Date.now() + 31 * 24 * 3600 * 1000);
    assert.equal(
      await refusal(verifyReleaseBundle(bundle, [verifier], { at: later })),
      'certificate_expired',
    );
    const earlier = new Date(Date.now() - 24 * 3600 * 1000);
    assert.equal(
      await refusal(verifyReleaseBundle(bundle, [verifier], { at: earlier })),
      'certificate_expired',
    );
  });

  it('refuses a chain whose leaf did not make the signature (bad_signature)', async () => {
    const impostor = issue(dir, 'test-impostor', intermediate);
    const json = JSON.parse((await signedWith(impostor, [impostor, intermediate])).toString());
    json.verificationMaterial.x509CertificateChain.certificates[0].rawBytes = leaf.der.toString('base64');
    assert.equal(
      await refusal(verifyReleaseBundle(Buffer.from(JSON.stringify(json)), [verifier])),
      'bad_signature',
    );
  });
});

describe('when the signer is a keyless identity over a private trusted root', () => {
  let fulcio: TestCert;
  let log: TestLog;
  let rootFile: string;
  const identity = {
    issuer: 'https://token.actions.githubusercontent.com',
    subject: 'release-bot@acme.test',
  };

  before(async () => {
    fulcio = makeRoot(dir, 'test-fulcio');
    log = makeLog();
    rootFile = join(dir, 'trusted_root.json');
    await writeFile(rootFile, JSON.stringify(trustedRootFor(fulcio, log)));
  });

  function bundleFor(
    email: string,
    oidcIssuer: string,
    options: { codeSigning?: boolean; log?: TestLog } = {},
  ): Buffer {
    const leaf = issue(dir, `keyless-${Math.random().toString(36).slice(2)}`, fulcio, {
      days: 1,
      email,
      oidcIssuer,
      ...(options.codeSigning === undefined ? {} : { codeSigning: options.codeSigning }),
    });
    const payload = Buffer.from(JSON.stringify(manifest));
    const json = keylessBundle({ payloadType: RELEASE_PAYLOAD_TYPE, payload, leaf, log: options.log ?? log });
    return Buffer.from(JSON.stringify(json));
  }

  function keyless(identities: SigstoreIdentity[], trustedRoot = rootFile): Promise<TrustVerifier> {
    return createVerifier({ name: 'ci-keyless', sigstore: { trustedRoot, identities } }, dir);
  }

  it('verifies a bundle whose SAN and issuer match, with the log time as signing time', async () => {
    const verified = await verifyReleaseBundle(bundleFor(identity.subject, identity.issuer), [
      await keyless([identity]),
    ]);
    assert.equal(verified.signature.method, 'sigstore');
    assert.equal(verified.signature.identity, identity.subject);
    assert.equal(verified.signature.issuer, identity.issuer);
    assert.ok(verified.signature.signedAt instanceof Date);
  });

  it('matches subjectPattern anchored at both ends', async () => {
    const bundle = bundleFor(identity.subject, identity.issuer);
    const anchored = await keyless([{ issuer: identity.issuer, subjectPattern: 'release-bot@acme\\.test' }]);
    assert.equal((await verifyReleaseBundle(bundle, [anchored])).signature.identity, identity.subject);
    const partial = await keyless([{ issuer: identity.issuer, subjectPattern: 'release-bot' }]);
    assert.equal(await refusal(verifyReleaseBundle(bundle, [partial])), 'identity_mismatch');
  });

  it('refuses another subject or another issuer (identity_mismatch)', async () => {
    const verifier = await keyless([identity]);
    assert.equal(
      await refusal(verifyReleaseBundle(bundleFor('intruder@acme.test', identity.issuer), [verifier])),
      'identity_mismatch',
    );
    assert.equal(
      await refusal(verifyReleaseBundle(bundleFor(identity.subject, 'https://evil.test'), [verifier])),
      'identity_mismatch',
    );
  });

  it('refuses an entry from a log the root does not trust (tlog_missing)', async () => {
    const bundle = bundleFor(identity.subject, identity.issuer, { log: makeLog('rogue.test.invalid') });
    assert.equal(await refusal(verifyReleaseBundle(bundle, [await keyless([identity])])), 'tlog_missing');
  });

  it('refuses a bundle without a log entry (tlog_missing)', async () => {
    const json = JSON.parse(bundleFor(identity.subject, identity.issuer).toString());
    json.verificationMaterial.tlogEntries = [];
    assert.equal(
      await refusal(verifyReleaseBundle(Buffer.from(JSON.stringify(json)), [await keyless([identity])])),
      'tlog_missing',
    );
  });

  it('refuses a leaf without the codeSigning usage (wrong_usage)', async () => {
    const bundle = bundleFor(identity.subject, identity.issuer, { codeSigning: false });
    assert.equal(await refusal(verifyReleaseBundle(bundle, [await keyless([identity])])), 'wrong_usage');
  });

  it('refuses the private-root bundle against the public-good root (certificate_invalid)', async () => {
    const publicGood = await keyless([identity], join(FIXTURES, PUBLIC_GOOD));
    const reason = await refusal(
      verifyReleaseBundle(bundleFor(identity.subject, identity.issuer), [publicGood]),
    );
    assert.ok(reason === 'certificate_invalid' || reason === 'tlog_missing', reason);
  });

  it('verifies the public-good fixture only against the public-good root', async () => {
    const sig = parseBundle(await readFile(join(FIXTURES, 'v1.1.0-sigstore', 'model.sig')));
    const who = { issuer: 'https://sigstore.verify.ibm.com/oauth2', subject: 'stefanb@us.ibm.com' };
    const publicGood = await keyless([who], join(FIXTURES, PUBLIC_GOOD));
    assert.equal((await publicGood.verify({ kind: 'bundle', bundle: sig })).identity, who.subject);
    assert.ok(
      ['certificate_invalid', 'tlog_missing'].includes(
        await refusal((await keyless([who])).verify({ kind: 'bundle', bundle: sig })),
      ),
    );
  });
});

describe('when several signers are tried', () => {
  it('returns the one that verifies, and otherwise the most telling refusal', async () => {
    const a = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const b = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const verifiers = [await keyVerifier(a.publicKey, 'a'), await keyVerifier(b.publicKey, 'b')];
    const bundle = Buffer.from(signReleaseBundle(manifest, b.privateKey));
    assert.equal((await verifyReleaseBundle(bundle, verifiers)).signature.signer, 'b');
    const json = JSON.parse(bundle.toString());
    json.dsseEnvelope.payload = Buffer.from('{}').toString('base64');
    assert.equal(
      await refusal(
        verifyWithAny(verifiers, { kind: 'bundle', bundle: parseBundle(Buffer.from(JSON.stringify(json))) }),
      ),
      'bad_signature',
    );
    assert.equal(
      await refusal(verifyWithAny([], { kind: 'bundle', bundle: parseBundle(bundle) })),
      'untrusted_key',
    );
  });
});
