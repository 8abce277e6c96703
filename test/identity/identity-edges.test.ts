/**
 * Identity edges a mutation run found unguarded: how each jose failure maps
 * to our code (with jose's error as `cause` and the Bearer challenge), what a
 * refusal says ("expected X, got Y", attacker input bounded), the exact
 * boundaries of header size, iat and lifetime, and how dotted claim paths and
 * Kubernetes pod claims resolve.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { base64url, errors } from 'jose';
import { isModelgateError, type ModelgateError } from '../../src/errors.ts';
import { createAuthenticator, type TokenAuthenticator } from '../../src/identity/authenticator.ts';
import { resolveClaim, toPrincipal } from '../../src/identity/service-accounts.ts';
import { fromJoseError } from '../../src/identity/token-errors.ts';
import { generateTestKey, mintToken, type TestKey, writeJwksFile } from '../helpers/tokens.ts';
import { frozenClock, issuerConfig, serviceAccount } from './fixtures.ts';

const ISSUER = 'https://edges.example.com';
const SUBJECT = 'system:serviceaccount:fraud:inference';

function expectError(error: unknown, code: string, message?: RegExp): ModelgateError {
  assert.ok(isModelgateError(error), `expected a ModelgateError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  if (message !== undefined) assert.match(error.message, message);
  return error;
}

async function refusal(promise: Promise<unknown>, code: string, message?: RegExp): Promise<ModelgateError> {
  try {
    await promise;
  } catch (error) {
    return expectError(error, code, message);
  }
  assert.fail(`expected a refusal with ${code}`);
}

describe('when jose reports a failure', () => {
  const claimError = (claim: string, reason: string) =>
    new errors.JWTClaimValidationFailed('m', { sub: 'x' }, claim, reason);
  const cases: Array<[string, Error, string, RegExp]> = [
    [
      'an expired token',
      new errors.JWTExpired('m', {}),
      'MG_TOKEN_EXPIRED',
      /^expected an unexpired token, got exp in the past$/,
    ],
    [
      'a missing claim',
      claimError('sub', 'missing'),
      'MG_TOKEN_CLAIM_MISSING',
      /^expected a valid "sub" claim, got missing$/,
    ],
    [
      'an invalid claim',
      claimError('exp', 'invalid'),
      'MG_TOKEN_CLAIM_MISSING',
      /^expected a valid "exp" claim, got invalid$/,
    ],
    [
      'a wrong audience',
      claimError('aud', 'check_failed'),
      'MG_TOKEN_AUDIENCE',
      /^expected aud to contain a configured audience$/,
    ],
    [
      'a future nbf',
      claimError('nbf', 'check_failed'),
      'MG_TOKEN_NOT_YET_VALID',
      /^expected nbf in the past, got the future$/,
    ],
    [
      'a future iat',
      claimError('iat', 'check_failed'),
      'MG_TOKEN_NOT_YET_VALID',
      /^expected iat in the past, got the future$/,
    ],
    [
      'a wrong issuer',
      claimError('iss', 'check_failed'),
      'MG_TOKEN_ISSUER_UNKNOWN',
      /^expected iss of a configured issuer$/,
    ],
    [
      'another failed claim',
      claimError('typ', 'check_failed'),
      'MG_TOKEN_CLAIM_MISSING',
      /^expected a valid "typ" claim$/,
    ],
    [
      'a bad signature',
      new errors.JWSSignatureVerificationFailed(),
      'MG_TOKEN_SIGNATURE_INVALID',
      /^expected a valid signature, got a mismatch$/,
    ],
    [
      'an alg not allowed',
      new errors.JOSEAlgNotAllowed('m'),
      'MG_TOKEN_ALGORITHM_NOT_ALLOWED',
      /^expected an allowed alg, got another$/,
    ],
    ['an unsupported alg', new errors.JOSENotSupported('m'), 'MG_TOKEN_ALGORITHM_NOT_ALLOWED', /allowed alg/],
    [
      'no matching key',
      new errors.JWKSNoMatchingKey(),
      'MG_TOKEN_KEY_UNKNOWN',
      /^expected a usable issuer key for the token kid$/,
    ],
    [
      'several matching keys',
      new errors.JWKSMultipleMatchingKeys(),
      'MG_TOKEN_KEY_UNKNOWN',
      /usable issuer key/,
    ],
    ['an invalid JWK', new errors.JWKInvalid('m'), 'MG_TOKEN_KEY_UNKNOWN', /usable issuer key/],
    ['an invalid JWKS', new errors.JWKSInvalid('m'), 'MG_TOKEN_KEY_UNKNOWN', /usable issuer key/],
    [
      'an invalid JWS',
      new errors.JWSInvalid('m'),
      'MG_TOKEN_MALFORMED',
      /^expected a compact JWS with a JSON claims set$/,
    ],
    ['an invalid JWT', new errors.JWTInvalid('m'), 'MG_TOKEN_MALFORMED', /compact JWS/],
  ];
  for (const [label, joseError, code, message] of cases) {
    it(`maps ${label} to ${code} with the Bearer challenge and jose’s error as cause`, () => {
      const error = expectError(fromJoseError(joseError), code, message);
      assert.equal(error.status, 401);
      assert.equal(error.cause, joseError);
      assert.deepEqual(error.headers, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
    });
  }

  it('does not dress up an unknown jose error or a plain error as a token problem', () => {
    for (const other of [new errors.JWEDecryptionFailed(), new Error('boom')]) {
      const error = fromJoseError(other);
      assert.ok(isModelgateError(error));
      assert.equal(error.headers?.['WWW-Authenticate'], undefined);
      assert.ok(!error.code.startsWith('MG_TOKEN_'), error.code);
    }
  });
});

describe('when a claim path is resolved', () => {
  it('prefers the longest own key, falls back to shorter ones, and never walks into arrays or prototypes', () => {
    const claims = { 'a.b': { other: 1 }, a: { b: { c: 'deep' } }, list: ['x'], n: null };
    assert.equal(resolveClaim(claims, 'a.b.c'), 'deep');
    assert.equal(resolveClaim(claims, 'a.b.other'), 1);
    assert.equal(resolveClaim({ 'a.b.c': 'flat', a: { b: { c: 'deep' } } }, 'a.b.c'), 'flat');
    assert.equal(resolveClaim(claims, 'list.0'), undefined);
    assert.equal(resolveClaim(claims, 'n.x'), undefined);
    assert.equal(resolveClaim(claims, 'constructor'), undefined);
    assert.equal(resolveClaim(claims, '__proto__.toString'), undefined);
    assert.equal(resolveClaim('text', 'length'), undefined);
  });
});

describe('when a principal is built from Kubernetes claims', () => {
  const account = serviceAccount({ name: 'fraud-inference', issuer: 'k8s', subject: SUBJECT });
  const issuer = { name: 'k8s', issuer: ISSUER };
  const base = { sub: SUBJECT, exp: 2_000_000_000 };

  it('keeps only the pod fields that are strings', () => {
    const uidOnly = toPrincipal(account, issuer, {
      ...base,
      'kubernetes.io': { pod: { uid: 'u-1', name: 7 } },
    });
    assert.deepEqual(uidOnly.pod, { uid: 'u-1' });
    const nameOnly = toPrincipal(account, issuer, { ...base, 'kubernetes.io': { pod: { name: 'p-0' } } });
    assert.deepEqual(nameOnly.pod, { name: 'p-0' });
    const neither = toPrincipal(account, issuer, { ...base, 'kubernetes.io': { namespace: 3, pod: {} } });
    assert.equal(neither.pod, undefined);
    assert.equal(neither.namespace, undefined);
    assert.equal('pod' in neither, false);
  });
});

describe('authenticate with a file-based issuer', () => {
  const clock = frozenClock(Date.parse('2026-11-25T12:00:00Z'));
  const now = () => Math.floor(clock() / 1000);
  let dir: string;
  let key: TestKey;
  let authenticator: TokenAuthenticator;

  const claims = (overrides: Record<string, unknown> = {}) => ({
    iss: ISSUER,
    aud: 'modelgate',
    sub: SUBJECT,
    iat: now(),
    exp: now() + 600,
    ...overrides,
  });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  /** A token with a hand-made header (no signature checks reach it). */
  const unsigned = (header: Record<string, unknown>, payload: Record<string, unknown> = claims()) =>
    `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(payload))}.c2ln`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mg-identity-edges-'));
    key = await generateTestKey('RS256', 'edge-1');
    authenticator = createAuthenticator({
      issuers: [
        issuerConfig({
          name: 'edges',
          issuer: ISSUER,
          jwksFile: await writeJwksFile(dir, [key]),
          maxTokenLifetimeSeconds: 3600,
          clockToleranceSeconds: 30,
        }),
      ],
      serviceAccounts: [serviceAccount({ name: 'fraud-inference', issuer: 'edges', subject: SUBJECT })],
      tokenCacheEntries: 0,
      clock,
    });
    await authenticator.start();
  });
  after(async () => {
    authenticator.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('when the Authorization header is unusable', () => {
    it('says what was expected for each shape', async () => {
      const token = await mintToken(key, claims());
      await refusal(authenticator.authenticate({}), 'MG_TOKEN_MISSING', /got none$/);
      await refusal(
        authenticator.authenticate({ authorization: '   ' }),
        'MG_TOKEN_MISSING',
        /Bearer header, got none/,
      );
      await refusal(
        authenticator.authenticate({ authorization: [`Bearer ${token}`, `Bearer ${token}`] }),
        'MG_TOKEN_MISSING',
        /expected one Authorization header, got 2/,
      );
      await refusal(
        authenticator.authenticate({ authorization: `Basic ${token}` }),
        'MG_TOKEN_MISSING',
        /Bearer scheme/,
      );
      await refusal(
        authenticator.authenticate({ authorization: 'Bearer' }),
        'MG_TOKEN_MISSING',
        /token after Bearer/,
      );
      await refusal(authenticator.authenticate({ authorization: 'Bearer    ' }), 'MG_TOKEN_MISSING');
      await refusal(
        authenticator.authenticate(bearer('not-a-jws')),
        'MG_TOKEN_MALFORMED',
        /three base64url parts/,
      );
    });

    it('accepts a single-element array, a tab separator, any scheme case and surrounding spaces', async () => {
      const token = await mintToken(key, claims());
      assert.equal(
        (await authenticator.authenticate({ authorization: [`Bearer ${token}`] })).subject,
        SUBJECT,
      );
      assert.equal(
        (await authenticator.authenticate({ authorization: `  bEaReR\t${token}  ` })).subject,
        SUBJECT,
      );
    });

    it('parses a token of exactly 16 KiB and refuses one character more before parsing', async () => {
      const exact = `${'a'.repeat(16 * 1024 - 4)}.b.c`;
      await refusal(
        authenticator.authenticate(bearer(exact)),
        'MG_TOKEN_MALFORMED',
        /JSON header and claims/,
      );
      const over = `${'a'.repeat(16 * 1024 - 3)}.b.c`;
      await refusal(
        authenticator.authenticate(bearer(over)),
        'MG_TOKEN_MALFORMED',
        /at most 16384 characters, got more/,
      );
    });
  });

  describe('when the header or issuer cannot be used', () => {
    it('names a missing alg, refuses none and HMAC in any case, and bounds the echoed alg', async () => {
      await refusal(
        authenticator.authenticate(bearer(unsigned({ typ: 'JWT' }))),
        'MG_TOKEN_MALFORMED',
        /alg header, got none/,
      );
      await refusal(
        authenticator.authenticate(bearer(unsigned({ alg: '' }))),
        'MG_TOKEN_MALFORMED',
        /alg header/,
      );
      for (const alg of ['none', 'NoNe', 'hs256', 'HS512']) {
        await refusal(
          authenticator.authenticate(bearer(unsigned({ alg }))),
          'MG_TOKEN_ALGORITHM_NOT_ALLOWED',
          new RegExp(`expected an asymmetric alg, got "${alg}"`),
        );
      }
      const long = `HS${'X'.repeat(40)}\u0001`;
      const error = await refusal(
        authenticator.authenticate(bearer(unsigned({ alg: long }))),
        'MG_TOKEN_ALGORITHM_NOT_ALLOWED',
      );
      assert.match(error.message, /got "HSXXXXXXXXXXXXXX"$/);
      const odd = await refusal(
        authenticator.authenticate(bearer(unsigned({ alg: 'HS\u0001' }))),
        'MG_TOKEN_ALGORITHM_NOT_ALLOWED',
      );
      assert.match(odd.message, /got "HS\?"$/);
    });

    it('names a missing iss, an unknown issuer and an alg outside the issuer’s list', async () => {
      const { iss: _, ...withoutIss } = claims();
      await refusal(
        authenticator.authenticate(bearer(unsigned({ alg: 'RS256' }, withoutIss))),
        'MG_TOKEN_CLAIM_MISSING',
        /iss claim, got none/,
      );
      await refusal(
        authenticator.authenticate(bearer(unsigned({ alg: 'RS256' }, claims({ iss: 'https://elsewhere' })))),
        'MG_TOKEN_ISSUER_UNKNOWN',
        /configured issuer, got another/,
      );
      await refusal(
        authenticator.authenticate(bearer(unsigned({ alg: 'ES256' }))),
        'MG_TOKEN_ALGORITHM_NOT_ALLOWED',
        /expected one of RS256, got "ES256"/,
      );
    });
  });

  describe('when the verified claims sit on their limits', () => {
    it('accepts iat exactly at the clock tolerance and refuses one second further', async () => {
      const edge = await mintToken(key, claims({ iat: now() + 30, exp: now() + 600 }));
      assert.equal((await authenticator.authenticate(bearer(edge))).subject, SUBJECT);
      const ahead = await mintToken(key, claims({ iat: now() + 31, exp: now() + 600 }));
      await refusal(
        authenticator.authenticate(bearer(ahead)),
        'MG_TOKEN_NOT_YET_VALID',
        /iat in the past, got the future/,
      );
    });

    it('accepts a lifetime of exactly maxTokenLifetimeSeconds and refuses one more, saying how long', async () => {
      const edge = await mintToken(key, claims({ iat: now() - 10, exp: now() - 10 + 3600 }));
      assert.equal((await authenticator.authenticate(bearer(edge))).expiresAt, now() - 10 + 3600);
      const long = await mintToken(key, claims({ iat: now() - 10, exp: now() - 10 + 3601 }));
      await refusal(
        authenticator.authenticate(bearer(long)),
        'MG_TOKEN_LIFETIME_TOO_LONG',
        /at most 3600 seconds, got 3601$/,
      );
    });

    it('measures the lifetime from now when the token has no iat', async () => {
      const { iat: _, ...noIat } = claims();
      const fits = await mintToken(key, { ...noIat, exp: now() + 3600 });
      assert.equal((await authenticator.authenticate(bearer(fits))).subject, SUBJECT);
      const tooLong = await mintToken(key, { ...noIat, exp: now() + 3601 });
      await refusal(authenticator.authenticate(bearer(tooLong)), 'MG_TOKEN_LIFETIME_TOO_LONG', /got 3601$/);
    });

    it('refuses an empty sub', async () => {
      const token = await mintToken(key, claims({ sub: '' }));
      await refusal(
        authenticator.authenticate(bearer(token)),
        'MG_TOKEN_CLAIM_MISSING',
        /sub to be a non-empty string/,
      );
    });

    it('names the issuer when no service account maps the subject, with issuer and subject as details', async () => {
      const token = await mintToken(key, claims({ sub: 'system:serviceaccount:other:x' }));
      const error = await refusal(
        authenticator.authenticate(bearer(token)),
        'MG_IDENTITY_UNMAPPED',
        /service account for this subject of issuer "edges", found none/,
      );
      assert.deepEqual(error.details, { issuer: 'edges', subject: 'system:serviceaccount:other:x' });
    });

    it('returns a frozen principal (pod included)', async () => {
      const token = await mintToken(
        key,
        claims({ 'kubernetes.io': { namespace: 'fraud', pod: { name: 'p-0', uid: 'u' } } }),
      );
      const principal = await authenticator.authenticate(bearer(token));
      assert.ok(Object.isFrozen(principal));
      assert.ok(Object.isFrozen(principal.pod));
      assert.equal(principal.namespace, 'fraud');
    });
  });
});
