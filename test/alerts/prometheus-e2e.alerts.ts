import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import {
  buildManifest,
  createSigner,
  releaseDigest,
  signRelease,
  writeRelease,
} from '../helpers/releases.ts';
import { generateTestKey, mintKubernetesToken, writeJwksFile } from '../helpers/tokens.ts';
import {
  activeAlerts,
  alertsFile,
  type PrometheusServer,
  prometheusApi,
  queryPrometheus,
  repoRoot,
  startPrometheus,
  waitFor,
  withShortFor,
} from './prometheus-server.ts';

/**
 * End to end: a real Prometheus scrapes a real modelgate (spawned as a black
 * box) every second and evaluates deploy/prometheus/alerts.yaml. A retrieval
 * whose stored bytes were altered after signing must page
 * ModelgateDigestMismatch within 60 s, and nothing may page before it.
 * Run with `npm run test:alerts`; needs `prometheus` on PATH.
 */

const MODEL = 'fraud-detector';
const VERSION = '2026.11.3';
const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const ALERT = 'ModelgateDigestMismatch';
/** SPEC promise under test: the page comes within a minute of the mismatch. */
const PAGE_WITHIN_MS = 60_000;

interface Modelgate {
  dataUrl: string;
  adminUrl: string;
  output(): string;
  stop(): Promise<void>;
}

/** Spawns `node src/main.ts serve --config FILE` and waits for its "modelgate listening" log line. */
async function startModelgate(configFile: string): Promise<Modelgate> {
  const child: ChildProcess = spawn(process.execPath, ['src/main.ts', 'serve', '--config', configFile], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const listening = new Promise<{ dataUrl: string; adminUrl: string }>((resolve, reject) => {
    let pending = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      pending += chunk.toString();
      let newline = pending.indexOf('\n');
      while (newline !== -1) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        newline = pending.indexOf('\n');
        let entry: { msg?: string; dataUrl?: string; adminUrl?: string };
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          continue;
        }
        if (entry.msg === 'modelgate listening' && entry.dataUrl && entry.adminUrl) {
          resolve({ dataUrl: entry.dataUrl, adminUrl: entry.adminUrl });
        }
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('exit', (code) =>
      reject(new Error(`modelgate exited with ${code} before listening:\n${output}`)),
    );
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  };
  const timeout = setTimeout(() => child.kill('SIGKILL'), 30_000);
  try {
    const urls = await listening;
    return { ...urls, output: () => output, stop };
  } catch (error) {
    await stop();
    throw error;
  } finally {
    clearTimeout(timeout);
  }
}

async function digestMismatchAlerts(prometheus: PrometheusServer) {
  return (await activeAlerts(prometheus)).filter((alert) => alert.labels.alertname === ALERT);
}

describe('when Prometheus scrapes modelgate and a stored file no longer matches its signed release', () => {
  let dir: string;
  let modelgate: Modelgate | undefined;
  let prometheus: PrometheusServer | undefined;
  let fileUrl: string;
  let token: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-alerts-e2e-'));
    const catalogDir = join(dir, 'releases');
    const modelDir = join(dir, 'models', MODEL, VERSION);
    await mkdir(catalogDir, { recursive: true });
    await mkdir(modelDir, { recursive: true });

    // Two 1 MiB chunks (the second short), signed over the original bytes.
    const bytes = randomBytes(1024 * 1024 + 512 * 1024);
    const signer = await createSigner(dir, 'release');
    const manifest = buildManifest({
      model: MODEL,
      version: VERSION,
      environment: 'prod',
      files: [{ path: 'model.safetensors', bytes, sources: [`file:${MODEL}/${VERSION}/model.safetensors`] }],
    });
    const jws = await signRelease(manifest, signer);
    await writeRelease(catalogDir, `${MODEL}-${VERSION}`, jws);
    // The store now holds different bytes than the ones signed: one bit flipped.
    const tampered = Buffer.from(bytes);
    tampered[4096] = tampered[4096]! ^ 0x01;
    await writeFile(join(modelDir, 'model.safetensors'), tampered);

    const issuerKey = await generateTestKey('ES256');
    const config = {
      listen: { address: '127.0.0.1', port: 0 },
      admin: { address: '127.0.0.1', port: 0 },
      limits: { shutdownGraceSeconds: 1 },
      // No retries: the mismatch is final on the first read anyway.
      transfer: { retries: 0 },
      stores: { file: { root: './models' } },
      catalog: { dir: './releases', pollSeconds: 0 },
      issuers: [
        {
          name: 'test-cluster',
          issuer: ISSUER,
          jwksFile: await writeJwksFile(dir, [issuerKey], 'issuer.jwks.json'),
          audiences: ['modelgate'],
          algorithms: ['ES256'],
        },
      ],
      serviceAccounts: [
        {
          name: 'fraud-inference',
          issuer: 'test-cluster',
          subject: 'system:serviceaccount:fraud:inference',
          grants: [{ models: ['fraud-*'], environments: ['prod'] }],
        },
      ],
      signers: [{ name: signer.name, jwksFile: signer.jwksFile, environments: ['prod'] }],
      environments: { prod: { mode: 'enforce', digestRefsOnly: true } },
      logging: { level: 'info' },
    };
    const configFile = join(dir, 'modelgate.yaml');
    await writeFile(configFile, stringify(config));

    modelgate = await startModelgate(configFile);
    token = await mintKubernetesToken(issuerKey, {
      issuer: ISSUER,
      namespace: 'fraud',
      serviceAccount: 'inference',
    });
    fileUrl = `${modelgate.dataUrl}/v1/models/${MODEL}/releases/${releaseDigest(jws)}/files/model.safetensors`;

    // The production rules, with long `for:` shortened so nothing else has to
    // wait minutes; ModelgateDigestMismatch keeps its `for: 0m` (checked below).
    prometheus = await startPrometheus({
      rules: withShortFor(await readFile(alertsFile, 'utf8'), '1s'),
      targets: [new URL(modelgate.adminUrl).host],
    });
  });

  after(async () => {
    await prometheus?.stop();
    await modelgate?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('pages in production without a `for:` delay', async () => {
    const rules = parse(await readFile(alertsFile, 'utf8')) as {
      groups: Array<{ rules: Array<{ alert?: string; for?: string }> }>;
    };
    const rule = rules.groups.flatMap((group) => group.rules).find((candidate) => candidate.alert === ALERT);
    assert.ok(rule, `${ALERT} is not in ${alertsFile}`);
    assert.match(rule.for ?? '0s', /^0[smh]?$/);
  });

  it('does not fire while every retrieval verified (after several scrapes and evaluations)', async () => {
    assert.ok(prometheus && modelgate);
    const server = prometheus;
    await waitFor('three successful scrapes of modelgate', 30_000, async () => {
      const { result } = await queryPrometheus(server, 'sum_over_time(up{job="modelgate"}[1m])');
      return Number(result[0]?.value[1] ?? 0) >= 3;
    });
    // The metrics Prometheus holds come from this modelgate's registry.
    const inflight = await queryPrometheus(server, 'modelgate_inflight_requests{job="modelgate"}');
    assert.equal(inflight.result.length, 1, `modelgate metrics not scraped:\n${server.output()}`);

    // The rule has been evaluated since then, healthy.
    const scrapedAt = Date.now();
    await waitFor(`an evaluation of ${ALERT}`, 15_000, async () => {
      const { groups } = await prometheusApi<{
        groups: Array<{
          rules: Array<{ name: string; health: string; lastEvaluation: string; lastError?: string }>;
        }>;
      }>(server, '/api/v1/rules');
      const rule = groups.flatMap((group) => group.rules).find((candidate) => candidate.name === ALERT);
      assert.ok(rule, `${ALERT} not loaded`);
      assert.notEqual(rule.health, 'err', rule.lastError);
      return Date.parse(rule.lastEvaluation) > scrapedAt;
    });

    assert.deepEqual(await digestMismatchAlerts(server), []);
  });

  it('refuses the tampered bytes and pages ModelgateDigestMismatch within 60 s', {
    timeout: 120_000,
  }, async () => {
    assert.ok(prometheus && modelgate);
    const server = prometheus;
    const requestedAt = Date.now();
    const response = await fetch(fileUrl, { headers: { authorization: `Bearer ${token}` } });
    let body: Buffer | undefined;
    try {
      body = Buffer.from(await response.arrayBuffer());
    } catch {
      body = undefined; // headers already sent: the proxy destroyed the connection (fail closed)
    }
    if (response.status === 200) {
      assert.equal(body, undefined, 'a tampered file was delivered as a complete 200 response');
    } else {
      assert.equal(response.status, 502, `${body?.toString()}\n${modelgate.output()}`);
      assert.equal(
        (JSON.parse(body?.toString() ?? '{}') as { error?: { code?: string } }).error?.code,
        'MG_DIGEST_MISMATCH',
      );
    }

    // modelgate counted it (so a missing page below is the rules' fault, not the counter's).
    const metrics = await (await fetch(`${modelgate.adminUrl}/metrics`)).text();
    assert.match(
      metrics,
      /^modelgate_digest_mismatches_total\{[^}]*model="fraud-detector"[^}]*\} 1$/m,
      'modelgate_digest_mismatches_total was not incremented',
    );

    let firing: Awaited<ReturnType<typeof digestMismatchAlerts>> = [];
    await waitFor(`${ALERT} to fire`, PAGE_WITHIN_MS, async () => {
      firing = (await digestMismatchAlerts(server)).filter((alert) => alert.state === 'firing');
      return firing.length > 0;
    });
    const elapsed = Date.now() - requestedAt;
    assert.ok(elapsed < PAGE_WITHIN_MS, `fired after ${elapsed} ms`);
    assert.equal(firing.length, 1);
    assert.equal(firing[0]!.labels.severity, 'critical');
    assert.equal(firing[0]!.labels.model, MODEL);
    assert.equal(firing[0]!.labels.environment, 'prod');
    assert.equal(firing[0]!.labels.store, 'file');
    assert.equal(firing[0]!.labels.instance, new URL(modelgate.adminUrl).host);
    assert.equal(firing[0]!.annotations.runbook_url, 'docs/runbook.md#modelgatedigestmismatch');
  });
});
