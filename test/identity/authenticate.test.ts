import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { base64url, type CryptoKey, exportSPKI, importJWK, SignJWT } from 'jose';
import { createAuthenticator, type TokenAuthenticator } from '../../src/identity/authenticator.ts';
import { type JwksServer, startJwksServer } from '../helpers/jwks-server.ts';
import {
  generateTestKey,
  mintKubernetesToken,
  mintSpiffeToken,
  mintToken,
  type TestKey,
  writeJwksFile,
} from '../helpers/tokens.ts';
import { type AuthProbe, startAuthProbe } from './auth-probe.ts';
import { frozenClock, issuerConfig, serviceAccount } from './fixtures.ts';

const OTHER_ISSUER = 'https://other-cluster.example.com';
const UNMAPPED_ISSUER = 'https://unmapped.example.com';
const K8S_SUBJECT = 'system:serviceaccount:fraud:inference';

describe('authenticate over HTTP', () => {
  const clock = frozenClock();
  let dir: string;
  let rsa: TestKey;
  let otherRsa: TestKey;
  let ec: TestKey;
  let ed: TestKey;
  let jwks: JwksServer;
  let authenticator: TokenAuthenticator;
  let probe: AuthProbe;

  const k8s = (overrides: Parameters<typeof mintKubernetesToken>[1]['claims'] = {}, header = {}) =>
    mintKubernetesToken(rsa, { issuer: jwks.issuer, now: clock(), claims: overrides, header });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mg-identity-'));
    [rsa, otherRsa, ec, ed] = await Promise.all([
      generateTestKey('RS256', 'cluster-1'),
      generateTestKey('RS256', 'impostor'),
      generateTestKey('ES256', 'spire-1'),
      generateTestKey('EdDSA', 'ed-1'),
    ]);
    jwks = await startJwksServer({ keys: [rsa] });
    authenticator = createAuthenticator({
      issuers: [
        issuerConfig({
          name: 'prod-cluster',
          issuer: jwks.issuer,
          jwksUri: jwks.jwksUri,
          maxTokenLifetimeSeconds: 7200,
        }),
        issuerConfig({
          name: 'other-cluster',
          issuer: OTHER_ISSUER,
          jwksFile: await writeJwksFile(dir, [ec, ed], 'other.json'),
          algorithms: ['ES256', 'EdDSA'],
        }),
        issuerConfig({
          name: 'unmapped-cluster',
          issuer: UNMAPPED_ISSUER,
          jwksFile: await writeJwksFile(dir, [ec], 'unmapped.json'),
          algorithms: ['ES256'],
        }),
      ],
      serviceAccounts: [
        serviceAccount({
          name: 'fraud-inference',
          issuer: 'prod-cluster',
          subject: K8S_SUBJECT,
          claims: { 'kubernetes.io.namespace': 'fraud' },
        }),
        serviceAccount({ name: 'other-fraud', issuer: 'other-cluster', subject: K8S_SUBJECT }),
      ],
      tokenCacheEntries: 100,
      clock,
    });
    await authenticator.start();
    probe = await startAuthProbe(authenticator);
  });

  after(async () => {
    authenticator.close();
    await probe.close();
    await jwks.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function expectRejected(auth: string | Record<string, string>, status: number, code: string) {
    const { status: got, body, headers } = await probe.call(auth);
    assert.deepEqual({ status: got, code: body.code }, { status, code });
    if (status === 401) assert.equal(headers['www-authenticate'], 'Bearer error="invalid_token"');
  }

  describe('when the token is valid', () => {
    it('maps a Kubernetes token to its service account with pod and namespace', async () => {
      const token = await mintKubernetesToken(rsa, {
        issuer: jwks.issuer,
        now: clock(),
        pod: { name: 'inference-7d9f', uid: 'pod-uid-1' },
      });
      const { status, body } = await probe.call(token);
      assert.equal(status, 200);
      assert.equal(body.serviceAccount, 'fraud-inference');
      assert.equal(body.issuerName, 'prod-cluster');
      assert.equal(body.subject, K8S_SUBJECT);
      assert.equal(body.namespace, 'fraud');
      assert.deepEqual(body.pod, { name: 'inference-7d9f', uid: 'pod-uid-1' });
    });

    it('accepts the scheme in any case', async () => {
      const { status } = await probe.call({ authorization: `bEaReR ${await k8s()}` });
      assert.equal(status, 200);
    });

    it('accepts aud as a plain string', async () => {
      const { status } = await probe.call(await k8s({ aud: 'modelgate' }));
      assert.equal(status, 200);
    });
  });

  describe('when the Authorization header is wrong', () => {
    it('answers 401 MG_TOKEN_MISSING without one', () => expectRejected({}, 401, 'MG_TOKEN_MISSING'));

    it('answers 401 MG_TOKEN_MISSING for the Basic scheme', () =>
      expectRejected({ authorization: 'Basic dXNlcjpwYXNz' }, 401, 'MG_TOKEN_MISSING'));

    it('answers 401 MG_TOKEN_MISSING for Bearer without a token', () =>
      expectRejected({ authorization: 'Bearer' }, 401, 'MG_TOKEN_MISSING'));

    it('answers 401 MG_TOKEN_MISSING for two Authorization headers, even both valid', async () => {
      const token = await k8s();
      const { status, body } = await probe.callRaw([
        'authorization',
        `Bearer ${token}`,
        'authorization',
        `Bearer ${token}`,
      ]);
      assert.deepEqual({ status, code: body.code }, { status: 401, code: 'MG_TOKEN_MISSING' });
    });

    it('answers 401 MG_TOKEN_MALFORMED for a token that is not a compact JWS', () =>
      expectRejected('not-a-jwt', 401, 'MG_TOKEN_MALFORMED'));

    it('answers 401 MG_TOKEN_MALFORMED for a well-signed token over 16 KiB', async () => {
      const token = await k8s({ padding: 'x'.repeat(13_000) });
      assert.ok(token.length > 16 * 1024);
      await expectRejected(token, 401, 'MG_TOKEN_MALFORMED');
    });

    it('answers 401 MG_TOKEN_MALFORMED when the header is not JSON', () =>
      expectRejected('bm90LWpzb24.e30.c2ln', 401, 'MG_TOKEN_MALFORMED'));
  });

  describe('when the algorithm is not acceptable', () => {
    it('answers 401 MG_TOKEN_ALGORITHM_NOT_ALLOWED for alg none', async () => {
      const now = Math.floor(clock() / 1000);
      const encode = (value: object) => base64url.encode(JSON.stringify(value));
      const token = `${encode({ alg: 'none', typ: 'JWT' })}.${encode({
        iss: jwks.issuer,
        sub: K8S_SUBJECT,
        aud: ['modelgate'],
        iat: now,
        exp: now + 600,
        'kubernetes.io': { namespace: 'fraud' },
      })}.`;
      await expectRejected(token, 401, 'MG_TOKEN_ALGORITHM_NOT_ALLOWED');
    });

    it("answers 401 MG_TOKEN_ALGORITHM_NOT_ALLOWED for HS256 keyed with the issuer's public key", async () => {
      const publicKey = await importJWK(rsa.publicJwk, 'RS256');
      const secret = new TextEncoder().encode(await exportSPKI(publicKey as CryptoKey));
      const now = Math.floor(clock() / 1000);
      const token = await new SignJWT({
        sub: K8S_SUBJECT,
        aud: ['modelgate'],
        'kubernetes.io': { namespace: 'fraud' },
      })
        .setProtectedHeader({ alg: 'HS256', kid: rsa.kid })
        .setIssuer(jwks.issuer)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(secret);
      await expectRejected(token, 401, 'MG_TOKEN_ALGORITHM_NOT_ALLOWED');
    });

    it('answers 401 MG_TOKEN_ALGORITHM_NOT_ALLOWED for an alg outside the issuer allow-list', async () => {
      const token = await mintToken(ed, {
        iss: jwks.issuer,
        sub: K8S_SUBJECT,
        aud: 'modelgate',
        exp: Math.floor(clock() / 1000) + 600,
      });
      await expectRejected(token, 401, 'MG_TOKEN_ALGORITHM_NOT_ALLOWED');
    });
  });

  describe('when the token header lists a critical extension', () => {
    // Regression: a token with an unknown `crit` extension was refused as MG_TOKEN_ALGORITHM_NOT_ALLOWED.
    it('answers 401 MG_TOKEN_CRIT_UNSUPPORTED for a well-signed token with crit ["x-unknown"]', async () => {
      const now = Math.floor(clock() / 1000);
      const token = await new SignJWT({
        sub: K8S_SUBJECT,
        aud: ['modelgate'],
        'kubernetes.io': { namespace: 'fraud' },
      })
        .setProtectedHeader({
          alg: 'RS256',
          kid: rsa.kid,
          typ: 'JWT',
          crit: ['x-unknown'],
          'x-unknown': true,
        })
        .setIssuer(jwks.issuer)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        // The signer must declare the extension it puts in crit (jose checks it when signing too).
        .sign(rsa.privateKey, { crit: { 'x-unknown': true } });
      // Signed by the issuer's real key under its kid: only the extension makes it unacceptable.
      const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8'));
      assert.deepEqual(header.crit, ['x-unknown']);
      await expectRejected(token, 401, 'MG_TOKEN_CRIT_UNSUPPORTED');
    });

    it('still accepts the same token without crit (the key and claims are good)', async () => {
      const now = Math.floor(clock() / 1000);
      const token = await new SignJWT({
        sub: K8S_SUBJECT,
        aud: ['modelgate'],
        'kubernetes.io': { namespace: 'fraud' },
      })
        .setProtectedHeader({ alg: 'RS256', kid: rsa.kid, typ: 'JWT', 'x-unknown': true })
        .setIssuer(jwks.issuer)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(rsa.privateKey);
      const { status } = await probe.call(token);
      assert.equal(status, 200);
    });
  });

  describe('when the issuer or audience is wrong', () => {
    it('answers 401 MG_TOKEN_ISSUER_UNKNOWN for an unconfigured iss', async () =>
      expectRejected(await k8s({ iss: 'https://evil.example.com' }), 401, 'MG_TOKEN_ISSUER_UNKNOWN'));

    it('answers 401 MG_TOKEN_ISSUER_UNKNOWN for an iss that differs only by a trailing slash', async () =>
      expectRejected(await k8s({ iss: `${jwks.issuer}/` }), 401, 'MG_TOKEN_ISSUER_UNKNOWN'));

    it('answers 401 MG_TOKEN_CLAIM_MISSING without iss', async () =>
      expectRejected(await k8s({ iss: undefined }), 401, 'MG_TOKEN_CLAIM_MISSING'));

    it('answers 401 MG_TOKEN_AUDIENCE for an aud list without ours', async () =>
      expectRejected(await k8s({ aud: ['vault', 'api'] }), 401, 'MG_TOKEN_AUDIENCE'));

    it('answers 401 MG_TOKEN_CLAIM_MISSING without aud', async () =>
      expectRejected(await k8s({ aud: undefined }), 401, 'MG_TOKEN_CLAIM_MISSING'));
  });

  describe('when a claim is missing', () => {
    it('answers 401 MG_TOKEN_CLAIM_MISSING without exp', async () =>
      expectRejected(await k8s({ exp: undefined }), 401, 'MG_TOKEN_CLAIM_MISSING'));

    it('answers 401 MG_TOKEN_CLAIM_MISSING without sub', async () =>
      expectRejected(await k8s({ sub: undefined }), 401, 'MG_TOKEN_CLAIM_MISSING'));

    it('answers 401 MG_TOKEN_CLAIM_MISSING when exp is a string', async () =>
      expectRejected(await k8s({ exp: 'tomorrow' }), 401, 'MG_TOKEN_CLAIM_MISSING'));
  });

  describe('when the token is outside its validity window', () => {
    it('accepts it 1 s before exp + tolerance and refuses it 1 s after with MG_TOKEN_EXPIRED', async () => {
      const start = clock();
      try {
        const exp = Math.floor(start / 1000) + 600;
        const token = await k8s({ exp });
        clock.set((exp + 30 - 1) * 1000);
        assert.equal((await probe.call(token)).status, 200);
        clock.set((exp + 30 + 1) * 1000);
        await expectRejected(token, 401, 'MG_TOKEN_EXPIRED');
      } finally {
        clock.set(start);
      }
    });

    it('answers 401 MG_TOKEN_NOT_YET_VALID for nbf beyond the tolerance', async () =>
      expectRejected(await k8s({ nbf: Math.floor(clock() / 1000) + 31 }), 401, 'MG_TOKEN_NOT_YET_VALID'));

    it('answers 401 MG_TOKEN_NOT_YET_VALID for iat beyond the tolerance', async () => {
      const iat = Math.floor(clock() / 1000) + 120;
      await expectRejected(await k8s({ iat, nbf: undefined, exp: iat + 600 }), 401, 'MG_TOKEN_NOT_YET_VALID');
    });

    it('answers 401 MG_TOKEN_LIFETIME_TOO_LONG when exp - iat exceeds maxTokenLifetimeSeconds', async () => {
      const iat = Math.floor(clock() / 1000);
      await expectRejected(await k8s({ iat, exp: iat + 7201 }), 401, 'MG_TOKEN_LIFETIME_TOO_LONG');
    });

    it('accepts a lifetime of exactly maxTokenLifetimeSeconds', async () => {
      const iat = Math.floor(clock() / 1000);
      assert.equal((await probe.call(await k8s({ iat, exp: iat + 7200 }))).status, 200);
    });
  });

  describe('when the signature is wrong', () => {
    it('answers 401 MG_TOKEN_SIGNATURE_INVALID for a token signed by another key under our kid', async () => {
      const token = await mintKubernetesToken(otherRsa, {
        issuer: jwks.issuer,
        now: clock(),
        header: { kid: rsa.kid },
      });
      await expectRejected(token, 401, 'MG_TOKEN_SIGNATURE_INVALID');
    });

    it('answers 401 MG_TOKEN_SIGNATURE_INVALID for a payload changed after signing', async () => {
      const [header, , signature] = (await k8s()).split('.');
      const now = Math.floor(clock() / 1000);
      const forged = base64url.encode(
        JSON.stringify({
          iss: jwks.issuer,
          sub: 'system:serviceaccount:fraud:admin',
          aud: ['modelgate'],
          iat: now,
          exp: now + 600,
        }),
      );
      await expectRejected(`${header}.${forged}.${signature}`, 401, 'MG_TOKEN_SIGNATURE_INVALID');
    });
  });

  describe('when a second issuer vouches for the same subject', () => {
    it("maps the token only to that issuer's service account", async () => {
      const token = await mintToken(ec, {
        iss: OTHER_ISSUER,
        sub: K8S_SUBJECT,
        aud: ['modelgate'],
        exp: Math.floor(clock() / 1000) + 600,
        'kubernetes.io': { namespace: 'fraud' },
      });
      const { status, body } = await probe.call(token);
      assert.equal(status, 200);
      assert.equal(body.serviceAccount, 'other-fraud');
      assert.equal(body.issuerName, 'other-cluster');
    });

    it('answers 403 MG_IDENTITY_UNMAPPED when that issuer has no such account', async () => {
      const token = await mintToken(ec, {
        iss: UNMAPPED_ISSUER,
        sub: K8S_SUBJECT,
        aud: ['modelgate'],
        exp: Math.floor(clock() / 1000) + 600,
        'kubernetes.io': { namespace: 'fraud' },
      });
      await expectRejected(token, 403, 'MG_IDENTITY_UNMAPPED');
    });
  });

  describe('when the token verifies but its claims match no account', () => {
    it('answers 403 MG_IDENTITY_UNMAPPED for another namespace claim', async () =>
      expectRejected(await k8s({ 'kubernetes.io': { namespace: 'payments' } }), 403, 'MG_IDENTITY_UNMAPPED'));

    it('answers 403 MG_IDENTITY_UNMAPPED for a subject with no account', async () => {
      const token = await mintSpiffeToken(ec, { issuer: OTHER_ISSUER, now: clock() });
      await expectRejected(token, 403, 'MG_IDENTITY_UNMAPPED');
    });
  });
});
