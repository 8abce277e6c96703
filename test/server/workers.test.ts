import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ReadinessReport } from '../../src/server/admin.ts';
import { countFailures, restartDelayMs } from '../../src/server/restart-backoff.ts';
import { aggregateReadiness, type WorkerStatus } from '../../src/server/worker-readiness.ts';
import { sampleSum } from '../helpers/metric-values.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { startServeProcess } from '../helpers/serve-process.ts';

describe('serve --workers 2', () => {
  let fixture: ServeFixture;
  let config: string;
  let token: string;
  let path: string;
  let bigPath: string;
  const bytes = randomBytesSeeded(64 * 1024, 5);
  // Larger than loopback socket buffers plus read-ahead, so a paused reader keeps the transfer in flight.
  const big = randomBytesSeeded(24 * 1024 * 1024, 6);

  before(async () => {
    fixture = await createServeFixture('workers');
    token = fixture.token;
    await writeFile(join(fixture.models, 'w.bin'), bytes);
    const jws = await signRelease(
      buildManifest({
        model: 'w',
        version: '1',
        environment: 'prod',
        files: [
          { path: 'w.bin', bytes, sources: ['file:w.bin'] },
          { path: 'big.bin', bytes: big, sources: ['file:big.bin'] },
        ],
      }),
      fixture.signer,
    );
    await writeFile(join(fixture.models, 'big.bin'), big);
    await writeRelease(fixture.releases, 'w', jws);
    path = `/v1/models/w/releases/${releaseDigest(jws)}/files/w.bin`;
    bigPath = `/v1/models/w/releases/${releaseDigest(jws)}/files/big.bin`;
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

  describe('when SIGTERM arrives while a download is in flight', () => {
    // Broke before (issue 17): workers kept their IPC channel open after draining and lingered ~2 s,
    // and the primary, waiting for them, exited 2 s after the last transfer had finished.
    it('lets the download finish, then exits 0 as soon as the workers have exited', async () => {
      const proxy = await startServeProcess(['--config', config, '--workers', '2']);
      const exited = new Promise<{ at: number; code: number | null }>((resolve) =>
        proxy.child.once('exit', (code) => resolve({ at: Date.now(), code })),
      );
      const body = new Promise<Buffer>((resolve, reject) => {
        const req = request(
          `${proxy.dataUrl}${bigPath}`,
          { headers: { authorization: `Bearer ${token}` }, agent: false },
          (res) => {
            const parts: Buffer[] = [];
            res.once('data', (first: Buffer) => {
              parts.push(first);
              res.pause();
              proxy.child.kill('SIGTERM');
              // Resume once a worker reports the transfer in flight while it drains.
              const poll = setInterval(() => {
                if (proxy.logs.some((l) => l.event === 'shutdown' && Number(l.inflight) >= 1)) {
                  clearInterval(poll);
                  res.on('data', (part: Buffer) => parts.push(part));
                  res.resume();
                }
              }, 20);
            });
            res.on('end', () => resolve(Buffer.concat(parts)));
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end();
      });
      assert.ok((await body).equals(big), 'the download completed during the drain');
      const { at: exitAt, code } = await exited;
      assert.equal(code, 0);
      // Each worker logs "modelgate stopped" (with cutTransfers) when its drain is over.
      const drained = proxy.logs.filter((l) => l.event === 'stopped' && 'cutTransfers' in l);
      assert.equal(drained.length, 2);
      assert.ok(drained.every((l) => l.cutTransfers === 0));
      const lastWorker = Math.max(...drained.map((l) => Date.parse(String(l.time))));
      // Not a speed test: the old delay was a fixed 2 s timer, far above any scheduling noise.
      assert.ok(
        exitAt - lastWorker < 1500,
        `primary exited ${exitAt - lastWorker} ms after its last worker drained`,
      );
    });
  });
});

describe('worker readiness of serve --workers N', () => {
  const ready: ReadinessReport = {
    ready: true,
    checks: { catalog: { ok: true } },
    auditEnvironments: [],
  };
  const worker = (n: number, fields: Partial<WorkerStatus> = {}): WorkerStatus => ({
    worker: n,
    pid: 100 + n,
    state: 'ready',
    restarts: 0,
    failures: 0,
    ...fields,
  });

  describe('when one of two workers is crash-looping', () => {
    it('stays ready and names the worker, how it died and when it starts next', () => {
      const report = aggregateReadiness(
        [
          worker(1),
          worker(2, {
            pid: null,
            state: 'backoff',
            failures: 4,
            restarts: 4,
            nextStartInSeconds: 8,
            lastExit: { code: 1, signal: null, phase: 'starting', error: 'bad key\nstack', at: '' },
          }),
        ],
        new Map([[1, ready]]),
        false,
      );
      assert.equal(report.ready, true);
      assert.equal(report.checks.workers?.ok, true);
      assert.equal(
        report.checks.workers?.reason,
        '1 of 2 workers ready; worker 2 is crash-looping: it exited with code 1 before it was ready (bad key), 4 failures in a row; next start in 8 s',
      );
      assert.deepEqual(report.checks.catalog, { ok: true });
    });
  });

  describe('when no worker is ready', () => {
    it('is not ready and says why for each', () => {
      const report = aggregateReadiness(
        [
          worker(1, { state: 'starting' }),
          worker(2, { lastExit: { code: null, signal: 'SIGKILL', phase: 'serving', at: '' } }),
        ],
        new Map(),
        false,
      );
      assert.equal(report.ready, false);
      assert.equal(report.checks.workers?.ok, false);
      assert.equal(
        report.checks.workers?.reason,
        '0 of 2 workers ready; worker 1 (pid 101) is starting; worker 2 (pid 102) did not answer the readiness question',
      );
    });
  });

  describe('when the primary is stopping', () => {
    it('is not ready even with every worker ready', () => {
      const report = aggregateReadiness([worker(1)], new Map([[1, ready]]), true);
      assert.equal(report.ready, false);
      assert.match(report.checks.workers?.reason ?? '', /shutting down/);
    });
  });
});

describe('worker restart backoff', () => {
  const policy = { initialMs: 1000, maxMs: 30_000 };

  describe('when a worker keeps dying', () => {
    it('doubles the delay from the initial value up to the cap', () => {
      const delays = [1, 2, 3, 4, 5, 6, 7].map((failures) => restartDelayMs(failures, policy));
      assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    });
  });

  describe('when a worker dies after staying ready for twice the cap', () => {
    it('starts a new sequence instead of continuing the old one', () => {
      assert.equal(countFailures(5, 60_000, policy), 1);
      assert.equal(countFailures(5, 59_999, policy), 6);
      assert.equal(countFailures(5, undefined, policy), 6, 'died before it was ready');
    });
  });
});
