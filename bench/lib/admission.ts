/**
 * `npm run bench -- --admission`: the admission webhook under load. Starts
 * `modelgate serve` (default workers) with an `admission:` listener on
 * 127.0.0.1, then posts 500 AdmissionReview v1 requests for Pods at
 * concurrency 16 over keep-alive HTTPS, a rotating mix of a granted digest
 * (allowed), a version in a digest-only environment, an unknown digest and an
 * ungranted service account (denied), and reports p50/p99 against the
 * webhook's `timeoutSeconds` in deploy/kubernetes/admission.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { podReview, writeSelfSignedCert } from '../../test/admission/webhook-fixture.ts';
import { freePort } from '../../test/helpers/ports.ts';
import {
  buildManifest,
  createSigner,
  releaseDigest,
  signRelease,
  writeRelease,
} from '../../test/helpers/releases.ts';
import { generateTestKey, writeJwksFile } from '../../test/helpers/tokens.ts';
import { startProxy } from './proxy.ts';

export const ADMISSION_REQUESTS = 500;
export const ADMISSION_CONCURRENCY = 16;
const WEBHOOK_YAML = new URL(
  '../../deploy/kubernetes/admission/validating-webhook-configuration.yaml',
  import.meta.url,
);

export interface AdmissionBenchResult {
  requests: number;
  concurrency: number;
  workers: string;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  requestsPerSecond: number;
  allowed: number;
  denied: number;
  /** The smallest `timeoutSeconds` of the shipped webhook entries. */
  timeoutSeconds: number;
}

async function webhookTimeoutSeconds(): Promise<number> {
  const [config] = parseAllDocuments(await readFile(WEBHOOK_YAML, 'utf8')).map(
    (d) => d.toJS() as { webhooks: Array<{ timeoutSeconds: number }> },
  );
  return Math.min(...(config?.webhooks ?? []).map((w) => w.timeoutSeconds));
}

/** Writes the catalog, keys, certificate and configuration; returns the config path and the review bodies. */
async function prepare(dir: string, port: number): Promise<{ configPath: string; bodies: string[] }> {
  const signer = await createSigner(dir, 'release');
  const releases = join(dir, 'releases');
  await mkdir(releases, { recursive: true });
  const manifest = buildManifest({
    model: 'fraud-detector',
    version: '1.0',
    environment: 'prod',
    files: [{ path: 'model.bin', bytes: Buffer.from('weights'), sources: ['file:model.bin'] }],
  });
  const jws = await signRelease(manifest, signer);
  await writeRelease(releases, 'fraud-1.0', jws);
  const digest = releaseDigest(jws);
  const key = await generateTestKey('ES256');
  const jwksFile = await writeJwksFile(dir, [key], 'issuer.jwks.json');
  const tls = await writeSelfSignedCert(dir, 'webhook');
  const config = {
    listen: { address: '127.0.0.1', port: 0 },
    admin: { address: '127.0.0.1', port: 0 },
    stores: { file: { root: dir } },
    catalog: { dir: releases, pollSeconds: 0 },
    issuers: [
      {
        name: 'cluster',
        issuer: 'https://issuer.bench.invalid',
        jwksFile,
        audiences: ['modelgate'],
        algorithms: ['ES256'],
        kubernetes: true,
      },
    ],
    serviceAccounts: [
      {
        name: 'fraud-inference',
        issuer: 'cluster',
        subject: 'system:serviceaccount:fraud:inference',
        grants: [{ models: ['fraud-*'], environments: ['prod'] }],
      },
      {
        name: 'batch',
        issuer: 'cluster',
        subject: 'system:serviceaccount:fraud:batch',
        grants: [{ models: ['churn-*'], environments: ['prod'] }],
      },
    ],
    signers: [{ name: 'release', jwksFile: signer.jwksFile, environments: ['prod'] }],
    environments: { prod: { mode: 'enforce', digestRefsOnly: true } },
    admission: { address: '127.0.0.1', port, tls },
    logging: { level: 'info' },
  };
  const configPath = join(dir, 'admission.yaml');
  await writeFile(configPath, stringify(config));
  const fetch = (release: string) => [
    {
      name: 'fetch-model',
      image: 'modelgate:0.1.0',
      args: [
        'fetch',
        '--proxy',
        'http://modelgate:8080',
        '--model',
        'fraud-detector',
        '--release',
        release,
        '--dest',
        '/models',
      ],
    },
  ];
  const kinds = [
    {
      serviceAccountName: 'inference',
      annotations: { 'modelgate.dev/models': `fraud-detector@${digest}` },
      initContainers: fetch(digest),
    },
    { serviceAccountName: 'inference', initContainers: fetch('1.0') },
    { serviceAccountName: 'inference', initContainers: fetch(`sha256:${'ab'.repeat(32)}`) },
    { serviceAccountName: 'batch', initContainers: fetch(digest) },
  ];
  const bodies = Array.from({ length: ADMISSION_REQUESTS }, (_, i) =>
    JSON.stringify(podReview(`bench-${i}`, kinds[i % kinds.length] ?? {})),
  );
  return { configPath, bodies };
}

function post(agent: Agent, url: URL, body: string): Promise<{ allowed: boolean; ms: number }> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (part: Buffer) => parts.push(part));
        res.on('end', () => {
          const ms = performance.now() - start;
          if (res.statusCode !== 200) {
            reject(new Error(`webhook answered ${res.statusCode}`));
            return;
          }
          const review = parse(Buffer.concat(parts).toString('utf8')) as { response: { allowed: boolean } };
          resolve({ allowed: review.response.allowed, ms });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function percentile(sorted: number[], p: number): number {
  return (
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN
  );
}

/** Runs the scenario in `dir` (a temp folder the caller owns); prints nothing. */
export async function runAdmissionBench(dir: string): Promise<AdmissionBenchResult> {
  const port = await freePort();
  const { configPath, bodies } = await prepare(dir, port);
  const proxy = await startProxy(configPath, join(dir, 'modelgate.log'));
  const ca = await readFile(join(dir, 'webhook.crt'));
  const agent = new Agent({ keepAlive: true, maxSockets: ADMISSION_CONCURRENCY, ca });
  const url = new URL(`https://127.0.0.1:${port}/validate/pods/prod`);
  try {
    // Warm-up: open the connections (TLS handshakes) and let the JIT settle; not counted.
    await Promise.all(bodies.slice(0, ADMISSION_CONCURRENCY * 2).map((body) => post(agent, url, body)));
    const latencies: number[] = [];
    let allowed = 0;
    let next = 0;
    const started = performance.now();
    const worker = async () => {
      while (next < bodies.length) {
        const body = bodies[next++] ?? '';
        const answer = await post(agent, url, body);
        latencies.push(answer.ms);
        if (answer.allowed) allowed++;
      }
    };
    await Promise.all(Array.from({ length: ADMISSION_CONCURRENCY }, worker));
    const seconds = (performance.now() - started) / 1000;
    const sorted = latencies.toSorted((a, b) => a - b);
    const expectedAllowed = Math.ceil(bodies.length / 4);
    if (allowed !== expectedAllowed)
      throw new Error(`expected ${expectedAllowed} allowed answers, got ${allowed}`);
    return {
      requests: sorted.length,
      concurrency: ADMISSION_CONCURRENCY,
      workers: 'default (one per CPU)',
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      maxMs: sorted.at(-1) ?? Number.NaN,
      requestsPerSecond: sorted.length / seconds,
      allowed,
      denied: sorted.length - allowed,
      timeoutSeconds: await webhookTimeoutSeconds(),
    };
  } finally {
    agent.destroy();
    await proxy.stop();
  }
}

const RESULTS = new URL('../results/', import.meta.url).pathname;

/** The `--admission` run: temp folder, the scenario, a table, the JSON report in bench/results/. */
export async function runAdmissionCommand(options: {
  keep: boolean;
  log: (line: string) => void;
}): Promise<void> {
  const { log } = options;
  const dir = await mkdtemp(join(tmpdir(), 'modelgate-bench-admission-'));
  try {
    log(
      `machine: ${availableParallelism()} CPUs, load average ${loadavg()
        .map((v) => v.toFixed(2))
        .join(' ')}`,
    );
    log(
      `admission: ${ADMISSION_REQUESTS} AdmissionReview v1 posts at concurrency ${ADMISSION_CONCURRENCY} (HTTPS keep-alive)`,
    );
    const result = await runAdmissionBench(dir);
    const ms = (value: number) => `${value.toFixed(1)} ms`;
    log(
      `| requests | concurrency | allowed / denied | p50 | p99 | max | req/s | webhook timeoutSeconds |\n` +
        `|---|---|---|---|---|---|---|---|\n` +
        `| ${result.requests} | ${result.concurrency} | ${result.allowed} / ${result.denied} | ${ms(result.p50Ms)} | ` +
        `${ms(result.p99Ms)} | ${ms(result.maxMs)} | ${result.requestsPerSecond.toFixed(0)} | ${result.timeoutSeconds} s |`,
    );
    const verdict = result.p99Ms < result.timeoutSeconds * 1000 ? 'met' : 'MISSED';
    log(`target p99 < timeoutSeconds (${result.timeoutSeconds} s): ${verdict}`);
    await mkdir(RESULTS, { recursive: true });
    const out = join(RESULTS, `bench-admission-${new Date().toISOString().replaceAll(':', '-')}.json`);
    await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
    log(`report: ${out}`);
  } finally {
    if (options.keep) log(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}
