import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { startServeProcess } from '../helpers/serve-process.ts';

const MiB = 1024 * 1024;

/** A client that reads one small piece every `delayMs`, so a transfer takes a while. */
function slowDownload(
  url: string,
  token: string,
  delayMs: number,
): Promise<{ bytes: number; complete: boolean; status: number }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { authorization: `Bearer ${token}` }, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => {
        bytes += d.length;
        res.pause();
        setTimeout(() => res.resume(), delayMs);
      });
      res.on('end', () => resolve({ bytes, complete: res.complete, status: res.statusCode ?? 0 }));
      res.on('error', () => resolve({ bytes, complete: false, status: res.statusCode ?? 0 }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('serve lifecycle', () => {
  let fixture: ServeFixture;
  let dir: string;
  let configFile: string;
  let token: string;
  let filePath: string;
  const bytes = randomBytesSeeded(6 * MiB, 21);
  // Small chunks in flight, no cache: a slow client keeps the transfer running.
  const baseConfig = (extra: Record<string, unknown> = {}) => ({
    transfer: { readAhead: 1, chunkCacheBytes: 0 },
    ...extra,
  });

  before(async () => {
    fixture = await createServeFixture('life');
    dir = fixture.dir;
    token = fixture.token;
    await writeFile(join(fixture.models, 'model.bin'), bytes);
    const manifest = buildManifest({
      model: 'fraud-detector',
      version: '1.0',
      environment: 'prod',
      files: [{ path: 'model.bin', bytes, chunkSize: MiB, sources: ['file:model.bin'] }],
    });
    const jws = await signRelease(manifest, fixture.signer);
    await writeRelease(fixture.releases, 'fraud', jws);
    filePath = `/v1/models/fraud-detector/releases/${releaseDigest(jws)}/files/model.bin`;
    configFile = await fixture.writeConfig('modelgate.yaml', baseConfig());
  });
  after(() => fixture.remove());

  describe('when SIGTERM arrives during a slow download', () => {
    it('lets the download finish, refuses new connections, and exits 0', async () => {
      const proxy = await startServeProcess(['--config', configFile]);
      const health = await fetch(`${proxy.adminUrl}/healthz`);
      assert.equal(health.status, 200);
      const ready = await fetch(`${proxy.adminUrl}/readyz`);
      assert.equal(ready.status, 200);
      const download = slowDownload(`${proxy.dataUrl}${filePath}`, token, 40);
      await new Promise((r) => setTimeout(r, 300));
      const exit = proxy.stop('SIGTERM');
      await new Promise((r) => setTimeout(r, 200));
      await assert.rejects(
        fetch(`${proxy.dataUrl}${filePath}`, { headers: { authorization: `Bearer ${token}` } }),
      );
      const result = await download;
      assert.equal(result.status, 200);
      assert.equal(result.bytes, bytes.length);
      assert.equal(result.complete, true);
      assert.equal(await exit, 0);
      // The transfer was still in flight when the signal arrived, and was not cut.
      assert.ok(proxy.logs.some((l) => l.msg === 'shutting down' && l.inflight === 1));
      assert.ok(proxy.logs.some((l) => l.msg === 'modelgate stopped' && l.cutTransfers === 0));
    });
  });

  describe('when the grace period runs out', () => {
    it('cuts the transfer still running and exits 0', async () => {
      const file = await fixture.writeConfig(
        'short-grace.yaml',
        baseConfig({ limits: { shutdownGraceSeconds: 0.3 } }),
      );
      const proxy = await startServeProcess(['--config', file]);
      const download = slowDownload(`${proxy.dataUrl}${filePath}`, token, 200);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await proxy.stop('SIGTERM'), 0);
      const result = await download;
      assert.equal(result.complete, false);
      assert.ok(result.bytes < bytes.length);
    });
  });

  describe('when more transfers arrive than the cap allows', () => {
    it('answers 503 MG_OVERLOADED with Retry-After', async () => {
      const file = await fixture.writeConfig(
        'cap.yaml',
        baseConfig({ limits: { maxConcurrentTransfers: 1 } }),
      );
      const proxy = await startServeProcess(['--config', file]);
      try {
        const first = slowDownload(`${proxy.dataUrl}${filePath}`, token, 30);
        await new Promise((r) => setTimeout(r, 200));
        const second = await fetch(`${proxy.dataUrl}${filePath}`, {
          headers: { authorization: `Bearer ${token}` },
        });
        assert.equal(second.status, 503);
        assert.equal(second.headers.get('retry-after'), '1');
        assert.equal(((await second.json()) as { error: { code: string } }).error.code, 'MG_OVERLOADED');
        assert.equal((await first).complete, true);
      } finally {
        await proxy.stop();
      }
    });
  });

  describe('when request headers are too large', () => {
    it('answers 431 without reaching the handler', async () => {
      const proxy = await startServeProcess(['--config', configFile]);
      try {
        const res = await fetch(`${proxy.dataUrl}${filePath}`, {
          headers: { authorization: `Bearer ${token}`, 'x-padding': 'a'.repeat(40 * 1024) },
        });
        assert.equal(res.status, 431);
      } finally {
        await proxy.stop();
      }
    });
  });

  describe('when listen.tls is configured', () => {
    it('serves over TLS and picks up a replaced certificate without a restart', async () => {
      const certFor = (name: string) => {
        execFileSync(
          'openssl',
          [
            'req',
            '-x509',
            '-newkey',
            'ec',
            '-pkeyopt',
            'ec_paramgen_curve:P-256',
            '-nodes',
            '-days',
            '1',
            '-subj',
            `/CN=${name}`,
            '-addext',
            'subjectAltName=IP:127.0.0.1',
            '-keyout',
            join(dir, 'tls.key.new'),
            '-out',
            join(dir, 'tls.crt.new'),
          ],
          { stdio: 'ignore' },
        );
        execFileSync('mv', [join(dir, 'tls.key.new'), join(dir, 'tls.key')]);
        execFileSync('mv', [join(dir, 'tls.crt.new'), join(dir, 'tls.crt')]);
      };
      certFor('first');
      const file = await fixture.writeConfig(
        'tls.yaml',
        baseConfig({
          listen: {
            address: '127.0.0.1',
            port: 0,
            tls: { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') },
          },
        }),
      );
      const proxy = await startServeProcess(['--config', file]);
      const subjectOf = () =>
        new Promise<string>((resolve, reject) => {
          const req = httpsRequest(
            `${proxy.dataUrl}/healthz-not-here`,
            { rejectUnauthorized: false, agent: false },
            (res) => {
              const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
              res.resume();
              resolve(String(cert.subject.CN));
            },
          );
          req.on('error', reject);
          req.end();
        });
      try {
        assert.match(proxy.dataUrl, /^https:/);
        assert.equal(await subjectOf(), 'first');
        certFor('second');
        let subject = '';
        for (let i = 0; i < 40 && subject !== 'second'; i++) {
          await new Promise((r) => setTimeout(r, 250));
          subject = await subjectOf();
        }
        assert.equal(subject, 'second');
      } finally {
        await proxy.stop();
      }
    });
  });
});
