/**
 * How the authenticator chooses among issuer keys, found unguarded by a
 * mutation run: a token without `kid` is tried against every matching key
 * (and only a bad signature moves on), concurrent first uses share one
 * verification, and the refusals for an unknown kid, a disallowed alg and an
 * unreachable key endpoint say what was expected.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isModelgateError, type ModelgateError } from '../../src/errors.ts';
import { createAuthenticator, type TokenAuthenticator } from '../../src/identity/authenticator.ts';
import { freePort } from '../helpers/ports.ts';
import { generateTestKey, mintToken, type TestKey } from '../helpers/tokens.ts';
import { frozenClock, issuerConfig, serviceAccount } from './fixtures.ts';

const ISSUER = 'https://keys.example.com';
const SUBJECT = 'system:serviceaccount:fraud:inference';

async function refusal(promise: Promise<unknown>, code: string, message?: RegExp): Promise<ModelgateError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isModelgateError(error), `expected a ModelgateError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (message !== undefined) assert.match(error.message, message);
    return error;
  }
  assert.fail(`expected a refusal with ${code}`);
}

describe('when the issuer publishes keys without kid', () => {
  const clock = frozenClock(Date.parse('2026-11-25T12:00:00Z'));
  const now = () => Math.floor(clock() / 1000);
  let dir: string;
  let first: TestKey;
  let second: TestKey;
  let stranger: TestKey;
  let authenticator: TokenAuthenticator;
  const claims = () => ({ iss: ISSUER, aud: 'modelgate', sub: SUBJECT, iat: now(), exp: now() + 600 });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mg-authenticator-keys-'));
    [first, second, stranger] = await Promise.all([
      generateTestKey('RS256', 'first'),
      generateTestKey('RS256', 'second'),
      generateTestKey('RS256', 'stranger'),
    ]);
    const withoutKid = (key: TestKey) => {
      const { kid: _, ...jwk } = key.publicJwk;
      return jwk;
    };
    const jwksFile = join(dir, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify({ keys: [withoutKid(first), withoutKid(second)] }));
    authenticator = createAuthenticator({
      issuers: [issuerConfig({ name: 'nokid', issuer: ISSUER, jwksFile, algorithms: ['RS256', 'PS256'] })],
      serviceAccounts: [serviceAccount({ name: 'fraud-inference', issuer: 'nokid', subject: SUBJECT })],
      tokenCacheEntries: 0,
      clock,
    });
    await authenticator.start();
  });
  after(async () => {
    authenticator.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts a token signed by the second key, after a bad signature with the first', async () => {
    const before = authenticator.signatureVerifications();
    const token = await mintToken(second, claims(), { header: { kid: undefined } });
    assert.equal((await authenticator.authenticate(bearer(token))).subject, SUBJECT);
    assert.equal(authenticator.signatureVerifications() - before, 2);
  });

  it('refuses a token no listed key signed with MG_TOKEN_SIGNATURE_INVALID, having tried every key', async () => {
    const before = authenticator.signatureVerifications();
    const token = await mintToken(stranger, claims(), { header: { kid: undefined } });
    await refusal(authenticator.authenticate(bearer(token)), 'MG_TOKEN_SIGNATURE_INVALID');
    assert.equal(authenticator.signatureVerifications() - before, 2);
  });

  it('stops at the first key when the failure is not a bad signature', async () => {
    const before = authenticator.signatureVerifications();
    const token = await mintToken(
      first,
      { ...claims(), aud: 'someone-else' },
      { header: { kid: undefined } },
    );
    await refusal(authenticator.authenticate(bearer(token)), 'MG_TOKEN_AUDIENCE');
    assert.equal(authenticator.signatureVerifications() - before, 1);
  });

  it('shares one verification between concurrent first uses of a token', async () => {
    const before = authenticator.signatureVerifications();
    const token = await mintToken(first, claims(), { header: { kid: undefined } });
    const principals = await Promise.all([1, 2, 3].map(() => authenticator.authenticate(bearer(token))));
    assert.ok(principals.every((p) => p.subject === SUBJECT));
    assert.equal(authenticator.signatureVerifications() - before, 1);
    // Nothing is remembered once it finished (the cache is off): a later use verifies again.
    await authenticator.authenticate(bearer(token));
    assert.equal(authenticator.signatureVerifications() - before, 2);
  });

  it('lists every allowed alg when refusing another', async () => {
    const es = await generateTestKey('ES256', 'es');
    const token = await mintToken(es, claims());
    await refusal(
      authenticator.authenticate(bearer(token)),
      'MG_TOKEN_ALGORITHM_NOT_ALLOWED',
      /expected one of RS256, PS256, got "ES256"/,
    );
  });

  it('says a named kid is unknown', async () => {
    const token = await mintToken(first, claims(), { header: { kid: 'not-listed' } });
    await refusal(
      authenticator.authenticate(bearer(token)),
      'MG_TOKEN_KEY_UNKNOWN',
      /^expected a kid in the issuer key set, got an unknown one$/,
    );
  });
});

describe('when an issuer’s key endpoint cannot be reached', () => {
  for (const [cooldownSeconds, retryAfter] of [
    [2.5, '3'],
    [0.2, '1'],
  ] as const) {
    it(`answers 503 naming the issuer, with Retry-After ${retryAfter} for a ${cooldownSeconds} s cooldown`, async () => {
      const port = await freePort();
      const key = await generateTestKey('RS256', 'k');
      const authenticator = createAuthenticator({
        issuers: [
          issuerConfig({
            name: 'down',
            issuer: ISSUER,
            jwksUri: `http://127.0.0.1:${port}/jwks`,
            cooldownSeconds,
            timeoutSeconds: 2,
          }),
        ],
        serviceAccounts: [serviceAccount({ name: 'fraud-inference', issuer: 'down', subject: SUBJECT })],
        tokenCacheEntries: 0,
      });
      try {
        const now = Math.floor(Date.now() / 1000);
        const token = await mintToken(key, {
          iss: ISSUER,
          aud: 'modelgate',
          sub: SUBJECT,
          iat: now,
          exp: now + 600,
        });
        const error = await refusal(
          authenticator.authenticate({ authorization: `Bearer ${token}` }),
          'MG_ISSUER_KEYS_UNAVAILABLE',
          /^keys of issuer "down" cannot be loaded and none cached matches the token$/,
        );
        assert.equal(error.status, 503);
        assert.equal(error.headers?.['Retry-After'], retryAfter);
        assert.ok(error.cause !== undefined, 'the fetch failure is kept as the cause');
      } finally {
        authenticator.close();
      }
    });
  }
});
