import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root (the fetch tests spawn `src/main.ts` from there). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The JSON lines of stderr (progress events), parsed. */
  events: Array<Record<string, unknown>>;
}

/** Parses the JSON progress lines of `modelgate fetch` stderr; other lines are skipped. */
export function parseEvents(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * Runs `node src/main.ts ARGS` as a child process (the black box an init
 * container runs) and resolves when it exits. `onSpawn` gets the child, so a
 * test can kill it mid-transfer.
 */
export function runCli(
  args: string[],
  options: {
    env?: Record<string, string>;
    onSpawn?: (child: ReturnType<typeof spawn>) => void;
    timeoutMs?: number;
  } = {},
): Promise<CliRun> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && key !== 'MODELGATE_TOKEN' && !key.startsWith('NODE_TEST')) env[key] = value;
  }
  const child = spawn(process.execPath, ['src/main.ts', ...args], {
    cwd: REPO_ROOT,
    env: { ...env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  options.onSpawn?.(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, events: parseEvents(stderr) });
    });
  });
}
