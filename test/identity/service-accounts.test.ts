import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createAuthenticator, type TokenAuthenticator } from '../../src/identity/authenticator.ts';
import { resolveClaim } from '../../src/identity/service-accounts.ts';
import { type JwksServer, startJwksServer } from '../helpers/jwks-server.ts';
import {
  generateTestKey,
  mintKubernetesToken,
  mintSpiffeToken,
  mintToken,
  type TestKey,
} from '../helpers/tokens.ts';
import { type AuthProbe, startAuthProbe } from './auth-probe.ts';
import { frozenClock, issuerConfig, serviceAccount } from './fixtures.ts';

describe('resolving dotted claim paths', () => {
  describe('when a claim name itself contains a dot', () => {
    it('resolves kubernetes.io.namespace inside the "kubernetes.io" claim', () => {
      assert.equal(
        resolveClaim({ 'kubernetes.io': { namespace: 'fraud' } }, 'kubernetes.io.namespace'),
        'fraud',
      );
    });

    it('resolves deeper paths through it', () => {
      const claims = { 'kubernetes.io': { serviceaccount: { name: 'inference' } } };
      assert.equal(resolveClaim(claims, 'kubernetes.io.serviceaccount.name'), 'inference');
    });
  });

  describe('when the claims are plainly nested', () => {
    it('resolves one segment at a time', () => {
      assert.equal(resolveClaim({ kubernetes: { io: { namespace: 'x' } } }, 'kubernetes.io.namespace'), 'x');
    });

    it('falls back to shorter names when the longest leads nowhere', () => {
      const claims = { 'a.b': { other: 1 }, a: { b: { c: 2 } } };
      assert.equal(resolveClaim(claims, 'a.b.c'), 2);
    });
  });

  describe('when the path is hostile or absent', () => {
    it('never reaches the prototype chain', () => {
      assert.equal(resolveClaim({}, 'constructor.name'), undefined);
      assert.equal(resolveClaim({ a: {} }, 'a.__proto__'), undefined);
    });

    it('answers undefined through arrays and primitives', () => {
      assert.equal(resolveClaim({ a: ['x'] }, 'a.0'), undefined);
      assert.equal(resolveClaim({ a: 'text' }, 'a.length'), undefined);
    });
  });
});

describe('mapping workload tokens to service accounts', () => {
  const clock = frozenClock();
  let rsa: TestKey;
  let ec: TestKey;
  let ed: TestKey;
  let cluster: JwksServer;
  let spire: JwksServer;
  let authenticator: TokenAuthenticator;
  let probe: AuthProbe;

  before(async () => {
    [rsa, ec, ed] = await Promise.all([
      generateTestKey('RS256'),
      generateTestKey('ES256'),
      generateTestKey('EdDSA'),
    ]);
    cluster = await startJwksServer({ keys: [rsa, ed] });
    spire = await startJwksServer({ keys: [ec] });
    authenticator = createAuthenticator({
      issuers: [
        issuerConfig({
          name: 'prod-cluster',
          issuer: cluster.issuer,
          jwksUri: cluster.jwksUri,
          algorithms: ['RS256', 'EdDSA'],
        }),
        issuerConfig({
          name: 'spire',
          issuer: spire.issuer,
          jwksUri: spire.jwksUri,
          algorithms: ['ES256'],
          audiences: ['modelgate', 'spiffe://cluster.local/modelgate'],
        }),
      ],
      serviceAccounts: [
        serviceAccount({
          name: 'fraud-inference',
          issuer: 'prod-cluster',
          subject: 'system:serviceaccount:fraud:inference',
          claims: { 'kubernetes.io.namespace': 'fraud', 'kubernetes.io.serviceaccount.name': 'inference' },
        }),
        serviceAccount({
          name: 'fraud-inference-canary',
          issuer: 'prod-cluster',
          subject: 'system:serviceaccount:fraud:canary',
          claims: { 'kubernetes.io.pod.name': 'canary-0' },
        }),
        serviceAccount({
          name: 'fraud-inference-blue',
          issuer: 'prod-cluster',
          subject: 'system:serviceaccount:fraud:canary',
          claims: { 'kubernetes.io.pod.name': 'canary-1' },
        }),
        serviceAccount({
          name: 'spiffe-fraud',
          issuer: 'spire',
          subject: 'spiffe://cluster.local/ns/fraud/sa/inference',
          claims: { 'tier.level': 3, gpu: true },
        }),
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
    await cluster.close();
    await spire.close();
  });

  describe('when a Kubernetes projected token (RS256) arrives', () => {
    it('maps it by sub and nested kubernetes.io claims, with pod and namespace', async () => {
      const token = await mintKubernetesToken(rsa, {
        issuer: cluster.issuer,
        now: clock(),
        pod: { name: 'inference-5f7c', uid: '0b7a-uid' },
      });
      const { status, body } = await probe.call(token);
      assert.equal(status, 200);
      assert.deepEqual(
        { serviceAccount: body.serviceAccount, namespace: body.namespace, pod: body.pod },
        {
          serviceAccount: 'fraud-inference',
          namespace: 'fraud',
          pod: { name: 'inference-5f7c', uid: '0b7a-uid' },
        },
      );
    });

    it('leaves pod out when the token has none', async () => {
      const { status, body } = await probe.call(
        await mintKubernetesToken(rsa, { issuer: cluster.issuer, now: clock(), pod: null }),
      );
      assert.equal(status, 200);
      assert.equal(body.pod, undefined);
    });

    it('tells accounts with the same subject apart by their claims', async () => {
      const answers = await Promise.all(
        ['canary-0', 'canary-1', 'canary-2'].map(async (name) =>
          probe.call(
            await mintKubernetesToken(rsa, {
              issuer: cluster.issuer,
              now: clock(),
              serviceAccount: 'canary',
              pod: { name, uid: name },
            }),
          ),
        ),
      );
      assert.deepEqual(
        answers.map((answer) => answer.body.serviceAccount ?? answer.body.code),
        ['fraud-inference-canary', 'fraud-inference-blue', 'MG_IDENTITY_UNMAPPED'],
      );
    });

    it('accepts EdDSA when the issuer allows it', async () => {
      const token = await mintKubernetesToken(ed, { issuer: cluster.issuer, now: clock() });
      assert.equal((await probe.call(token)).body.serviceAccount, 'fraud-inference');
    });
  });

  describe('when a SPIFFE JWT-SVID (ES256) arrives', () => {
    it('maps it by SPIFFE ID and typed claims', async () => {
      const token = await mintSpiffeToken(ec, {
        issuer: spire.issuer,
        now: clock(),
        audience: ['spiffe://cluster.local/modelgate'],
        claims: { tier: { level: 3 }, gpu: true },
      });
      const { status, body } = await probe.call(token);
      assert.equal(status, 200);
      assert.equal(body.serviceAccount, 'spiffe-fraud');
      assert.equal(body.namespace, undefined);
    });

    it('compares claim values with ===, so "3" is not 3', async () => {
      const token = await mintSpiffeToken(ec, {
        issuer: spire.issuer,
        now: clock(),
        claims: { tier: { level: '3' }, gpu: true },
      });
      const { status, body } = await probe.call(token);
      assert.deepEqual({ status, code: body.code }, { status: 403, code: 'MG_IDENTITY_UNMAPPED' });
    });

    it('answers 403 MG_IDENTITY_UNMAPPED for a SPIFFE ID with no account', async () => {
      const token = await mintToken(ec, {
        iss: spire.issuer,
        sub: 'spiffe://cluster.local/ns/payments/sa/api',
        aud: 'modelgate',
        exp: Math.floor(clock() / 1000) + 300,
      });
      const { status, body } = await probe.call(token);
      assert.deepEqual({ status, code: body.code }, { status: 403, code: 'MG_IDENTITY_UNMAPPED' });
    });
  });
});
