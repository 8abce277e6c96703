import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const script = new URL('./fixtures/cache-child.ts', import.meta.url).pathname;

/** A cache-child process and the JSON lines it printed. */
export interface CacheChild {
  process: ChildProcess;
  /** Resolves with the first line whose `step` is `step`. */
  waitFor(step: string): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

export function startCacheChild(args: string[]): CacheChild {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(JSON.parse(line) as Record<string, unknown>);
    for (const wake of waiters.splice(0)) wake();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  async function waitFor(step: string): Promise<Record<string, unknown>> {
    for (;;) {
      const found = lines.find((line) => line.step === step);
      if (found !== undefined) return found;
      const woke = new Promise<void>((resolve) => waiters.push(resolve));
      const code = await Promise.race([woke.then(() => undefined), exited.then((c) => ({ c }))]);
      if (code !== undefined && !lines.some((line) => line.step === step)) {
        throw new Error(`cache child exited (${code.c}) before printing ${step}`);
      }
    }
  }
  return { process: child, waitFor, exited };
}
