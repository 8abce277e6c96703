import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { startS3rver } from '../helpers/emulators.ts';
import { startJwksServer } from '../helpers/jwks-server.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, FIXTURE_ISSUER, type ServeFixture } from '../helpers/serve-fixture.ts';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.ts';
import { generateTestKey } from '../helpers/tokens.ts';

// Regression: a wrong stores.file.root, issuer key source or catalog.dir used to start a server whose
// /readyz said ready (or "pending" without a reason); clients then saw MG_SOURCE_FAILED or "model not found".

interface Readyz {
  status: number;
  body: { ready: boolean; checks: Record<string, { ok: boolean; detail?: unknown }> };
}

async function readyz(proxy: ServeProcess): Promise<Readyz> {
  const response = await fetch(`${proxy.adminUrl}/readyz`);
  return { status: response.status, body: (await response.json()) as Readyz['body'] };
}

/** Polls /readyz until `accept` holds (probe results are cached for a few seconds). */
async function readyzUntil(proxy: ServeProcess, accept: (r: Readyz) => boolean, ms = 20_000) {
  const deadline = Date.now() + ms;
  let last = await readyz(proxy);
  while (!accept(last) && Date.now() < deadline) {
    await delay(250);
    last = await readyz(proxy);
  }
  return last;
}

function failedChecks(r: Readyz): string[] {
  return Object.entries(r.body.checks)
    .filter(([, check]) => !check.ok)
    .map(([name]) => name);
}

async function serve(fixture: ServeFixture, name: string, extra: Record<string, unknown> = {}) {
  return startServeProcess(['--config', await fixture.writeConfig(name, extra)], {
    env: { NODE_ENV: 'test' },
  });
}

describe('readiness', () => {
  let fixture: ServeFixture;
  const running: ServeProcess[] = [];
  before(async () => {
    fixture = await createServeFixture('readiness');
  });
  after(async () => {
    await Promise.all(running.map((p) => p.stop('SIGKILL')));
    await fixture.remove();
  });
  const start = async (name: string, extra: Record<string, unknown> = {}) => {
    const proxy = await serve(fixture, name, extra);
    running.push(proxy);
    return proxy;
  };

  describe('when everything serving needs is in place', () => {
    it('answers 200 with every check ok', async () => {
      const proxy = await start('good.yaml');
      const r = await readyz(proxy);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(failedChecks(r), []);
      assert.equal(r.body.checks['store:file']?.ok, true);
      assert.equal(r.body.checks.catalogDir?.ok, true);
    });
  });

  describe('when stores.file.root does not exist', () => {
    it('answers 503 naming the file store and the missing root, and logs it once at start', async () => {
      const root = join(fixture.dir, 'no-such-models');
      const proxy = await start('bad-root.yaml', { stores: { file: { root } } });
      const r = await readyz(proxy);
      assert.equal(r.status, 503);
      assert.deepEqual(failedChecks(r), ['store:file']);
      assert.match(String(r.body.checks['store:file']?.detail), /no-such-models.*ENOENT/);
      const lines = proxy.logs.filter((l) => l.event === 'readiness_failed' && l.check === 'store:file');
      assert.equal(lines.length, 1);
    });
  });

  describe('when an issuer jwksFile does not exist', () => {
    it('answers 503 naming the issuer and the file error', async () => {
      const config = fixture.config();
      const issuers = config.issuers as Array<Record<string, unknown>>;
      const proxy = await start('bad-jwks-file.yaml', {
        issuers: [{ ...issuers[0], jwksFile: join(fixture.dir, 'missing.jwks.json') }],
      });
      const r = await readyz(proxy);
      assert.equal(r.status, 503);
      assert.deepEqual(failedChecks(r), ['issuerKeys']);
      const detail = r.body.checks.issuerKeys?.detail as {
        pending: string[];
        reasons: Record<string, string>;
      };
      assert.deepEqual(detail.pending, ['t']);
      assert.match(detail.reasons.t ?? '', /ENOENT/);
    });
  });

  describe('when the issuer jwksUri is down, then comes back', () => {
    it('answers 503 with the reason while the keys are not loaded, and 200 once they are', async () => {
      const key = await generateTestKey('ES256');
      const jwks = await startJwksServer({ keys: [key] });
      after(() => jwks.close());
      jwks.setFailure(503);
      const proxy = await start('jwks-down.yaml', {
        issuers: [
          {
            name: 't',
            issuer: FIXTURE_ISSUER,
            jwksUri: jwks.jwksUri,
            audiences: ['modelgate'],
            algorithms: ['ES256'],
            cooldownSeconds: 1,
          },
        ],
      });
      const down = await readyz(proxy);
      assert.equal(down.status, 503);
      assert.deepEqual(failedChecks(down), ['issuerKeys']);
      const detail = down.body.checks.issuerKeys?.detail as { reasons: Record<string, string> };
      assert.match(detail.reasons.t ?? '', /503/);

      jwks.setFailure(undefined);
      const up = await readyzUntil(proxy, (r) => r.status === 200);
      assert.equal(up.status, 200, JSON.stringify(up.body));
    });
  });

  describe('when catalog.dir does not exist', () => {
    it('answers 503 naming the catalog folder', async () => {
      const dir = join(fixture.dir, 'no-such-releases');
      const proxy = await start('bad-catalog.yaml', { catalog: { dir, pollSeconds: 0 } });
      const r = await readyz(proxy);
      assert.equal(r.status, 503);
      assert.ok(failedChecks(r).includes('catalogDir'), JSON.stringify(r.body));
      assert.match(String(r.body.checks.catalogDir?.detail), /no-such-releases.*ENOENT/);
    });
  });

  describe('when a release names an S3 bucket that does not exist', () => {
    it('answers 503 naming the bucket', async () => {
      const s3 = await startS3rver({ buckets: ['models'] });
      after(() => s3.stop());
      const bytes = Buffer.from('weights');
      await s3.putObject('models', 'm/1/w.bin', bytes);
      const manifest = buildManifest({
        model: 'm',
        version: '1',
        environment: 'prod',
        files: [
          { path: 'w.bin', bytes, sources: ['s3://models/m/1/w.bin', 's3://no-such-bucket/m/1/w.bin'] },
        ],
      });
      const releases = join(fixture.dir, 'releases-s3');
      const { mkdir } = await import('node:fs/promises');
      await mkdir(releases);
      await writeRelease(releases, 'm-1', await signRelease(manifest, fixture.signer));
      const proxy = await start('s3.yaml', {
        catalog: { dir: releases, pollSeconds: 0 },
        stores: {
          file: { root: fixture.models },
          s3: {
            region: 'us-east-1',
            endpoint: s3.endpoint,
            forcePathStyle: true,
            credentials: {
              accessKeyId: s3.credentials.accessKeyId,
              secretAccessKey: s3.credentials.secretAccessKey,
            },
          },
        },
      });
      const r = await readyz(proxy);
      assert.equal(r.status, 503);
      assert.deepEqual(failedChecks(r), ['store:s3']);
      const reason = String(r.body.checks['store:s3']?.detail);
      assert.match(reason, /no-such-bucket/);
      assert.doesNotMatch(reason, /(^|; )models:/, 'the existing bucket is not reported');
    });
  });

  describe('when SIGTERM arrives while a transfer is still running', () => {
    it('answers 503 "draining" until the process exits', async () => {
      const { writeFile } = await import('node:fs/promises');
      const bytes = Buffer.alloc(64 * 1024 * 1024, 7);
      await writeFile(join(fixture.models, 'big.bin'), bytes);
      const manifest = buildManifest({
        model: 'big',
        version: '1',
        environment: 'prod',
        files: [{ path: 'big.bin', bytes, sources: ['file:big.bin'] }],
      });
      const jws = await signRelease(manifest, fixture.signer);
      await writeRelease(fixture.releases, 'big-1', jws);
      const proxy = await start('drain.yaml', { limits: { shutdownGraceSeconds: 30 } });
      assert.equal((await readyz(proxy)).status, 200);
      const url = new URL(`${proxy.dataUrl}/v1/models/big/releases/${releaseDigest(jws)}/files/big.bin`);
      // A client that reads the headers and then stops reading keeps the transfer in flight.
      const response = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
        const req = request(url, { headers: { authorization: `Bearer ${fixture.token}` } }, resolve);
        req.once('error', reject);
        req.end();
      });
      assert.equal(response.statusCode, 200);
      response.pause();
      proxy.child.kill('SIGTERM');
      const r = await readyzUntil(proxy, (x) => x.status === 503);
      assert.equal(r.status, 503);
      assert.deepEqual(failedChecks(r), ['accepting']);
      assert.match(String(r.body.checks.accepting?.detail), /draining/);
      response.destroy();
    });
  });
});
