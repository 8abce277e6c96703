import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { IssuerConfig } from '../../src/config/config.types.ts';
import { createAuthenticator, type TokenAuthenticator } from '../../src/identity/authenticator.ts';
import { createLogger, type Logger } from '../../src/telemetry/logger.ts';
import { type JwksServer, type JwksServerOptions, startJwksServer } from '../helpers/jwks-server.ts';
import { generateTestKey, mintKubernetesToken, type TestKey, writeJwksFile } from '../helpers/tokens.ts';
import { type AuthProbe, startAuthProbe } from './auth-probe.ts';
import { frozenClock, issuerConfig, serviceAccount, type TestClock } from './fixtures.ts';

const SUBJECT = 'system:serviceaccount:fraud:inference';

interface Rig {
  clock: TestClock;
  jwks: JwksServer;
  authenticator: TokenAuthenticator;
  probe: AuthProbe;
  /** A fresh token (never cached) signed by `key`, issued at the frozen clock. */
  token(key: TestKey): Promise<string>;
  close(): Promise<void>;
}

/** A JWKS server, an authenticator over it (not started) and an HTTP probe. */
async function startRig(
  server: JwksServerOptions,
  issuer: (jwks: JwksServer) => Partial<IssuerConfig> = (jwks) => ({ jwksUri: jwks.jwksUri }),
  logger?: Logger,
): Promise<Rig> {
  const clock = frozenClock();
  const jwks = await startJwksServer(server);
  const fields = issuer(jwks);
  const authenticator = createAuthenticator({
    issuers: [issuerConfig({ name: 'prod-cluster', issuer: jwks.issuer, ...fields })],
    serviceAccounts: [serviceAccount({ name: 'fraud-inference', issuer: 'prod-cluster', subject: SUBJECT })],
    tokenCacheEntries: 100,
    clock,
    ...(logger === undefined ? {} : { logger }),
  });
  const probe = await startAuthProbe(authenticator);
  return {
    clock,
    jwks,
    authenticator,
    probe,
    token: (key) => mintKubernetesToken(key, { issuer: fields.issuer ?? jwks.issuer, now: clock() }),
    async close() {
      authenticator.close();
      await probe.close();
      await jwks.close();
    },
  };
}

async function expectOutcome(rig: Rig, key: TestKey, status: number, code?: string): Promise<void> {
  const { status: got, body } = await rig.probe.call(await rig.token(key));
  assert.deepEqual({ status: got, code: body.code }, { status, code });
}

describe('issuer keys over a JWKS URL', () => {
  let k1: TestKey;
  let k2: TestKey;
  let k3: TestKey;

  before(async () => {
    [k1, k2, k3] = await Promise.all([
      generateTestKey('RS256', 'k1'),
      generateTestKey('RS256', 'k2'),
      generateTestKey('RS256', 'k3'),
    ]);
  });

  describe('when the issuer rotates to a new kid', () => {
    let rig: Rig;
    before(async () => {
      rig = await startRig({ keys: [k1] });
      await rig.authenticator.start();
    });
    after(() => rig.close());

    it('loads the keys once at start and reports ready', () => {
      assert.equal(rig.jwks.keyFetches(), 1);
      assert.equal(rig.authenticator.isReady(), true);
      assert.deepEqual(rig.authenticator.pendingIssuers(), []);
    });

    it('accepts a token of the new kid after exactly one re-fetch', async () => {
      await expectOutcome(rig, k1, 200);
      assert.equal(rig.jwks.keyFetches(), 1);
      rig.jwks.addKey(k2);
      await expectOutcome(rig, k2, 200);
      assert.equal(rig.jwks.keyFetches(), 2);
      await expectOutcome(rig, k2, 200);
      assert.equal(rig.jwks.keyFetches(), 2);
    });

    it('answers 401 MG_TOKEN_KEY_UNKNOWN for another unknown kid during the cooldown, without fetching', async () => {
      await expectOutcome(rig, k3, 401, 'MG_TOKEN_KEY_UNKNOWN');
      assert.equal(rig.jwks.keyFetches(), 2);
    });

    it('re-fetches once the cooldown has passed, and answers MG_TOKEN_KEY_UNKNOWN if the kid is still absent', async () => {
      rig.clock.advance(31);
      await expectOutcome(rig, k3, 401, 'MG_TOKEN_KEY_UNKNOWN');
      assert.equal(rig.jwks.keyFetches(), 3);
    });
  });

  describe('when the issuer removes a key', () => {
    let rig: Rig;
    before(async () => {
      rig = await startRig({ keys: [k1, k2] }, (jwks) => ({ jwksUri: jwks.jwksUri, cacheSeconds: 60 }));
      await rig.authenticator.start();
      rig.jwks.removeKey(k1.kid);
    });
    after(() => rig.close());

    it('still accepts the removed key while the cached keys are fresh', async () => {
      rig.clock.advance(59);
      await expectOutcome(rig, k1, 200);
      assert.equal(rig.jwks.keyFetches(), 1);
    });

    it('refuses it with MG_TOKEN_KEY_UNKNOWN after the cache expires, with a single fetch', async () => {
      rig.clock.advance(2);
      await expectOutcome(rig, k1, 401, 'MG_TOKEN_KEY_UNKNOWN');
      assert.equal(rig.jwks.keyFetches(), 2);
      await expectOutcome(rig, k2, 200);
    });
  });

  describe('when the key endpoint goes down', () => {
    let rig: Rig;
    const logLines: string[] = [];
    const sentTokens: string[] = [];
    before(async () => {
      const logger = createLogger({
        level: 'trace',
        destination: { write: (line: string) => logLines.push(line) },
      });
      rig = await startRig({ keys: [k1] }, (jwks) => ({ jwksUri: jwks.jwksUri, cacheSeconds: 60 }), logger);
      const mint = rig.token;
      rig.token = async (key) => {
        const token = await mint(key);
        sentTokens.push(token);
        return token;
      };
      await rig.authenticator.start();
      await rig.jwks.stop();
      rig.clock.advance(61);
    });
    after(() => rig.close());

    it('keeps verifying with the last good keys after they go stale', async () => {
      await expectOutcome(rig, k1, 200);
      assert.equal(rig.authenticator.isReady(), true);
    });

    it('answers 503 MG_ISSUER_KEYS_UNAVAILABLE with Retry-After for a kid it has no key for', async () => {
      const { status, body, headers } = await rig.probe.call(await rig.token(k2));
      assert.deepEqual({ status, code: body.code }, { status: 503, code: 'MG_ISSUER_KEYS_UNAVAILABLE' });
      assert.equal(headers['retry-after'], '30');
      // Still down and within the cooldown: refused again without a fetch attempt.
      await expectOutcome(rig, k2, 503, 'MG_ISSUER_KEYS_UNAVAILABLE');
    });

    it('accepts the new kid once the endpoint is back and the cooldown has passed', async () => {
      rig.jwks.setKeys([k1, k2]);
      await rig.jwks.restart();
      rig.clock.advance(31);
      await expectOutcome(rig, k2, 200);
    });

    it('logged the outage by issuer name, and nothing of any token', () => {
      const warnings = logLines.map((line) => JSON.parse(line) as { level: string; issuer?: string });
      assert.ok(warnings.some((entry) => entry.level === 'warn' && entry.issuer === 'prod-cluster'));
      assert.ok(sentTokens.length >= 3);
      for (const token of sentTokens) {
        for (const part of token.split('.')) {
          assert.ok(!logLines.some((line) => line.includes(part)), 'a token part reached the log');
        }
      }
    });
  });

  describe('when start() found the endpoint down and it comes back', () => {
    let rig: Rig;
    before(async () => {
      rig = await startRig({ keys: [k1] }, (jwks) => ({ jwksUri: jwks.jwksUri, cooldownSeconds: 0 }));
      await rig.jwks.stop();
      await rig.authenticator.start();
      await rig.jwks.restart();
    });
    after(() => rig.close());

    it('becomes ready in the background, without any request', async () => {
      assert.equal(rig.authenticator.isReady(), false);
      const deadline = performance.now() + 5000;
      while (!rig.authenticator.isReady() && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(rig.authenticator.isReady(), true);
      assert.equal(rig.jwks.keyFetches(), 1);
    });
  });

  describe('when the keys have never loaded', () => {
    let rig: Rig;
    before(async () => {
      rig = await startRig({ keys: [k1] });
      await rig.jwks.stop();
      await rig.authenticator.start();
    });
    after(() => rig.close());

    it('is not ready and names the pending issuer', () => {
      assert.equal(rig.authenticator.isReady(), false);
      assert.deepEqual(rig.authenticator.pendingIssuers(), ['prod-cluster']);
    });

    it('answers 503 MG_ISSUER_KEYS_UNAVAILABLE, never allowing', async () => {
      await expectOutcome(rig, k1, 503, 'MG_ISSUER_KEYS_UNAVAILABLE');
    });

    it('loads the keys on the first request after the cooldown once the endpoint is back', async () => {
      await rig.jwks.restart();
      rig.clock.advance(31);
      await expectOutcome(rig, k1, 200);
      assert.equal(rig.authenticator.isReady(), true);
      assert.deepEqual(rig.authenticator.pendingIssuers(), []);
    });
  });

  describe('when the key endpoint answers 500', () => {
    let rig: Rig;
    before(async () => {
      rig = await startRig({ keys: [k1] });
      rig.jwks.setFailure(500);
      await rig.authenticator.start();
    });
    after(() => rig.close());

    it('is not ready and answers 503 MG_ISSUER_KEYS_UNAVAILABLE', async () => {
      assert.equal(rig.authenticator.isReady(), false);
      await expectOutcome(rig, k1, 503, 'MG_ISSUER_KEYS_UNAVAILABLE');
    });
  });

  describe('when the key endpoint is slower than timeoutSeconds', () => {
    let rig: Rig;
    before(async () => {
      rig = await startRig({ keys: [k1], delayMs: 3000 }, (jwks) => ({
        jwksUri: jwks.jwksUri,
        timeoutSeconds: 0.2,
      }));
    });
    after(() => rig.close());

    it('gives up after the timeout and is not ready', async () => {
      const started = performance.now();
      await rig.authenticator.start();
      assert.ok(performance.now() - started < 2000, 'start() waited for the slow endpoint');
      assert.equal(rig.authenticator.isReady(), false);
      await expectOutcome(rig, k1, 503, 'MG_ISSUER_KEYS_UNAVAILABLE');
    });
  });

  describe('when many requests arrive before the keys have loaded', () => {
    let rig: Rig;
    before(async () => {
      rig = await startRig({ keys: [k1], delayMs: 100 });
    });
    after(() => rig.close());

    it('shares one fetch between them', async () => {
      const tokens = await Promise.all(Array.from({ length: 20 }, () => rig.token(k1)));
      const answers = await Promise.all(tokens.map((token) => rig.probe.call(token)));
      assert.deepEqual(
        answers.map((answer) => answer.status),
        tokens.map(() => 200),
      );
      assert.equal(rig.jwks.keyFetches(), 1);
    });
  });
});

describe('issuer keys by OIDC discovery', () => {
  let k1: TestKey;
  let k2: TestKey;
  before(async () => {
    [k1, k2] = await Promise.all([generateTestKey('RS256', 'd1'), generateTestKey('RS256', 'd2')]);
  });

  describe('when the issuer publishes a discovery document', () => {
    let rig: Rig;
    before(async () => {
      rig = await startRig({ keys: [k1], issuerPath: '/id/EXAMPLED539D4633E53DE1B71EXAMPLE' }, () => ({
        discovery: true,
      }));
      await rig.authenticator.start();
    });
    after(() => rig.close());

    it('finds jwks_uri through the document and loads the keys', async () => {
      assert.equal(rig.authenticator.isReady(), true);
      assert.equal(rig.jwks.discoveryFetches(), 1);
      assert.equal(rig.jwks.keyFetches(), 1);
      await expectOutcome(rig, k1, 200);
    });

    it('follows a rotation through discovery too', async () => {
      rig.jwks.addKey(k2);
      await expectOutcome(rig, k2, 200);
      assert.equal(rig.jwks.keyFetches(), 2);
    });
  });

  describe('when the document names another issuer', () => {
    let rig: Rig;
    before(async () => {
      // Configured with a trailing slash: the document says the issuer without it.
      rig = await startRig({ keys: [k1] }, (jwks) => ({ issuer: `${jwks.issuer}/`, discovery: true }));
      await rig.authenticator.start();
    });
    after(() => rig.close());

    it('refuses the document and is not ready', async () => {
      assert.equal(rig.jwks.discoveryFetches(), 1);
      assert.equal(rig.jwks.keyFetches(), 0);
      assert.equal(rig.authenticator.isReady(), false);
      await expectOutcome(rig, k1, 503, 'MG_ISSUER_KEYS_UNAVAILABLE');
    });
  });
});

describe('issuer keys from a SPIFFE bundle endpoint', () => {
  describe('when the bundle marks keys jwt-svid and x509-svid', () => {
    let rig: Rig;
    let jwtAuthority: TestKey;
    let x509Authority: TestKey;
    before(async () => {
      const [jwtKey, x509Key] = await Promise.all([
        generateTestKey('ES256', 'spire-jwt'),
        generateTestKey('ES256', 'spire-x509'),
      ]);
      jwtAuthority = { ...jwtKey, publicJwk: { ...jwtKey.publicJwk, use: 'jwt-svid' } };
      x509Authority = { ...x509Key, publicJwk: { ...x509Key.publicJwk, use: 'x509-svid' } };
      rig = await startRig({ keys: [jwtAuthority, x509Authority] }, (jwks) => ({
        jwksUri: jwks.jwksUri,
        algorithms: ['ES256'],
      }));
      await rig.authenticator.start();
    });
    after(() => rig.close());

    it('verifies JWT-SVIDs with the jwt-svid keys', async () => {
      await expectOutcome(rig, jwtAuthority, 200);
    });

    it('never verifies with an X.509 authority', async () => {
      await expectOutcome(rig, x509Authority, 401, 'MG_TOKEN_KEY_UNKNOWN');
    });
  });
});

describe('issuer keys from a file', () => {
  let dir: string;
  let k1: TestKey;
  let k2: TestKey;
  let k3: TestKey;
  let path: string;
  let authenticator: TokenAuthenticator;
  const clock = frozenClock();
  const token = (key: TestKey) =>
    mintKubernetesToken(key, { issuer: 'https://file.example.com', now: clock() });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mg-jwks-file-'));
    [k1, k2, k3] = await Promise.all([
      generateTestKey('ES256', 'f1'),
      generateTestKey('ES256', 'f2'),
      generateTestKey('ES256', 'f3'),
    ]);
    path = await writeJwksFile(dir, [k1]);
    authenticator = createAuthenticator({
      issuers: [
        issuerConfig({
          name: 'file-cluster',
          issuer: 'https://file.example.com',
          jwksFile: path,
          algorithms: ['ES256'],
        }),
      ],
      serviceAccounts: [
        serviceAccount({ name: 'fraud-inference', issuer: 'file-cluster', subject: SUBJECT }),
      ],
      tokenCacheEntries: 100,
      clock,
    });
  });
  after(async () => {
    authenticator.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('when the authenticator is created', () => {
    it('has read the file already, before start()', async () => {
      assert.equal(authenticator.isReady(), true);
      const principal = await authenticator.authenticate({ authorization: `Bearer ${await token(k1)}` });
      assert.equal(principal.serviceAccount, 'fraud-inference');
    });
  });

  describe('when the file is rewritten and start() runs again', () => {
    it('uses the new keys', async () => {
      await writeJwksFile(dir, [k2]);
      await authenticator.start();
      const principal = await authenticator.authenticate({ authorization: `Bearer ${await token(k2)}` });
      assert.equal(principal.serviceAccount, 'fraud-inference');
      await assert.rejects(authenticator.authenticate({ authorization: `Bearer ${await token(k1)}` }), {
        code: 'MG_TOKEN_KEY_UNKNOWN',
      });
    });
  });

  describe('when a token names a kid the file gained since it was read', () => {
    it('re-reads the file after the cooldown', async () => {
      await writeJwksFile(dir, [k2, k3]);
      clock.advance(31);
      const principal = await authenticator.authenticate({ authorization: `Bearer ${await token(k3)}` });
      assert.equal(principal.serviceAccount, 'fraud-inference');
    });
  });
});
