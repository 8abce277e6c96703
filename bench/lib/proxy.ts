/**
 * modelgate under test: `node src/main.ts serve --config FILE` as a child
 * process, one per scenario so that its peak RSS (VmHWM) belongs to that
 * scenario alone. Its log (one audit line per retrieval, as in production)
 * goes to a file rather than a pipe, so the measuring client never spends
 * time reading it.
 */
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Child, startChild } from './children.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

export interface ProxyProcess {
  readonly dataUrl: string;
  readonly adminUrl: string;
  readonly child: Child;
  /** Peak resident set size (VmHWM) of the proxy process, in bytes. */
  peakRss(): Promise<number>;
  /** Prometheus text from the admin listener. */
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

async function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Starts the proxy and waits for its "modelgate listening" line. */
export async function startProxy(
  configPath: string,
  logPath: string,
  extraArgs: string[] = [],
): Promise<ProxyProcess> {
  const log = openSync(logPath, 'w');
  let child: Child;
  try {
    child = startChild('modelgate', process.execPath, [MAIN, 'serve', '--config', configPath, ...extraArgs], {
      cwd: ROOT,
      stdio: ['ignore', log, log],
    });
  } finally {
    closeSync(log);
  }
  const deadline = Date.now() + 30_000;
  let listening: { dataUrl: string; adminUrl: string } | undefined;
  while (listening === undefined) {
    const text = await readFile(logPath, 'utf8');
    for (const line of text.split('\n')) {
      if (!line.includes('modelgate listening')) continue;
      const entry = JSON.parse(line) as { dataUrl: string; adminUrl: string };
      listening = { dataUrl: entry.dataUrl, adminUrl: entry.adminUrl };
    }
    if (listening !== undefined) break;
    if (child.process.exitCode !== null || Date.now() > deadline) {
      await child.stop();
      throw new Error(`modelgate did not start (see ${logPath}):\n${text.slice(-2000)}`);
    }
    await sleep(25);
  }
  const { dataUrl, adminUrl } = listening;
  return {
    dataUrl,
    adminUrl,
    child,
    peakRss: () => procStatus(child.pid, 'VmHWM'),
    metrics: async () => {
      const response = await fetch(`${adminUrl}/metrics`);
      return response.text();
    },
    stop: () => child.stop(15_000),
  };
}

/** Sum of every sample of a counter in Prometheus text (all label sets). */
export function sumMetric(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) total += value;
  }
  return total;
}
