import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

export interface ServeProcess {
  child: ChildProcess;
  dataUrl: string;
  adminUrl: string;
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
  stderr: () => string;
  /** Peak resident set size of the proxy process so far (VmHWM), in bytes. */
  peakRss(): Promise<number>;
  /** Current resident set size (VmRSS), in bytes. */
  rss(): Promise<number>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

async function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/**
 * Runs `modelgate serve` as a separate process (a black box, as in production)
 * and waits for its "modelgate listening" line, which carries both URLs.
 */
export async function startServeProcess(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<ServeProcess> {
  // One process unless a test asks for workers: RSS, caps and logs are then those of the process serving.
  const workers = args.includes('--workers') ? [] : ['--workers', '1'];
  const child = spawn(process.execPath, [MAIN, 'serve', ...workers, ...args], {
    cwd: options.cwd ?? new URL('../..', import.meta.url).pathname,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, 'exit');
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`serve did not start:\n${stderr}`)),
      options.timeoutMs ?? 20_000,
    );
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === 'modelgate listening') {
        clearTimeout(timer);
        resolve(entry);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before listening:\n${stderr}`));
    });
  });
  const line = await listening.catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });
  return {
    child,
    dataUrl: String(line.dataUrl),
    adminUrl: String(line.adminUrl),
    logs,
    stderr: () => stderr,
    peakRss: () => procStatus(child.pid!, 'VmHWM'),
    rss: () => procStatus(child.pid!, 'VmRSS'),
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}
