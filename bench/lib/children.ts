/**
 * Every process the bench starts (nginx, modelgate, s3rver, the fallback
 * static server) is registered here, so that a failed scenario, an exception
 * or Ctrl-C still stops all of them. Each child is spawned as the leader of
 * its own process group: nginx forks workers, and signalling the group (by the
 * leader's id, never by name) reaches them too.
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { once } from 'node:events';

export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly pid: number;
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the leader exited. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<Child>();

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/** Spawns a child in its own process group and registers it for clean-up. */
export function startChild(name: string, command: string, args: string[], options: SpawnOptions): Child {
  const child = spawn(command, args, { ...options, detached: true });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const pid = child.pid;
  const exited = once(child, 'exit').then(() => {});
  let stopping: Promise<void> | undefined;
  const entry: Child = {
    name,
    process: child,
    pid,
    stop(graceMs = 5000) {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          signalGroup(pid, 'SIGTERM');
          const timer = setTimeout(() => signalGroup(pid, 'SIGKILL'), graceMs);
          await exited;
          clearTimeout(timer);
        }
        // Forked grandchildren (nginx workers) may outlive the leader by a moment.
        signalGroup(pid, 'SIGKILL');
        running.delete(entry);
      })();
      return stopping;
    },
  };
  running.add(entry);
  child.once('exit', () => {
    if (stopping === undefined) running.delete(entry);
  });
  return entry;
}

/** Stops every registered child (in parallel: they are independent). */
export async function stopAllChildren(): Promise<void> {
  await Promise.allSettled([...running].map((child) => child.stop()));
}

/** Last resort when the bench process exits without reaching its `finally`: kill synchronously. */
function killAllNow(): void {
  for (const child of running) signalGroup(child.pid, 'SIGKILL');
}

process.once('exit', killAllNow);
const cleanups: Array<() => Promise<void>> = [];

/** Work to do after the children stopped when a signal ends the bench (e.g. removing its temp folder). */
export function onInterrupt(cleanup: () => Promise<void>): void {
  cleanups.push(cleanup);
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping children\n`);
    stopAllChildren()
      .then(() => Promise.allSettled(cleanups.map((cleanup) => cleanup())))
      .finally(() => process.exit(130));
  });
}
