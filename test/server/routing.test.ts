import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { type Harness, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';

/** Sends a raw request target exactly as written: fetch() would normalise `..` away before sending it. */
function rawStatus(url: string, target: string, token: string): Promise<{ status: number; code?: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { hostname, port, path: target, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => {
          let code: string | undefined;
          try {
            code = (JSON.parse(body) as { error?: { code: string } }).error?.code;
          } catch {}
          resolve({ status: res.statusCode ?? 0, ...(code ? { code } : {}) });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('routing and request validation', () => {
  let h: Harness;
  let digest: string;
  const bytes = randomBytesSeeded(4096, 3);
  before(async () => {
    h = await startHarness();
    ({ digest } = await h.addRelease({
      model: 'team/vision/resnet',
      version: '1.0',
      files: [{ path: 'weights/model.bin', bytes }],
    }));
    // A file outside the release and outside the store root, which no URL may reach.
    await h.writeSource('secret.txt', Buffer.from('secret'));
  });
  after(() => h.stop());

  describe('when the model name contains slashes', () => {
    it('serves it with the slashes raw or percent-encoded', async () => {
      for (const model of ['team/vision/resnet', 'team%2Fvision%2Fresnet', 'team/vision%2Fresnet']) {
        const res = await h.request(`/v1/models/${model}/releases/${digest}/files/weights/model.bin`);
        assert.equal(res.status, 200, model);
        assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));
      }
    });

    it('serves the manifest and a blob by its digest', async () => {
      const manifest = await h.request(`/v1/models/team/vision/resnet/releases/${digest}`);
      assert.equal(manifest.status, 200);
      assert.equal(manifest.headers.get('modelgate-release-digest'), digest);
      const body = (await manifest.json()) as { files: Array<{ digest: string }> };
      const blob = await h.request(`/v1/models/team/vision/resnet/blobs/${body.files[0]!.digest}`);
      assert.equal(blob.status, 200);
      assert.ok(Buffer.from(await blob.arrayBuffer()).equals(bytes));
    });
  });

  describe('when the URL tries to traverse', () => {
    const attempts = [
      '/files/../../secret.txt',
      '/files/weights/../../../secret.txt',
      '/files/%2e%2e/%2e%2e/secret.txt',
      '/files/weights%2f..%2f..%2fsecret.txt',
      '/files/weights%2Fmodel.bin',
      '/files/weights\\model.bin',
      '/files/weights/%5c..%5csecret.txt',
      '/files/weights/model.bin%00',
      '/files/./weights/model.bin',
      '/files//weights/model.bin',
    ];
    for (const attempt of attempts) {
      it(`refuses ${attempt} with 400`, async () => {
        const token = await h.token();
        const res = await rawStatus(
          h.url,
          `/v1/models/team/vision/resnet/releases/${digest}${attempt}`,
          token,
        );
        assert.equal(res.status, 400);
        assert.ok(res.code === 'MG_BAD_PATH' || res.code === 'MG_BAD_REFERENCE', String(res.code));
      });
    }

    it('refuses a model name with .. segments', async () => {
      const res = await rawStatus(h.url, `/v1/models/team/../x/releases/${digest}`, await h.token());
      assert.equal(res.status, 400);
      assert.equal(res.code, 'MG_BAD_REFERENCE');
    });
  });

  describe('when the request is malformed', () => {
    it('answers 400 for a malformed digest reference and for POST', async () => {
      const bad = await h.request('/v1/models/team/vision/resnet/releases/sha256:abc');
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'MG_BAD_REFERENCE');
      const post = await h.request(`/v1/models/team/vision/resnet/releases/${digest}`, { method: 'POST' });
      assert.equal(post.status, 400);
      assert.equal(post.headers.get('allow'), 'GET, HEAD');
    });

    it('answers 404 for unknown routes, files and releases', async () => {
      assert.equal((await h.request('/v2/nothing')).status, 404);
      const file = await h.request(`/v1/models/team/vision/resnet/releases/${digest}/files/nope.bin`);
      assert.equal(((await file.json()) as { error: { code: string } }).error.code, 'MG_FILE_NOT_FOUND');
      const rel = await h.request('/v1/models/team/vision/resnet/releases/9.9');
      assert.equal(((await rel.json()) as { error: { code: string } }).error.code, 'MG_RELEASE_NOT_FOUND');
    });
  });

  describe('when the caller is not granted the model', () => {
    it('answers 403 MG_NOT_GRANTED whether or not the model exists', async () => {
      const other = await h.token({ namespace: 'other' });
      const existing = await h.request(`/v1/models/team/vision/resnet/releases/${digest}`, { token: other });
      const missing = await h.request('/v1/models/team/nothing/releases/1.0', { token: other });
      assert.equal(existing.status, 403);
      assert.equal(missing.status, 403);
      assert.equal(((await existing.json()) as { error: { code: string } }).error.code, 'MG_NOT_GRANTED');
      assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'MG_NOT_GRANTED');
    });

    it('answers 401 with WWW-Authenticate without a token, and 403 for an unmapped identity', async () => {
      const none = await h.request(`/v1/models/team/vision/resnet/releases/${digest}`, { token: null });
      assert.equal(none.status, 401);
      assert.equal(none.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
      const stranger = await h.token({ namespace: 'nobody' });
      const unmapped = await h.request(`/v1/models/team/vision/resnet/releases/${digest}`, {
        token: stranger,
      });
      assert.equal(unmapped.status, 403);
      assert.equal(
        ((await unmapped.json()) as { error: { code: string } }).error.code,
        'MG_IDENTITY_UNMAPPED',
      );
    });
  });

  describe('when a request id is sent', () => {
    it('echoes a well-formed one and replaces a malformed one', async () => {
      const ok = await h.request(`/v1/models/team/vision/resnet/releases/${digest}`, {
        headers: { 'x-request-id': 'abc-123' },
      });
      assert.equal(ok.headers.get('x-request-id'), 'abc-123');
      const bad = await h.request(`/v1/models/team/vision/resnet/releases/${digest}`, {
        headers: { 'x-request-id': 'a b<c>' },
      });
      assert.match(bad.headers.get('x-request-id')!, /^[0-9a-f-]{36}$/);
    });
  });
});

describe('authentication failure bursts', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.stop());

  describe('when twenty requests without a valid token arrive within ten seconds', () => {
    it('logs one auth_failure_burst warning with the count per reason', async () => {
      for (let i = 0; i < 25; i++) {
        const res = await h.request('/v1/models/x/releases/1.0', { token: i % 2 ? null : 'not.a.jwt' });
        assert.equal(res.status, 401);
        await res.arrayBuffer();
      }
      const bursts = h.logs.filter((l) => l.event === 'auth_failure_burst');
      assert.equal(bursts.length, 1);
      assert.equal(bursts[0]!.level, 'warn');
      const byReason = bursts[0]!.byReason as Record<string, number>;
      assert.equal((byReason.MG_TOKEN_MISSING ?? 0) + (byReason.MG_TOKEN_MALFORMED ?? 0), 20);
      assert.ok(!JSON.stringify(h.logs).includes('not.a.jwt'), 'token text never logged');
    });
  });
});
