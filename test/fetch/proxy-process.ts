import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { REPO_ROOT } from './run-cli.ts';

export interface ProxyProcess {
  child: ChildProcess;
  dataUrl: string;
  adminUrl: string;
  /** Every JSON line the proxy logged on stdout so far. */
  logs: Array<Record<string, unknown>>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL now (a crashed or evicted proxy) and wait for the exit. */
  kill(): Promise<void>;
}

/** A port that was free a moment ago, for a proxy that must come back on the same port after a restart. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Runs `node src/main.ts serve --config FILE` as a black-box child process
 * and resolves once it logged `modelgate listening` (with `dataUrl` and
 * `adminUrl`); rejects when it exits first or does not start in time.
 */
export function startProxyProcess(configFile: string, timeoutMs = 30_000): Promise<ProxyProcess> {
  const child = spawn(process.execPath, ['src/main.ts', 'serve', '--config', configFile], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  let buffered = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`proxy did not start within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`proxy exited (${code ?? signal}) before listening; stderr: ${stderr}`));
    });
    child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      buffered += text;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg !== 'modelgate listening') continue;
        clearTimeout(timer);
        const stopWith = async (signal: NodeJS.Signals, graceMs: number) => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.kill(signal);
          const timeout = setTimeout(() => child.kill('SIGKILL'), graceMs);
          await exited;
          clearTimeout(timeout);
        };
        resolve({
          child,
          dataUrl: String(entry.dataUrl),
          adminUrl: String(entry.adminUrl),
          logs,
          stop: (graceMs = 5000) => stopWith('SIGTERM', graceMs),
          kill: () => stopWith('SIGKILL', 0),
        });
      }
    });
  });
}

/** Sums every sample of a Prometheus text metric whose labels include `labels`. */
export async function scrapeMetric(
  adminUrl: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match === null || match[1] !== name) continue;
    const labelText = match[2] ?? '';
    if (Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) {
      sum += Number(match[3]);
    }
  }
  return sum;
}
