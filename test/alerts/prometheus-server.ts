/**
 * A real Prometheus server (the `prometheus` binary from the distribution
 * package) on 127.0.0.1, for the `*.alerts.ts` tests. Each instance gets a
 * temporary TSDB and configuration, scrapes and evaluates every second, and
 * is stopped by `stop()`.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import { freePort } from '../helpers/ports.ts';

export const repoRoot = new URL('../../', import.meta.url).pathname;
export const alertsFile = join(repoRoot, 'deploy/prometheus/alerts.yaml');
export const alertTestsFile = join(repoRoot, 'deploy/prometheus/tests/alerts.test.yaml');

/**
 * Throws unless `binary` runs. These tests prove the alerts in a real
 * Prometheus, so a missing binary is a failure, never a skip.
 */
export function requireBinary(binary: 'prometheus' | 'promtool'): void {
  const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `"${binary}" is not on PATH (${probe.error?.message ?? `exit ${probe.status}`}). ` +
        'Install Prometheus first: `apt-get install prometheus` (Debian/Ubuntu) or put the ' +
        'prometheus and promtool binaries of a release from prometheus.io on PATH.',
    );
  }
}

export interface CommandResult {
  status: number | null;
  output: string;
}

/** Runs promtool with `args` from the repository root. */
export function runPromtool(args: string[]): CommandResult {
  requireBinary('promtool');
  const result = spawnSync('promtool', args, { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

interface RuleFile {
  groups: Array<{ name: string; rules: Array<Record<string, unknown>> }>;
}

/**
 * The rule file with every non-zero `for:` replaced by `forOverride`, so a
 * test need not wait minutes for pending alerts; zero `for:` values stay as
 * they are (their timing is part of what the test proves).
 */
export function withShortFor(alertsYaml: string, forOverride: string): string {
  const file = parse(alertsYaml) as RuleFile;
  for (const group of file.groups) {
    for (const rule of group.rules) {
      if (typeof rule.for === 'string' && !/^0[smhdwy]?$/.test(rule.for)) rule.for = forOverride;
    }
  }
  return stringify(file, { lineWidth: 0 });
}

export interface PrometheusOptions {
  /** Rule file contents to load. */
  rules?: string;
  /** `host:port` targets scraped as job `modelgate` every second. */
  targets?: string[];
}

export interface PrometheusServer {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** Everything the server wrote to stdout/stderr so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

export interface Alert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing' | 'inactive';
  activeAt?: string;
  value: string;
}

/** Starts Prometheus and waits until `/-/ready` answers 200. */
export async function startPrometheus(options: PrometheusOptions = {}): Promise<PrometheusServer> {
  requireBinary('prometheus');
  const dir = await mkdtemp(join(tmpdir(), 'modelgate-prometheus-'));
  const ruleFiles: string[] = [];
  if (options.rules !== undefined) {
    await writeFile(join(dir, 'rules.yaml'), options.rules);
    ruleFiles.push(join(dir, 'rules.yaml'));
  }
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    rule_files: ruleFiles,
    scrape_configs: [
      {
        job_name: 'modelgate',
        scrape_interval: '1s',
        scrape_timeout: '1s',
        static_configs: [{ targets: options.targets ?? [] }],
      },
    ],
  };
  await writeFile(join(dir, 'prometheus.yml'), stringify(config));
  const port = await freePort();
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const server: PrometheusServer = {
    url,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor('Prometheus to become ready', 30_000, async () => {
      if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${output}`);
      const response = await fetch(`${url}/-/ready`).catch(() => undefined);
      return response?.status === 200;
    });
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

/** GET a Prometheus HTTP API path and return `data`, failing on a non-success answer. */
export async function prometheusApi<T>(server: PrometheusServer, path: string): Promise<T> {
  const response = await fetch(`${server.url}${path}`);
  const body = (await response.json()) as { status: string; data: T; errorType?: string; error?: string };
  if (response.status !== 200 || body.status !== 'success') {
    throw new Error(`GET ${path}: ${response.status} ${body.errorType ?? ''} ${body.error ?? ''}`);
  }
  return body.data;
}

/** Evaluates an instant query. */
export function queryPrometheus(
  server: PrometheusServer,
  promql: string,
): Promise<{
  resultType: string;
  result: Array<{ metric: Record<string, string>; value: [number, string] }>;
}> {
  return prometheusApi(server, `/api/v1/query?query=${encodeURIComponent(promql)}`);
}

/** Active (pending or firing) alerts. */
export async function activeAlerts(server: PrometheusServer): Promise<Alert[]> {
  return (await prometheusApi<{ alerts: Alert[] }>(server, '/api/v1/alerts')).alerts;
}

/** Polls `check` every `intervalMs` until it returns true; throws after `timeoutMs`. */
export async function waitFor(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
  intervalMs = 250,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
