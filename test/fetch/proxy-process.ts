export { freePort } from '../helpers/ports.ts';

import type { ChildProcess } from 'node:child_process';
import { startServeProcess } from '../helpers/serve-process.ts';
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

/**
 * `modelgate serve --config FILE` as a black-box child process (one process),
 * resolved once it logged `modelgate listening`; see test/helpers/serve-process.ts.
 */
export async function startProxyProcess(configFile: string, timeoutMs = 30_000): Promise<ProxyProcess> {
  const proxy = await startServeProcess(['--config', configFile], { cwd: REPO_ROOT, timeoutMs });
  const exited = new Promise<void>((resolve) => {
    if (proxy.child.exitCode !== null || proxy.child.signalCode !== null) resolve();
    else proxy.child.once('exit', () => resolve());
  });
  const stopWith = async (signal: NodeJS.Signals, graceMs: number) => {
    if (proxy.child.exitCode !== null || proxy.child.signalCode !== null) return;
    proxy.child.kill(signal);
    const timeout = setTimeout(() => proxy.child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timeout);
  };
  return {
    child: proxy.child,
    dataUrl: proxy.dataUrl,
    adminUrl: proxy.adminUrl,
    logs: proxy.logs,
    stop: (graceMs = 5000) => stopWith('SIGTERM', graceMs),
    kill: () => stopWith('SIGKILL', 0),
  };
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
