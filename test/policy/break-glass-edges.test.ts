/**
 * Break-glass edges a mutation run found unguarded: the key types a JWKS
 * may hold without `alg`, a key that cannot be imported, the exact size and
 * time boundaries, the anchors of the release-digest pattern, and what each
 * refusal tells the operator (the code, jose's error kept as `cause`, and a
 * message saying what was expected and what came).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { errors, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import type { BreakGlassConfig } from '../../src/config/config.types.ts';
import { type ErrorCode, isModelgateError, type ModelgateError } from '../../src/errors.ts';
import { KeyFileError } from '../../src/keys.ts';
import {
  algorithmOfJwk,
  BREAK_GLASS_TYP,
  createBreakGlassVerifier,
  MAX_BREAK_GLASS_TOKEN_BYTES,
} from '../../src/policy/break-glass.ts';
import type { BreakGlassRequest, BreakGlassVerifier } from '../../src/policy/policy.types.ts';
import { createKeyDir, generateTestKey, type KeyDir, type TestKey } from './break-glass-keys.ts';

const NOW = Date.parse('2026-11-25T12:00:00Z');
const NOW_S = NOW / 1000;
const RELEASE = `sha256:${'ab'.repeat(32)}`;
const request: BreakGlassRequest = {
  serviceAccount: 'fraud-inference',
  model: 'fraud-detector',
  release: RELEASE,
};

function claims(overrides: Record<string, unknown> = {}): JWTPayload {
  return {
    sub: 'fraud-inference',
    incident: 'INC-1234',
    reason: 'signer key rotation broke the release pipeline',
    model: 'fraud-detector',
    release: RELEASE,
    iat: NOW_S - 60,
    exp: NOW_S + 3600,
    jti: 'jti-1',
    ...overrides,
  };
}

function sign(key: TestKey, payload: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: BREAK_GLASS_TYP, ...header })
    .sign(key.privateKey);
}

async function refusal(promise: Promise<unknown>, code: ErrorCode): Promise<ModelgateError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isModelgateError(error), `expected a ModelgateError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected a refusal with ${code}`);
}

let keys: KeyDir;
let key: TestKey;
let verifier: BreakGlassVerifier;
const config = (jwksFile: string): BreakGlassConfig => ({
  jwksFile,
  maxTtlSeconds: 14400,
  // `\p{Nd}` means "a decimal digit" only under the `u` flag the verifier compiles with.
  incidentPattern: '^INC-\\p{Nd}+$',
});

before(async () => {
  keys = await createKeyDir();
  key = await generateTestKey('break-glass-edges');
  const { jwksFile } = await keys.write('break-glass', key);
  verifier = await createBreakGlassVerifier({ config: config(jwksFile), clock: () => NOW });
});
after(() => keys.remove());

describe('when a JWK names no alg', () => {
  it('infers the algorithm from the key type and curve, and refuses other keys', () => {
    assert.equal(algorithmOfJwk({ kty: 'EC', crv: 'P-256' }), 'ES256');
    assert.equal(algorithmOfJwk({ kty: 'EC', crv: 'P-384' }), undefined);
    assert.equal(algorithmOfJwk({ kty: 'OKP', crv: 'Ed25519' }), 'EdDSA');
    assert.equal(algorithmOfJwk({ kty: 'OKP', crv: 'X25519' }), undefined);
    assert.equal(algorithmOfJwk({ kty: 'RSA' }), 'PS256');
    assert.equal(algorithmOfJwk({ kty: 'oct' }), undefined);
    assert.equal(algorithmOfJwk({ crv: 'P-256' }), undefined);
    assert.equal(algorithmOfJwk({ crv: 'Ed25519' }), undefined);
  });

  it('uses a named alg as given, Ed25519 as EdDSA, and refuses one outside the list', () => {
    assert.equal(algorithmOfJwk({ kty: 'RSA', alg: 'RS256' }), 'RS256');
    assert.equal(algorithmOfJwk({ kty: 'OKP', crv: 'Ed25519', alg: 'Ed25519' }), 'EdDSA');
    assert.equal(algorithmOfJwk({ kty: 'EC', crv: 'P-256', alg: 'HS256' }), undefined);
  });

  for (const alg of ['ES256', 'EdDSA', 'PS256'] as const) {
    it(`verifies a ${alg} token with a key listed without alg`, async () => {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid: `bare-${alg}` };
      const jwksFile = await keys.writeRaw(`bare-${alg}.jwks.json`, JSON.stringify({ keys: [publicJwk] }));
      const bare = await createBreakGlassVerifier({ config: config(jwksFile), clock: () => NOW });
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg, kid: `bare-${alg}`, typ: BREAK_GLASS_TYP })
        .sign(privateKey);
      const grant = await bare.verify(token, request);
      assert.equal(grant.jti, 'jti-1');
    });
  }
});

describe('when the key file holds a key that cannot be imported', () => {
  it('stops start-up with a KeyFileError naming the key index', async () => {
    const good = key.publicJwk;
    const broken = { kty: 'EC', crv: 'P-256', alg: 'ES256', kid: 'broken', x: 'AAAA', y: 'AAAA' };
    const file = await keys.writeRaw('broken.jwks.json', JSON.stringify({ keys: [good, broken] }));
    await assert.rejects(createBreakGlassVerifier({ config: config(file) }), (error: unknown) => {
      assert.ok(error instanceof KeyFileError);
      assert.match(error.message, /keys\[1\]: not a usable public key/);
      assert.ok(error.cause !== undefined);
      return true;
    });
  });

  it('names the expected algorithms when a key type cannot sign break-glass tokens', async () => {
    const file = await keys.writeRaw('oct.jwks.json', JSON.stringify({ keys: [{ kty: 'oct', kid: 'x' }] }));
    await assert.rejects(createBreakGlassVerifier({ config: config(file) }), (error: unknown) => {
      assert.ok(error instanceof KeyFileError);
      assert.match(
        error.message,
        /keys\[0\]: expected an ES256, EdDSA, RS256, PS256 public key, got kty oct/,
      );
      return true;
    });
  });
});

describe('when break-glass is not configured', () => {
  it('refuses with MG_BREAK_GLASS_DISABLED and says so', async () => {
    const disabled = await createBreakGlassVerifier({ config: undefined });
    const error = await refusal(disabled.verify('x.y.z', request), 'MG_BREAK_GLASS_DISABLED');
    assert.match(error.message, /not configured/);
  });
});

describe('when the token size is at its bounds', () => {
  it('refuses an empty token and one byte over the limit before parsing, saying the size', async () => {
    const empty = await refusal(verifier.verify('', request), 'MG_BREAK_GLASS_MALFORMED');
    assert.match(empty.message, /expected a break-glass token of 1 to 16384 bytes, got 0/);
    assert.equal(empty.cause, undefined);
    const long = 'a'.repeat(MAX_BREAK_GLASS_TOKEN_BYTES + 1);
    const over = await refusal(verifier.verify(long, request), 'MG_BREAK_GLASS_MALFORMED');
    assert.match(over.message, /got 16385$/);
    assert.equal(over.cause, undefined);
    const wrongType = await refusal(
      verifier.verify(undefined as unknown as string, request),
      'MG_BREAK_GLASS_MALFORMED',
    );
    assert.match(wrongType.message, /got undefined$/);
  });

  it('parses a token of exactly the limit (and refuses it as a malformed JWT, with jose’s cause)', async () => {
    const exact = 'a'.repeat(MAX_BREAK_GLASS_TOKEN_BYTES);
    const error = await refusal(verifier.verify(exact, request), 'MG_BREAK_GLASS_MALFORMED');
    assert.match(error.message, /not a well-formed JWT/);
    assert.ok(error.cause instanceof errors.JOSEError);
  });
});

describe('when jose refuses the token', () => {
  it('says the token expired', async () => {
    const token = await sign(key, claims({ iat: NOW_S - 7200, exp: NOW_S - 3600 }));
    const error = await refusal(verifier.verify(token, request), 'MG_BREAK_GLASS_EXPIRED');
    assert.match(error.message, /has expired/);
    assert.ok(error.cause instanceof errors.JWTExpired);
  });

  it('says the token is not valid yet (nbf)', async () => {
    const token = await sign(key, claims({ nbf: NOW_S + 600 }));
    const error = await refusal(verifier.verify(token, request), 'MG_BREAK_GLASS_EXPIRED');
    assert.match(error.message, /not valid yet \(nbf\)/);
  });

  it('names the expected typ', async () => {
    const token = await sign(key, claims(), { typ: 'JWT' });
    const error = await refusal(verifier.verify(token, request), 'MG_BREAK_GLASS_MALFORMED');
    assert.match(error.message, /expected break-glass token typ modelgate-break-glass\+jwt/);
    assert.ok(error.cause instanceof errors.JWTClaimValidationFailed);
  });

  it('names a missing required claim', async () => {
    for (const claim of ['jti', 'iat', 'exp']) {
      const payload = claims();
      delete payload[claim];
      const error = await refusal(
        verifier.verify(await sign(key, payload), request),
        'MG_BREAK_GLASS_MALFORMED',
      );
      assert.match(error.message, new RegExp(`claim "${claim}" is missing`));
    }
  });

  it('says a token signed by another key is not signed by a break-glass key', async () => {
    const other = await generateTestKey('break-glass-edges');
    const error = await refusal(
      verifier.verify(await sign(other, claims()), request),
      'MG_BREAK_GLASS_SIGNATURE',
    );
    assert.match(error.message, /not signed by a break-glass key/);
  });
});

describe('when a claim is present but unusable', () => {
  it('names an empty string claim', async () => {
    const token = await sign(key, claims({ reason: '' }));
    const error = await refusal(verifier.verify(token, request), 'MG_BREAK_GLASS_MALFORMED');
    assert.match(error.message, /expected break-glass claim "reason" to be a non-empty string/);
  });

  for (const release of [`x${RELEASE}`, `${RELEASE}0`]) {
    it(`refuses the release claim ${release.slice(0, 12)}… that is not exactly sha256:<64 hex>`, async () => {
      const token = await sign(key, claims({ release }));
      const error = await refusal(
        verifier.verify(token, { ...request, release }),
        'MG_BREAK_GLASS_MALFORMED',
      );
      assert.match(error.message, /"release" to be sha256:<64 hex>/);
    });
  }
});

describe('when times sit exactly on their limits', () => {
  it('accepts iat 30 s ahead (the clock tolerance) and refuses 31 s ahead', async () => {
    const edge = await sign(key, claims({ iat: NOW_S + 30, exp: NOW_S + 3600 }));
    assert.equal((await verifier.verify(edge, request)).issuedAt, NOW_S + 30);
    const ahead = await sign(key, claims({ iat: NOW_S + 31, exp: NOW_S + 3600 }));
    const error = await refusal(verifier.verify(ahead, request), 'MG_BREAK_GLASS_EXPIRED');
    assert.match(error.message, /iat is in the future/);
  });

  it('accepts a lifetime of exactly maxTtlSeconds and refuses one second more, saying both', async () => {
    const edge = await sign(key, claims({ iat: NOW_S - 60, exp: NOW_S - 60 + 14400 }));
    assert.equal((await verifier.verify(edge, request)).expiresAt, NOW_S - 60 + 14400);
    const long = await sign(key, claims({ iat: NOW_S - 60, exp: NOW_S - 60 + 14401 }));
    const error = await refusal(verifier.verify(long, request), 'MG_BREAK_GLASS_TTL');
    assert.match(error.message, /at most 14400s, got 14401s/);
  });
});

describe('when the token is bound to something else', () => {
  it('accepts an incident matched only under the u flag, and names the pattern when it does not match', async () => {
    assert.equal(
      (await verifier.verify(await sign(key, claims({ incident: 'INC-٤٢' })), request)).incident,
      'INC-٤٢',
    );
    const token = await sign(key, claims({ incident: 'TICKET-1' }));
    const error = await refusal(verifier.verify(token, request), 'MG_BREAK_GLASS_INCIDENT');
    assert.match(error.message, /expected the incident to match \^INC-\\p\{Nd\}\+\$/);
  });

  it('names both sides of an account, model or release mismatch', async () => {
    const token = await sign(key, claims());
    const account = await refusal(
      verifier.verify(token, { ...request, serviceAccount: 'other' }),
      'MG_BREAK_GLASS_ACCOUNT',
    );
    assert.match(account.message, /for service account fraud-inference, not other/);
    const model = await refusal(
      verifier.verify(token, { ...request, model: 'other' }),
      'MG_BREAK_GLASS_MODEL',
    );
    assert.match(model.message, /for model fraud-detector, not other/);
    const other = `sha256:${'cd'.repeat(32)}`;
    const release = await refusal(
      verifier.verify(token, { ...request, release: other }),
      'MG_BREAK_GLASS_RELEASE',
    );
    assert.match(release.message, new RegExp(`for release ${RELEASE}, not ${other}`));
  });
});
