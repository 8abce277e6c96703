import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sampleSum } from '../helpers/metric-values.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.ts';
import { type Exchange, startTraffic, unexplainedFailures } from './traffic.ts';

/** Fault tests of issue 12, finding 1: workers of `serve --workers 2` dying, crash-looping and signalled. */

interface WorkerDetail {
  worker: number;
  pid: number | null;
  state: 'starting' | 'ready' | 'backoff';
  restarts: number;
  failures: number;
  lastExit?: { code: number | null; signal: string | null; phase: string; error?: string };
}
interface Readyz {
  status: number;
  ready: boolean;
  checks: {
    workers: {
      ok: boolean;
      reason?: string;
      detail: { expected: number; ready: number; workers: WorkerDetail[] };
    };
  };
}

async function readyz(adminUrl: string): Promise<Readyz> {
  const res = await fetch(`${adminUrl}/readyz`);
  return { status: res.status, ...((await res.json()) as Omit<Readyz, 'status'>) };
}

/** Polls /readyz until `count` workers are ready; returns that answer. */
async function waitForReadyWorkers(adminUrl: string, count: number, timeoutMs = 30_000): Promise<Readyz> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await readyz(adminUrl);
    if (answer.status === 200 && answer.checks.workers.detail.ready === count) return answer;
    if (Date.now() > deadline) throw new Error(`not ${count} ready workers: ${JSON.stringify(answer)}`);
    await sleep(50);
  }
}

async function metricsText(adminUrl: string): Promise<string> {
  const res = await fetch(`${adminUrl}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

function killQuietly(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false; // already gone
  }
}

/** Between two kills (and after the last), a new connection was opened and answered: the stream never stalled. */
function assertAnsweredAfterEachKill(exchanges: Exchange[], kills: number[]) {
  kills.forEach((kill, i) => {
    const next = kills[i + 1] ?? Number.POSITIVE_INFINITY;
    const answered = exchanges.filter((e) => e.start > kill && e.start < next && e.status !== undefined);
    assert.ok(answered.length > 0, `no new connection answered after kill ${i + 1}`);
  });
}

describe('serve --workers 2 under worker faults', () => {
  let fixture: ServeFixture;
  let config: string;
  let token: string;
  let probePath: string;
  let downloadPath: string;
  const bytes = randomBytesSeeded(1024 * 1024, 12);
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  before(async () => {
    fixture = await createServeFixture('faults');
    token = fixture.token;
    await writeFile(join(fixture.models, 'f.bin'), bytes);
    const jws = await signRelease(
      buildManifest({
        model: 'f',
        version: '1',
        environment: 'prod',
        files: [{ path: 'f.bin', bytes, sources: ['file:f.bin'] }],
      }),
      fixture.signer,
    );
    await writeRelease(fixture.releases, 'f', jws);
    probePath = `/v1/models/f/releases/${releaseDigest(jws)}`;
    downloadPath = `${probePath}/files/f.bin`;
    // Short backoff so ten restarts fit in a test (the crash-loop test below checks the doubling and the cap).
    config = await fixture.writeConfig('modelgate.yaml', {
      workers: { restartInitialSeconds: 0.05, restartMaxSeconds: 0.2 },
    });
  });
  after(() => fixture.remove());

  const traffic = (proxy: ServeProcess) =>
    startTraffic({
      dataUrl: proxy.dataUrl,
      token,
      probePath,
      probes: 2,
      probeIntervalMs: 25,
      downloadPath,
      downloadSha256: sha256,
      downloads: 20,
      readDelayMs: 80,
      timeoutMs: 10_000,
    });

  describe('when a worker is SIGKILLed ten times while downloads and new connections run', () => {
    // Broke before: under SCHED_RR the primary handed accepted connections to a worker being killed, and
    // they were never answered; a replacement dying while starting made the primary exit.
    it('answers every new connection, keeps the primary up and recovers readiness', async () => {
      const proxy = await startServeProcess(['--config', config, '--workers', '2']);
      const kills: number[] = [];
      const victims: number[] = [];
      try {
        const load = traffic(proxy);
        for (let i = 0; i < 10; i++) {
          const status = await waitForReadyWorkers(proxy.adminUrl, 2);
          await sleep(50); // let new connections reach both workers
          const victim = status.checks.workers.detail.workers[i % 2]?.pid;
          assert.ok(typeof victim === 'number');
          kills.push(performance.now());
          victims.push(victim);
          process.kill(victim, 'SIGKILL');
        }
        const recovered = await waitForReadyWorkers(proxy.adminUrl, 2);
        await sleep(500);
        const exchanges = await load.stop();

        assert.equal(proxy.child.exitCode, null, 'the primary is still running');
        assert.equal(recovered.ready, true);
        assert.deepEqual(unexplainedFailures(exchanges, kills), []);
        assertAnsweredAfterEachKill(exchanges, kills);
        assert.ok(exchanges.filter((e) => e.kind === 'download' && e.verified).length >= 20);
        const exits = proxy.logs.filter((l) => l.event === 'worker_exit');
        assert.deepEqual(
          exits.map((l) => [l.pid, l.signal]),
          victims.map((pid) => [pid, 'SIGKILL']),
        );
        const text = await metricsText(proxy.adminUrl);
        assert.equal(sampleSum(text, 'modelgate_worker_restarts_total', { reason: 'signal' }), 10);
        assert.equal(sampleSum(text, 'modelgate_workers', { state: 'ready' }), 2);
      } finally {
        assert.equal(await proxy.stop('SIGTERM'), 0);
      }
    });
  });

  describe('when 50 SIGHUPs in 5 s reach the primary, and starting workers directly, while workers restart', () => {
    // Broke before: the primary forwarded SIGHUP as a signal to every worker, and a worker still loading
    // its modules had no handler yet, so SIGHUP's default action killed it; after a dozen, the primary.
    it('kills no worker, keeps the primary up and answers every new connection', async () => {
      const proxy = await startServeProcess(['--config', config, '--workers', '2']);
      const primary = proxy.child.pid;
      assert.ok(typeof primary === 'number');
      const kills: number[] = [];
      const victims: number[] = [];
      const hupedWhileStarting = new Set<number>();
      try {
        const load = traffic(proxy);
        const stormEnds = Date.now() + 5000;
        const storm = (async () => {
          for (let i = 0; i < 50; i++) {
            process.kill(primary, 'SIGHUP');
            await sleep(100);
          }
        })();
        // SIGHUPs straight at each worker that has announced itself but is not ready yet.
        const direct = (async () => {
          while (Date.now() < stormEnds) {
            const ready = new Set(proxy.logs.filter((l) => l.event === 'worker_ready').map((l) => l.pid));
            for (const line of proxy.logs) {
              const pid = line.pid;
              if (line.event !== 'worker_booting' || typeof pid !== 'number' || ready.has(pid)) continue;
              if (killQuietly(pid, 'SIGHUP')) hupedWhileStarting.add(pid);
            }
            await sleep(20);
          }
        })();
        // Keep a worker starting for as much of the storm as possible.
        const killer = (async () => {
          for (let i = 0; Date.now() < stormEnds; i++) {
            const status = await waitForReadyWorkers(proxy.adminUrl, 2);
            const victim = status.checks.workers.detail.workers[i % 2]?.pid;
            assert.ok(typeof victim === 'number');
            kills.push(performance.now());
            victims.push(victim);
            process.kill(victim, 'SIGKILL');
          }
        })();
        await Promise.all([storm, direct, killer]);
        const recovered = await waitForReadyWorkers(proxy.adminUrl, 2);
        const exchanges = await load.stop();

        assert.equal(proxy.child.exitCode, null, 'the primary is still running');
        assert.equal(recovered.ready, true);
        // The only workers that died are those this test killed: none of SIGHUP.
        const exits = proxy.logs.filter((l) => l.event === 'worker_exit');
        assert.deepEqual(
          exits.map((l) => [l.pid, l.signal]),
          victims.map((pid) => [pid, 'SIGKILL']),
        );
        assert.ok(kills.length >= 2, 'workers restarted during the storm');
        assert.ok(hupedWhileStarting.size >= 1, 'a starting worker was sent SIGHUP directly');
        assert.deepEqual(unexplainedFailures(exchanges, kills), []);
        assertAnsweredAfterEachKill(exchanges, kills);
        // The SIGHUPs did their job: workers reloaded the configuration and re-scanned the catalog.
        assert.ok(proxy.logs.some((l) => l.event === 'config_reloaded'));
      } finally {
        assert.equal(await proxy.stop('SIGTERM'), 0);
      }
    });
  });

  describe('when a replacement worker fails at every start (a signer key file broken after start-up)', () => {
    it('keeps serving through the other worker, names the crash loop in /readyz and backs off', async () => {
      const crashConfig = await fixture.writeConfig('crash-loop.yaml', {
        workers: { restartInitialSeconds: 0.25, restartMaxSeconds: 2 },
      });
      const keys = await readFile(fixture.signer.jwksFile);
      const proxy = await startServeProcess(['--config', crashConfig, '--workers', '2']);
      try {
        const status = await waitForReadyWorkers(proxy.adminUrl, 2);
        const victim = status.checks.workers.detail.workers[1]?.pid;
        assert.ok(typeof victim === 'number');
        // A botched key rotation: running workers keep the keys they loaded, a new one cannot start.
        await writeFile(fixture.signer.jwksFile, '{"keys": [');
        process.kill(victim, 'SIGKILL');

        let text = '';
        const deadline = Date.now() + 40_000;
        while (sampleSum(text, 'modelgate_worker_restarts_total', { reason: 'start_failed' }) < 4) {
          assert.ok(Date.now() < deadline, 'the restart counter did not reach 4');
          // Meanwhile every request is served, verified, by worker 1.
          const res = await fetch(`${proxy.dataUrl}${downloadPath}`, {
            headers: { authorization: `Bearer ${token}`, connection: 'close' },
          });
          assert.equal(res.status, 200);
          assert.equal(
            createHash('sha256')
              .update(Buffer.from(await res.arrayBuffer()))
              .digest('hex'),
            sha256,
          );
          text = await metricsText(proxy.adminUrl);
        }
        assert.equal(sampleSum(text, 'modelgate_workers', { state: 'ready' }), 1);
        assert.equal(proxy.child.exitCode, null, 'the primary is still running');

        const degraded = await readyz(proxy.adminUrl);
        assert.equal(degraded.status, 200, 'ready while one worker serves');
        assert.equal(degraded.checks.workers.detail.ready, 1);
        assert.match(
          degraded.checks.workers.reason ?? '',
          /^1 of 2 workers ready; worker 2 is crash-looping/,
        );
        const slot = degraded.checks.workers.detail.workers[1];
        assert.ok(slot && slot.failures >= 4 && slot.state !== 'ready');
        assert.equal(slot.lastExit?.phase, 'starting');
        assert.match(slot.lastExit?.error ?? '', /jwks|JSON|key/i);

        // Growing backoff: each start failure doubles the delay up to the cap, and no restart came early.
        const exits = proxy.logs.filter((l) => l.event === 'worker_exit' && l.phase === 'starting');
        const delays = exits.map((l) => Number(l.delayMs));
        assert.ok(delays.length >= 3);
        for (let i = 1; i < delays.length; i++) {
          assert.equal(delays[i], Math.min(2000, 2 * (delays[i - 1] ?? 0)));
        }
        assert.equal(delays.at(-1), 2000);
        const starts = proxy.logs.filter((l) => l.event === 'worker_started' && l.worker === 2);
        for (const exit of exits) {
          const next = starts.find((l) => Date.parse(String(l.time)) >= Date.parse(String(exit.time)));
          if (!next) continue; // still in backoff
          const gap = Date.parse(String(next.time)) - Date.parse(String(exit.time));
          assert.ok(
            gap >= Number(exit.delayMs) - 5,
            `restarted after ${gap} ms, backoff was ${exit.delayMs} ms`,
          );
        }

        // Repaired: the next attempt succeeds and readiness is whole again.
        await writeFile(fixture.signer.jwksFile, keys);
        const recovered = await waitForReadyWorkers(proxy.adminUrl, 2);
        assert.equal(recovered.checks.workers.reason, undefined);
      } finally {
        await writeFile(fixture.signer.jwksFile, keys);
        assert.equal(await proxy.stop('SIGTERM'), 0);
      }
    });
  });
});
