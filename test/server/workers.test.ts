import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { startServeProcess } from '../helpers/serve-process.ts';

/** Sum of a metric's samples in Prometheus text, parsed line by line. */
function sampleSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ([^ ]+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries(
      [...(match[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) sum += Number(match[4]);
  }
  return sum;
}

describe('serve --workers 2', () => {
  let fixture: ServeFixture;
  let config: string;
  let token: string;
  let path: string;
  const bytes = randomBytesSeeded(64 * 1024, 5);

  before(async () => {
    fixture = await createServeFixture('workers');
    token = fixture.token;
    await writeFile(join(fixture.models, 'w.bin'), bytes);
    const jws = await signRelease(
      buildManifest({
        model: 'w',
        version: '1',
        environment: 'prod',
        files: [{ path: 'w.bin', bytes, sources: ['file:w.bin'] }],
      }),
      fixture.signer,
    );
    await writeRelease(fixture.releases, 'w', jws);
    path = `/v1/models/w/releases/${releaseDigest(jws)}/files/w.bin`;
    config = await fixture.writeConfig('modelgate.yaml');
  });
  after(() => fixture.remove());

  describe('when requests spread over two worker processes', () => {
    it('serves from a shared port, aggregates metrics and readiness, and exits 0 on SIGTERM', async () => {
      const proxy = await startServeProcess(['--config', config, '--workers', '2']);
      try {
        const ready = (await (await fetch(`${proxy.adminUrl}/readyz`)).json()) as {
          ready: boolean;
          checks: {
            workers: { ok: boolean; reason?: string; detail: { expected: number; ready: number } };
          };
        };
        assert.equal(ready.ready, true);
        assert.equal(ready.checks.workers.ok, true);
        assert.equal(ready.checks.workers.reason, undefined, 'no worker is degraded');
        assert.equal(ready.checks.workers.detail.expected, 2);
        assert.equal(ready.checks.workers.detail.ready, 2);
        const requests = 20;
        for (let i = 0; i < requests; i++) {
          // A new connection each time: whichever worker accepts it from the shared socket answers.
          const res = await fetch(`${proxy.dataUrl}${path}`, {
            headers: { authorization: `Bearer ${token}`, connection: 'close' },
          });
          assert.equal(res.status, 200);
          assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));
        }
        const text = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
        assert.equal(
          sampleSum(text, 'modelgate_requests_total', { route: 'file', outcome: 'served' }),
          requests,
        );
        assert.equal(
          sampleSum(text, 'modelgate_bytes_served_total', { store: 'file' }),
          requests * bytes.length,
        );
        assert.equal(sampleSum(text, 'modelgate_workers', { state: 'ready' }), 2);
        assert.equal(sampleSum(text, 'modelgate_worker_restarts_total'), 0);
        const listening = proxy.logs.filter((l) => l.msg === 'modelgate listening');
        assert.equal(listening.at(-1)?.workers, 2);
      } finally {
        assert.equal(await proxy.stop('SIGTERM'), 0);
      }
    });
  });
});
