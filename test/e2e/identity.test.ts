import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { ISSUER, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';
import { generateTestKey, mintKubernetesToken, mintToken } from '../helpers/tokens.ts';

const REQUESTS = 10_000;
const CONCURRENCY = 16;

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe('identity through the proxy over real HTTP', () => {
  let h: Awaited<ReturnType<typeof startHarness>>;
  let manifestPath: string;

  before(async () => {
    h = await startHarness();
    const { digest } = await h.addRelease({
      model: 'fraud-detector',
      version: '1.0.0',
      files: [{ path: 'model.bin', bytes: randomBytesSeeded(4096, 51), chunkSize: null }],
    });
    manifestPath = `/v1/models/fraud-detector/releases/${digest}`;
  });
  after(() => h.stop());

  describe('when one pod sends the same token 10,000 times over keep-alive connections', () => {
    it('verifies its signature exactly once', async () => {
      const pool = new Pool(h.url, { connections: CONCURRENCY, keepAliveTimeout: 10_000 });
      /** Runs `count` GETs of the manifest with `token`, CONCURRENCY at a time; returns the statuses seen. */
      async function run(token: string, count: number): Promise<Map<number, number>> {
        const statuses = new Map<number, number>();
        let next = 0;
        await Promise.all(
          Array.from({ length: CONCURRENCY }, async () => {
            while (next < count) {
              next++;
              const { statusCode, body } = await pool.request({
                path: manifestPath,
                method: 'GET',
                headers: { authorization: `Bearer ${token}` },
              });
              await body.dump();
              statuses.set(statusCode, (statuses.get(statusCode) ?? 0) + 1);
            }
          }),
        );
        return statuses;
      }
      try {
        // The pod's previous token opens all keep-alive connections first, as after a
        // kubelet token rotation: the new token's first requests then arrive together.
        assert.deepEqual([...(await run(await h.token(), CONCURRENCY))], [[200, CONCURRENCY]]);
        const token = await h.token();
        const before = h.app.authenticator.signatureVerifications();
        const servedBefore = await h.metric('modelgate_requests_total', {
          route: 'manifest',
          outcome: 'served',
        });
        const statuses = await run(token, REQUESTS);
        assert.deepEqual([...statuses], [[200, REQUESTS]]);
        assert.equal(
          await h.metric('modelgate_requests_total', { route: 'manifest', outcome: 'served' }),
          servedBefore + REQUESTS,
        );
        assert.equal(h.app.authenticator.signatureVerifications() - before, 1);
      } finally {
        await pool.close();
      }
    });
  });

  describe('when the token says alg "none"', () => {
    it('answers 401 MG_TOKEN_ALGORITHM_NOT_ALLOWED with the Bearer challenge', async () => {
      const now = Math.floor(Date.now() / 1000);
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      const unsecured = `${encode({ alg: 'none', typ: 'JWT' })}.${encode({
        iss: ISSUER,
        sub: 'system:serviceaccount:fraud:inference',
        aud: ['modelgate'],
        iat: now,
        exp: now + 600,
      })}.`;
      for (let attempt = 0; attempt < 2; attempt++) {
        const res = await h.request(manifestPath, { token: unsecured });
        assert.equal(res.status, 401);
        assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
        assert.equal(await errorCode(res), 'MG_TOKEN_ALGORITHM_NOT_ALLOWED');
      }
    });
  });

  describe('when the token comes from a second issuer', () => {
    it('answers 401 MG_TOKEN_ISSUER_UNKNOWN for an iss that is not configured', async () => {
      const secondIssuer = await generateTestKey('RS256');
      const token = await mintKubernetesToken(secondIssuer, { issuer: 'https://second-issuer.test.invalid' });
      const res = await h.request(manifestPath, { token });
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
      assert.equal(await errorCode(res), 'MG_TOKEN_ISSUER_UNKNOWN');
    });

    it("answers 401 MG_TOKEN_SIGNATURE_INVALID when it claims our iss and our key's kid", async () => {
      const secondIssuer = await generateTestKey('RS256', h.issuerKey.kid);
      const token = await mintKubernetesToken(secondIssuer, { issuer: ISSUER });
      const res = await h.request(manifestPath, { token });
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
      assert.equal(await errorCode(res), 'MG_TOKEN_SIGNATURE_INVALID');
    });

    it('answers 401 MG_TOKEN_KEY_UNKNOWN when it claims our iss with a kid we do not hold', async () => {
      const secondIssuer = await generateTestKey('RS256', 'second-issuer-key');
      const now = Math.floor(Date.now() / 1000);
      const token = await mintToken(secondIssuer, {
        iss: ISSUER,
        sub: 'system:serviceaccount:fraud:inference',
        aud: ['modelgate'],
        iat: now,
        exp: now + 600,
      });
      const res = await h.request(manifestPath, { token });
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
      assert.equal(await errorCode(res), 'MG_TOKEN_KEY_UNKNOWN');
    });
  });
});
