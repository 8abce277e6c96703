/**
 * modelgate under test: `node src/main.ts serve --config FILE` as a child
 * process, one per scenario so that its peak RSS (VmHWM) belongs to that
 * scenario alone. Its log (one audit line per retrieval, as in production)
 * goes to a file rather than a pipe, so the measuring client never spends
 * time reading it.
 */
import { closeSync, openSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Child, startChild } from './children.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

export interface ProxyProcess {
  readonly dataUrl: string;
  readonly adminUrl: string;
  readonly child: Child;
  /**
   * Resident memory of the proxy's process group (one process, or the
   * primary and its `--workers`): peak (VmHWM) or current (VmRSS).
   */
  memory(field: 'VmHWM' | 'VmRSS'): Promise<GroupMemory>;
  /** Prometheus text from the admin listener. */
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

async function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Processes whose process group is `leader` (the proxy was spawned as a group leader). */
async function groupMembers(leader: number): Promise<number[]> {
  const members: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // "pid (comm) state ppid pgrp …": comm may hold spaces or parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === leader) members.push(Number(entry));
  }
  return members;
}

export interface GroupMemory {
  /** Sum over the processes, in bytes (for VmHWM: an upper bound, the peaks need not coincide). */
  total: number;
  /** The largest single process, in bytes. */
  largest: number;
  processes: number;
}

async function groupMemory(leader: number, field: 'VmHWM' | 'VmRSS'): Promise<GroupMemory> {
  const values = await Promise.all((await groupMembers(leader)).map((pid) => procStatus(pid, field)));
  return {
    total: values.reduce((a, b) => a + b, 0),
    largest: Math.max(0, ...values),
    processes: values.length,
  };
}

/**
 * Starts the proxy and waits for its "modelgate listening" line. `nodeOptions`
 * replaces `NODE_OPTIONS` for the proxy alone (e.g. the deployment's V8 flags).
 */
export async function startProxy(
  configPath: string,
  logPath: string,
  extraArgs: string[] = [],
  nodeOptions?: string,
): Promise<ProxyProcess> {
  const log = openSync(logPath, 'w');
  let child: Child;
  try {
    // MODELGATE_BENCH_CPU_PROF=<dir>: every proxy process writes a V8 CPU profile there when it stops
    // (`--cpu-prof` is not allowed in NODE_OPTIONS). Read them with Chrome DevTools or speedscope.
    const profileDir = process.env.MODELGATE_BENCH_CPU_PROF;
    const profile = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
    const args = [...profile, MAIN, 'serve', '--config', configPath, ...extraArgs];
    child = startChild('modelgate', process.execPath, args, {
      cwd: ROOT,
      stdio: ['ignore', log, log],
      env: nodeOptions === undefined ? process.env : { ...process.env, NODE_OPTIONS: nodeOptions },
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
    memory: (field) => groupMemory(child.pid, field),
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
