import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createAuthenticator, type TokenAuthenticator } from '../../src/identity/authenticator.ts';
import { type JwksServer, startJwksServer } from '../helpers/jwks-server.ts';
import { generateTestKey, mintKubernetesToken, type TestKey } from '../helpers/tokens.ts';
import { frozenClock, issuerConfig, serviceAccount, type TestClock } from './fixtures.ts';

const SUBJECT = 'system:serviceaccount:fraud:inference';

describe('the verified-token cache', () => {
  let key: TestKey;
  let jwks: JwksServer;
  const opened: TokenAuthenticator[] = [];

  before(async () => {
    key = await generateTestKey('RS256', 'cache-1');
    jwks = await startJwksServer({ keys: [key] });
  });
  after(async () => {
    for (const authenticator of opened) authenticator.close();
    await jwks.close();
  });

  function open(clock: TestClock, tokenCacheEntries = 100): TokenAuthenticator {
    const authenticator = createAuthenticator({
      issuers: [issuerConfig({ name: 'prod-cluster', issuer: jwks.issuer, jwksUri: jwks.jwksUri })],
      serviceAccounts: [
        serviceAccount({ name: 'fraud-inference', issuer: 'prod-cluster', subject: SUBJECT }),
      ],
      tokenCacheEntries,
      clock,
    });
    opened.push(authenticator);
    return authenticator;
  }

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  describe('when one token is sent 10,000 times', () => {
    it('verifies its signature exactly once', async () => {
      const clock = frozenClock();
      const authenticator = open(clock);
      await authenticator.start();
      const headers = bearer(await mintKubernetesToken(key, { issuer: jwks.issuer, now: clock() }));
      for (let i = 0; i < 10_000; i++) {
        const principal = await authenticator.authenticate(headers);
        assert.equal(principal.serviceAccount, 'fraud-inference');
      }
      assert.equal(authenticator.signatureVerifications(), 1);
    });
  });

  describe('when a cached token reaches its exp', () => {
    it('verifies it again inside the tolerance and refuses it with MG_TOKEN_EXPIRED beyond', async () => {
      const clock = frozenClock();
      const authenticator = open(clock);
      const exp = Math.floor(clock() / 1000) + 60;
      const headers = bearer(
        await mintKubernetesToken(key, { issuer: jwks.issuer, now: clock(), claims: { exp } }),
      );
      await authenticator.authenticate(headers);
      clock.set(exp * 1000 - 1);
      await authenticator.authenticate(headers);
      assert.equal(authenticator.signatureVerifications(), 1);

      clock.set(exp * 1000);
      await authenticator.authenticate(headers);
      assert.equal(authenticator.signatureVerifications(), 2);

      clock.set((exp + 31) * 1000);
      await assert.rejects(authenticator.authenticate(headers), { code: 'MG_TOKEN_EXPIRED' });
    });
  });

  describe('when a token fails', () => {
    it('is not cached: each attempt verifies again', async () => {
      const clock = frozenClock();
      const authenticator = open(clock);
      const headers = bearer(
        await mintKubernetesToken(key, { issuer: jwks.issuer, now: clock(), serviceAccount: 'unknown' }),
      );
      await assert.rejects(authenticator.authenticate(headers), { code: 'MG_IDENTITY_UNMAPPED' });
      await assert.rejects(authenticator.authenticate(headers), { code: 'MG_IDENTITY_UNMAPPED' });
      assert.equal(authenticator.signatureVerifications(), 2);
    });
  });

  describe('when more tokens arrive than tokenCacheEntries', () => {
    it('evicts the least recently used', async () => {
      const clock = frozenClock();
      const authenticator = open(clock, 2);
      const [a, b, c] = await Promise.all(
        [1, 2, 3].map(async () =>
          bearer(await mintKubernetesToken(key, { issuer: jwks.issuer, now: clock() })),
        ),
      );
      for (const headers of [a!, b!, c!, c!, a!]) await authenticator.authenticate(headers);
      assert.equal(authenticator.signatureVerifications(), 4);
    });
  });

  describe('when tokenCacheEntries is 0', () => {
    it('verifies every request', async () => {
      const clock = frozenClock();
      const authenticator = open(clock, 0);
      const headers = bearer(await mintKubernetesToken(key, { issuer: jwks.issuer, now: clock() }));
      for (let i = 0; i < 3; i++) await authenticator.authenticate(headers);
      assert.equal(authenticator.signatureVerifications(), 3);
    });
  });
});
