import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { type ServeProcess, startServeProcess, waitForLog } from '../helpers/serve-process.ts';
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
    await sleep(100);
  }
}

/** Sum of a metric's samples in Prometheus text. */
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
    // Short backoff so ten restarts fit in a test; the doubling and the cap are what is under test.
    config = await fixture.writeConfig('modelgate.yaml', {
      workers: { restartInitialSeconds: 0.1, restartMaxSeconds: 1 },
    });
  });
  after(() => fixture.remove());

  const traffic = (proxy: ServeProcess) =>
    startTraffic({
      dataUrl: proxy.dataUrl,
      token,
      probePath,
      probes: 4,
      probeIntervalMs: 20,
      downloadPath,
      downloadSha256: sha256,
      downloads: 20,
      readDelayMs: 40,
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
          await sleep(100); // let new connections reach both workers
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
});
