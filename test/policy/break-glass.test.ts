import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { errors, type JWTPayload, SignJWT } from 'jose';
import type { BreakGlassConfig } from '../../src/config/config.types.ts';
import { type ErrorCode, isModelgateError } from '../../src/errors.ts';
import { KeyFileError } from '../../src/keys.ts';
import { createBreakGlassVerifier } from '../../src/policy/break-glass.ts';
import type { BreakGlassRequest, BreakGlassVerifier } from '../../src/policy/policy.types.ts';
import { createKeyDir, generateTestKey, type KeyDir, type TestKey } from './break-glass-keys.ts';

/** Frozen at 2026-11-25T12:00:00Z. */
const NOW = Date.parse('2026-11-25T12:00:00Z');
const NOW_S = NOW / 1000;
const RELEASE = `sha256:${'ab'.repeat(32)}`;
const OTHER_RELEASE = `sha256:${'cd'.repeat(32)}`;

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
    jti: 'a5f0c1de-7b8e-4a53-9d0a-2c6e4f1b9a10',
    ...overrides,
  };
}

async function sign(
  key: TestKey,
  payload: JWTPayload,
  header: { typ?: string; kid?: string; alg?: string } = {},
): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader({
      alg: header.alg ?? key.alg,
      kid: header.kid ?? key.kid,
      typ: header.typ ?? 'modelgate-break-glass+jwt',
    })
    .sign(key.privateKey);
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isModelgateError(error), `expected a ModelgateError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.status, 403);
    return true;
  });
}

let keys: KeyDir;
let breakGlassKey: TestKey;
let signerKey: TestKey;
let config: BreakGlassConfig;
let verifier: BreakGlassVerifier;

before(async () => {
  keys = await createKeyDir();
  breakGlassKey = await generateTestKey('break-glass-2026');
  signerKey = await generateTestKey('release-pipeline-2026');
  const { jwksFile } = await keys.write('break-glass', breakGlassKey);
  await keys.write('release', signerKey);
  config = { jwksFile, maxTtlSeconds: 14400, incidentPattern: '^INC-[0-9]+$' };
  verifier = await createBreakGlassVerifier({ config, clock: () => NOW });
});

after(() => keys.remove());

describe('when a valid break-glass token is presented for its own request', () => {
  it('yields the grant with the incident, reason, jti and times', async () => {
    const grant = await verifier.verify(await sign(breakGlassKey, claims()), request);
    assert.deepEqual(grant, {
      incident: 'INC-1234',
      reason: 'signer key rotation broke the release pipeline',
      jti: 'a5f0c1de-7b8e-4a53-9d0a-2c6e4f1b9a10',
      serviceAccount: 'fraud-inference',
      model: 'fraud-detector',
      release: RELEASE,
      issuedAt: NOW_S - 60,
      expiresAt: NOW_S + 3600,
    });
  });

  it('accepts a token issued within the 30 s clock tolerance ahead of the proxy', async () => {
    const token = await sign(breakGlassKey, claims({ iat: NOW_S + 20, exp: NOW_S + 3620 }));
    assert.equal((await verifier.verify(token, request)).issuedAt, NOW_S + 20);
  });

  it('accepts an Ed25519 key, whether its JWK says alg EdDSA or Ed25519', async () => {
    const edKey = await generateTestKey('break-glass-ed', 'EdDSA');
    const jwksFile = await keys.writeRaw(
      'break-glass-ed.jwks.json',
      JSON.stringify({ keys: [{ ...edKey.publicJwk, alg: 'Ed25519' }] }),
    );
    const edVerifier = await createBreakGlassVerifier({ config: { ...config, jwksFile }, clock: () => NOW });
    assert.equal((await edVerifier.verify(await sign(edKey, claims()), request)).incident, 'INC-1234');
  });
});

describe('when no breakGlass is configured', () => {
  it('refuses any token as disabled', async () => {
    const disabled = await createBreakGlassVerifier({ config: undefined, clock: () => NOW });
    await rejectsWith(
      disabled.verify(await sign(breakGlassKey, claims()), request),
      'MG_BREAK_GLASS_DISABLED',
    );
  });
});

describe('when the token has expired', () => {
  it('refuses it as expired', async () => {
    const token = await sign(breakGlassKey, claims({ iat: NOW_S - 7200, exp: NOW_S - 3600 }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_EXPIRED');
  });

  it('refuses it as expired once the tolerance is also past', async () => {
    const token = await sign(breakGlassKey, claims({ iat: NOW_S - 3600, exp: NOW_S - 31 }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_EXPIRED');
  });
});

describe('when the token is not valid yet', () => {
  it('refuses an iat beyond the clock tolerance as expired', async () => {
    const token = await sign(breakGlassKey, claims({ iat: NOW_S + 120, exp: NOW_S + 3720 }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_EXPIRED');
  });

  it('refuses an nbf beyond the clock tolerance as expired', async () => {
    const token = await sign(breakGlassKey, claims({ nbf: NOW_S + 120 }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_EXPIRED');
  });
});

describe('when the token lives longer than maxTtlSeconds', () => {
  it('refuses it even though it has not expired', async () => {
    const token = await sign(breakGlassKey, claims({ iat: NOW_S - 60, exp: NOW_S - 60 + 14401 }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_TTL');
  });
});

describe('when the token is bound to a different request', () => {
  it('refuses another service account', async () => {
    const token = await sign(breakGlassKey, claims({ sub: 'payments-inference' }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_ACCOUNT');
  });

  it('refuses another model', async () => {
    const token = await sign(breakGlassKey, claims({ model: 'fraud-detector-v2' }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_MODEL');
  });

  it('refuses another release', async () => {
    const token = await sign(breakGlassKey, claims({ release: OTHER_RELEASE }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_RELEASE');
  });
});

describe('when the incident does not match the configured pattern', () => {
  it('refuses a free-text incident', async () => {
    const token = await sign(breakGlassKey, claims({ incident: 'it is urgent' }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_INCIDENT');
  });

  it('uses the pattern anchored as written', async () => {
    const token = await sign(breakGlassKey, claims({ incident: 'INC-1234; drop' }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_INCIDENT');
  });
});

describe('when the token is not signed by a break-glass key', () => {
  it('refuses a token signed by a release-signer key (unknown kid), keeping the jose error', async () => {
    const pending = verifier.verify(await sign(signerKey, claims()), request);
    await rejectsWith(pending, 'MG_BREAK_GLASS_SIGNATURE');
    await pending.catch((error: Error) => assert.ok(error.cause instanceof errors.JWKSNoMatchingKey));
  });

  it('refuses a signer-key token that claims the break-glass kid', async () => {
    const token = await sign(signerKey, claims(), { kid: breakGlassKey.kid });
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_SIGNATURE');
  });

  it('refuses an HMAC token whatever its secret', async () => {
    const token = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'HS256', kid: breakGlassKey.kid, typ: 'modelgate-break-glass+jwt' })
      .sign(new TextEncoder().encode('a shared secret that is long enough!'));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_SIGNATURE');
  });

  it('refuses a token with a tampered payload', async () => {
    const [header, , signature] = (await sign(breakGlassKey, claims())).split('.');
    const forged = Buffer.from(JSON.stringify(claims({ sub: 'payments-inference' }))).toString('base64url');
    await rejectsWith(
      verifier.verify(`${header}.${forged}.${signature}`, {
        ...request,
        serviceAccount: 'payments-inference',
      }),
      'MG_BREAK_GLASS_SIGNATURE',
    );
  });
});

describe('when the token is malformed', () => {
  for (const claim of ['sub', 'incident', 'reason', 'model', 'release', 'iat', 'exp', 'jti']) {
    it(`refuses a token without ${claim}`, async () => {
      const token = await sign(breakGlassKey, claims({ [claim]: undefined }));
      await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_MALFORMED');
    });
  }

  it('refuses a wrongly typed claim', async () => {
    const token = await sign(breakGlassKey, claims({ incident: 1234 }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_MALFORMED');
  });

  it('refuses a release that is not sha256:<64 hex>', async () => {
    const token = await sign(breakGlassKey, claims({ release: 'fraud-detector:2026.11.3' }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_MALFORMED');
  });

  it('refuses a token with the wrong typ, such as a release manifest', async () => {
    const token = await sign(breakGlassKey, claims(), { typ: 'modelgate-release+jws' });
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_MALFORMED');
  });

  it('refuses a token without typ', async () => {
    const token = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'ES256', kid: breakGlassKey.kid })
      .sign(breakGlassKey.privateKey);
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_MALFORMED');
  });

  it('refuses a header that is not a JWT', async () => {
    await rejectsWith(verifier.verify('not-a-token', request), 'MG_BREAK_GLASS_MALFORMED');
  });

  it('refuses a header larger than 16 KiB before parsing it', async () => {
    const token = await sign(breakGlassKey, claims({ reason: 'x'.repeat(16 * 1024) }));
    await rejectsWith(verifier.verify(token, request), 'MG_BREAK_GLASS_MALFORMED');
  });
});

describe('when the break-glass key set cannot be used at start-up', () => {
  it('fails naming a missing file', async () => {
    const jwksFile = `${keys.dir}/absent.jwks.json`;
    await assert.rejects(createBreakGlassVerifier({ config: { ...config, jwksFile } }), (error: unknown) => {
      assert.ok(error instanceof KeyFileError);
      assert.ok(error.message.includes(jwksFile));
      return true;
    });
  });

  it('fails on a file that is not a key set', async () => {
    const jwksFile = await keys.writeRaw('broken.jwks.json', '{"keys": "no"}');
    await assert.rejects(createBreakGlassVerifier({ config: { ...config, jwksFile } }), KeyFileError);
  });

  it('fails on a key no break-glass token may be signed with', async () => {
    const { kid, kty, crv, x, y } = breakGlassKey.publicJwk;
    const jwksFile = await keys.writeRaw(
      'es384.jwks.json',
      JSON.stringify({ keys: [{ kid, kty, crv, x, y, alg: 'ES384' }] }),
    );
    await assert.rejects(createBreakGlassVerifier({ config: { ...config, jwksFile } }), KeyFileError);
  });

  it('fails when the private key was put into the proxy configuration', async () => {
    const jwksFile = await keys.writeRaw(
      'leaked.jwks.json',
      JSON.stringify({ keys: [breakGlassKey.privateJwk] }),
    );
    await assert.rejects(createBreakGlassVerifier({ config: { ...config, jwksFile } }), (error: unknown) => {
      assert.ok(error instanceof KeyFileError);
      assert.equal(error.file, jwksFile);
      return true;
    });
  });
});
