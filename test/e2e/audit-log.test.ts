import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ISSUER, type LogLine, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';

const MiB = 1024 * 1024;

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe('audit log over real HTTP', () => {
  let h: Awaited<ReturnType<typeof startHarness>>;
  let digest: string;
  let filePath: string;
  const bytes = randomBytesSeeded(2 * MiB + 99, 21);
  const provenance = {
    source: 'git+https://example.com/ml/fraud@3f2a9c1',
    builder: 'ci/release',
    buildId: '8812',
  };
  /** Every token sent in this file; none of them, nor any part of them, may reach a log. */
  const tokens: string[] = [];

  /** The retrieval lines carrying this request id. */
  function retrievalLines(requestId: string): LogLine[] {
    return h.logs.filter((line) => line.event === 'retrieval' && line.requestId === requestId);
  }

  before(async () => {
    h = await startHarness();
    ({ digest } = await h.addRelease({
      model: 'fraud-detector',
      version: '2026.11.3',
      files: [{ path: 'model.safetensors', bytes }],
      provenance,
    }));
    filePath = `/v1/models/fraud-detector/releases/${digest}/files/model.safetensors`;
  });
  after(() => h.stop());

  describe('when a file is served', () => {
    it('writes one info line naming caller, release, file, signer, bytes and the sent request id', async () => {
      const token = await h.token();
      tokens.push(token);
      const res = await h.request(filePath, { token, headers: { 'x-request-id': 'audit-served-0001' } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-request-id'), 'audit-served-0001');
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));

      const lines = retrievalLines('audit-served-0001');
      assert.equal(lines.length, 1);
      const line = lines[0]!;
      assert.equal(line.level, 'info');
      assert.equal(typeof line.time, 'string');
      assert.ok(!Number.isNaN(Date.parse(String(line.time))));
      assert.equal(line.outcome, 'served');
      assert.equal(line.status, 200);
      assert.equal(line.issuer, ISSUER);
      assert.equal(line.subject, 'system:serviceaccount:fraud:inference');
      assert.equal(line.serviceAccount, 'fraud-inference');
      assert.equal(line.model, 'fraud-detector');
      assert.equal(line.version, '2026.11.3');
      assert.equal(line.release, digest);
      assert.equal(line.file, 'model.safetensors');
      assert.equal(line.fileDigest, sha256(bytes));
      assert.equal(line.signer, 'release');
      assert.equal(line.bytes, bytes.length);
      assert.equal(line.environment, 'prod');
      assert.equal(line.mode, 'enforce');
      assert.equal(line.store, 'file');
      assert.deepEqual(line.provenance, provenance);
      assert.equal(typeof line.durationMs, 'number');
      assert.equal(line.code, undefined);
      assert.equal(line.breakGlassIncident, undefined);
    });
  });

  describe('when requests are refused', () => {
    it('writes exactly one line with the refusal code for a caller without a grant', async () => {
      const token = await h.token({ namespace: 'other' });
      tokens.push(token);
      const res = await h.request(filePath, { token, headers: { 'x-request-id': 'audit-refused-403' } });
      assert.equal(res.status, 403);
      assert.equal(await errorCode(res), 'MG_NOT_GRANTED');
      const lines = h.logs.filter((line) => line.requestId === 'audit-refused-403');
      assert.equal(lines.length, 1);
      assert.equal(lines[0]!.event, 'retrieval');
      assert.equal(lines[0]!.code, 'MG_NOT_GRANTED');
      assert.equal(lines[0]!.outcome, 'forbidden');
      assert.equal(lines[0]!.status, 403);
      assert.equal(lines[0]!.serviceAccount, 'other-team');
      assert.equal(lines[0]!.bytes, 0);
    });

    it('writes exactly one line with the refusal code for a missing token', async () => {
      const res = await h.request(filePath, {
        token: null,
        headers: { 'x-request-id': 'audit-refused-401' },
      });
      assert.equal(res.status, 401);
      assert.equal(await errorCode(res), 'MG_TOKEN_MISSING');
      const lines = h.logs.filter((line) => line.requestId === 'audit-refused-401');
      assert.equal(lines.length, 1);
      assert.equal(lines[0]!.code, 'MG_TOKEN_MISSING');
      assert.equal(lines[0]!.outcome, 'unauthenticated');
      assert.equal(lines[0]!.serviceAccount, undefined);
    });

    it('writes exactly one line with the refusal code for a forged signature', async () => {
      const [header, payload] = (await h.token()).split('.');
      const signature = (await h.token({ namespace: 'other' })).split('.')[2];
      const forged = `${header}.${payload}.${signature}`;
      tokens.push(forged);
      const res = await h.request(filePath, {
        token: forged,
        headers: { 'x-request-id': 'audit-refused-forged' },
      });
      assert.equal(res.status, 401);
      assert.equal(await errorCode(res), 'MG_TOKEN_SIGNATURE_INVALID');
      const lines = h.logs.filter((line) => line.requestId === 'audit-refused-forged');
      assert.equal(lines.length, 1);
      assert.equal(lines[0]!.code, 'MG_TOKEN_SIGNATURE_INVALID');
    });
  });

  describe('when every line written so far is searched', () => {
    it('finds no token, no token signature and no token claims segment anywhere', () => {
      assert.ok(tokens.length >= 3);
      assert.ok(h.logs.length > 0);
      const text = h.logs.map((line) => JSON.stringify(line)).join('\n');
      for (const token of tokens) {
        const [, payload, signature] = token.split('.');
        assert.ok(!text.includes(token), 'a whole token was logged');
        assert.ok(!text.includes(signature!), 'a token signature was logged');
        assert.ok(!text.includes(payload!), 'a token claims segment was logged');
      }
    });
  });
});
