import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CompactSign, exportJWK, FlattenedSign, generateKeyPair, importJWK } from 'jose';
import type { Manifest } from '../../src/catalog/release.types.ts';
import {
  canonicalJson,
  type LoadedSigner,
  loadSigner,
  parseUnsignedRelease,
  RELEASE_JWS_TYPE,
  ReleaseRejectedError,
  verifyRelease,
} from '../../src/catalog/signature.ts';
import { KeyFileError } from '../../src/keys.ts';
import { buildManifest, createSigner, signRelease, type TestSigner } from '../helpers/releases.ts';

let dir: string;
let prodSigner: TestSigner;
let stagingSigner: TestSigner;
let strangerSigner: TestSigner;
let signers: LoadedSigner[];
let manifest: Manifest;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'modelgate-signature-'));
  prodSigner = await createSigner(dir, 'prod-pipeline', 'ES256');
  stagingSigner = await createSigner(dir, 'staging-pipeline', 'EdDSA');
  strangerSigner = await createSigner(dir, 'stranger', 'ES256');
  signers = [
    await loadSigner({ name: 'prod-pipeline', jwksFile: prodSigner.jwksFile, environments: ['prod'] }),
    await loadSigner({
      name: 'staging-pipeline',
      jwksFile: stagingSigner.jwksFile,
      environments: ['staging'],
    }),
  ];
  manifest = buildManifest({
    model: 'fraud-detector',
    version: '1.0',
    environment: 'prod',
    files: [{ path: 'model.bin', bytes: Buffer.from('weights'), sources: ['file:fraud/1.0/model.bin'] }],
  });
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Signs arbitrary payload bytes with an arbitrary header, bypassing manifest validation. */
async function signRaw(
  payload: Buffer,
  signer: TestSigner,
  header: Record<string, unknown> = {},
): Promise<string> {
  const key = await importJWK(signer.privateJwk, signer.alg);
  return new CompactSign(payload)
    .setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: RELEASE_JWS_TYPE, ...header })
    .sign(key);
}

async function rejection(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ReleaseRejectedError, `expected ReleaseRejectedError, got ${String(error)}`);
    return error.reason;
  }
  assert.fail('expected the release to be rejected');
}

describe('when a release is signed by a signer trusted for its environment', () => {
  it('verifies, with the digest of the exact payload bytes', async () => {
    const jws = await signRelease(manifest, prodSigner);
    const verified = await verifyRelease(`${jws}\n`, signers);
    const payload = Buffer.from(jws.split('.')[1]!, 'base64url');
    assert.equal(verified.trust, 'trusted');
    assert.equal(verified.signer?.name, 'prod-pipeline');
    assert.equal(verified.kid, prodSigner.kid);
    assert.deepEqual(verified.payload, payload);
    assert.equal(verified.digest, `sha256:${createHash('sha256').update(payload).digest('hex')}`);
    assert.deepEqual(verified.manifest, manifest);
  });

  it('verifies an EdDSA signature', async () => {
    const staging = { ...manifest, environment: 'staging' };
    const verified = await verifyRelease(await signRelease(staging, stagingSigner), signers);
    assert.equal(verified.trust, 'trusted');
    assert.equal(verified.signer?.name, 'staging-pipeline');
  });
});

describe('when the payload of a signed release is swapped', () => {
  it('rejects it as bad_signature', async () => {
    const jws = await signRelease(manifest, prodSigner);
    const other = canonicalJson({ ...manifest, version: '6.6.6' });
    const [header, , signature] = jws.split('.');
    const tampered = `${header}.${Buffer.from(other).toString('base64url')}.${signature}`;
    assert.equal(await rejection(verifyRelease(tampered, signers)), 'bad_signature');
  });
});

describe('when the header typ is not modelgate-release+jws', () => {
  it('rejects it as wrong_type, even with a good signature', async () => {
    const jws = await signRaw(Buffer.from(canonicalJson(manifest)), prodSigner, { typ: 'JWT' });
    assert.equal(await rejection(verifyRelease(jws, signers)), 'wrong_type');
  });
});

describe('when the kid belongs to no configured signer', () => {
  it('rejects it as unknown_signer', async () => {
    const jws = await signRelease(manifest, strangerSigner);
    assert.equal(await rejection(verifyRelease(jws, signers)), 'unknown_signer');
  });
});

describe('when a configured key signs for an environment its signer may not sign for', () => {
  it('loads it as untrusted_signer instead of rejecting it', async () => {
    const staging = { ...manifest, environment: 'staging' };
    const verified = await verifyRelease(await signRelease(staging, prodSigner), signers);
    assert.equal(verified.trust, 'untrusted_signer');
    assert.equal(verified.signer?.name, 'prod-pipeline');
  });
});

describe('when the same key is configured for two signers', () => {
  it('picks the signer trusted for the environment', async () => {
    const both = [
      await loadSigner({ name: 'a-staging', jwksFile: prodSigner.jwksFile, environments: ['staging'] }),
      await loadSigner({ name: 'b-prod', jwksFile: prodSigner.jwksFile, environments: ['prod'] }),
    ];
    const verified = await verifyRelease(await signRelease(manifest, prodSigner), both);
    assert.equal(verified.trust, 'trusted');
    assert.equal(verified.signer?.name, 'b-prod');
  });
});

describe('when the file is not a compact JWS', () => {
  for (const [scenario, text] of [
    ['two parts', 'abc.def'],
    ['non-base64url characters', 'a+b.c.d'],
    ['a header that is not JSON', `${Buffer.from('nope').toString('base64url')}.e30.sig`],
    ['a JSON-serialized JWS', '{"payload":"e30","signatures":[]}'],
  ] as const) {
    it(`rejects ${scenario} as invalid_jws`, async () => {
      assert.equal(await rejection(verifyRelease(text, signers)), 'invalid_jws');
    });
  }

  it('rejects an unencoded payload (b64: false) as invalid_jws', async () => {
    // RFC 7797: the payload travels as is and the signature covers those bytes, not their base64url decoding.
    const key = await importJWK(prodSigner.privateJwk, prodSigner.alg);
    const flat = await new FlattenedSign(Buffer.from('e30'))
      .setProtectedHeader({
        alg: 'ES256',
        kid: prodSigner.kid,
        typ: RELEASE_JWS_TYPE,
        b64: false,
        crit: ['b64'],
      })
      .sign(key);
    const jws = `${flat.protected}.${flat.payload}.${flat.signature}`;
    assert.equal(await rejection(verifyRelease(jws, signers)), 'invalid_jws');
  });
});

describe('when the algorithm is not one of ES256, EdDSA, RS256, PS256', () => {
  it('rejects it as invalid_jws before looking at keys', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'es384', alg: 'ES384' };
    const jwksFile = join(dir, 'es384.jwks.json');
    await writeFile(jwksFile, JSON.stringify({ keys: [jwk] }));
    const es384 = await loadSigner({ name: 'es384', jwksFile, environments: ['prod'] });
    const jws = await new CompactSign(Buffer.from(canonicalJson(manifest)))
      .setProtectedHeader({ alg: 'ES384', kid: 'es384', typ: RELEASE_JWS_TYPE })
      .sign(privateKey);
    assert.equal(await rejection(verifyRelease(jws, [es384])), 'invalid_jws');
  });
});

describe('when a correctly signed payload is not a valid manifest', () => {
  it('rejects bytes that are not JSON as invalid_json', async () => {
    const jws = await signRaw(Buffer.from('not json'), prodSigner);
    assert.equal(await rejection(verifyRelease(jws, signers)), 'invalid_json');
  });

  it('rejects a manifest that breaks the schema as invalid_manifest', async () => {
    const jws = await signRaw(Buffer.from(JSON.stringify({ ...manifest, files: [] })), prodSigner);
    assert.equal(await rejection(verifyRelease(jws, signers)), 'invalid_manifest');
  });
});

describe('when a manifest is unsigned', () => {
  it('loads it with the digest of the file bytes and trust unsigned', () => {
    const bytes = Buffer.from(JSON.stringify(manifest, null, 2));
    const release = parseUnsignedRelease(bytes);
    assert.equal(release.trust, 'unsigned');
    assert.equal(release.signer, null);
    assert.equal(release.digest, `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
  });
});

describe('when the same manifest is serialized canonically', () => {
  it('gives the same bytes whatever the key order', () => {
    const reordered = JSON.parse(JSON.stringify(manifest, Object.keys(manifest).reverse())) as Manifest;
    reordered.files = manifest.files;
    assert.equal(canonicalJson(reordered), canonicalJson(manifest));
    assert.match(canonicalJson(manifest), /^\{"created":/);
  });
});

describe('when a signer key file is unusable', () => {
  it('names the file when it is missing', async () => {
    const missing = join(dir, 'missing.jwks.json');
    await assert.rejects(
      loadSigner({ name: 'x', jwksFile: missing, environments: [] }),
      (error: unknown) => error instanceof KeyFileError && error.file === missing,
    );
  });

  it('refuses a key without a kid', async () => {
    const jwksFile = join(dir, 'nokid.jwks.json');
    const jwk = await exportJWK((await generateKeyPair('ES256', { extractable: true })).publicKey);
    await writeFile(jwksFile, JSON.stringify({ keys: [jwk] }));
    await assert.rejects(
      loadSigner({ name: 'x', jwksFile, environments: [] }),
      (error: unknown) => error instanceof KeyFileError && error.file === jwksFile,
    );
  });

  it('refuses a JWKS holding a private key', async () => {
    const jwksFile = join(dir, 'private.jwks.json');
    await writeFile(jwksFile, JSON.stringify({ keys: [prodSigner.privateJwk] }));
    await assert.rejects(
      loadSigner({ name: 'x', jwksFile, environments: [] }),
      (error: unknown) => error instanceof KeyFileError && error.file === jwksFile,
    );
  });
});
