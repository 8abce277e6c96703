/**
 * Runs test/helpers/store-probe.ts in a child process, for the credential-path
 * tests: credentials come from the environment, which is process-wide, so
 * each case gets a process of its own, with the variables of the credential
 * chain under test removed from the inherited environment and `env` added.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { StoresConfig } from '../../src/config/config.types.ts';

const run = promisify(execFile);
const PROBE = new URL('./store-probe.ts', import.meta.url).pathname;

/** What the probe printed: the object's size and SHA-256, or the refusal's code and message. */
export interface ProbeResult {
  ok: boolean;
  size?: number;
  sha256?: string;
  code?: string;
  message?: string;
}

export async function runStoreProbe(options: {
  stores: Partial<StoresConfig>;
  location: string;
  /** Inherited variables whose names match this are not passed on. */
  dropEnv: RegExp;
  env: Record<string, string>;
  timeoutMs: number;
}): Promise<ProbeResult> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !options.dropEnv.test(name)),
  );
  const { stdout } = await run(
    process.execPath,
    [PROBE, JSON.stringify({ stores: options.stores, location: options.location })],
    { env: { ...base, ...options.env }, timeout: options.timeoutMs },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as ProbeResult;
}
