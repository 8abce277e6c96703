import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  /** Absolute path of nginx, or null when it is not installed. */
  nginxPath: string | null;
  nginxVersion: string | null;
  kernel: string;
}

const NGINX_CANDIDATES = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'];

/** Finds nginx on PATH or in the usual install locations; the bench never installs it. */
export function findNginx(): string | null {
  if (process.env.BENCH_NGINX) return existsSync(process.env.BENCH_NGINX) ? process.env.BENCH_NGINX : null;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(`${dir}/nginx`)) return `${dir}/nginx`;
  }
  return NGINX_CANDIDATES.find((path) => existsSync(path)) ?? null;
}

function nginxVersion(path: string): string | null {
  // `nginx -v` prints "nginx version: nginx/1.22.1" on stderr.
  const result = spawnSync(path, ['-v'], { encoding: 'utf8' });
  return /nginx\/[\w.]+/.exec(`${result.stderr ?? ''}${result.stdout ?? ''}`)?.[0] ?? null;
}

function kernel(): string {
  try {
    return execFileSync('uname', ['-sr'], { encoding: 'utf8' }).trim();
  } catch {
    return process.platform;
  }
}

export function describeMachine(): MachineInfo {
  const nginxPath = findNginx();
  return {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    nginxPath,
    nginxVersion: nginxPath === null ? null : nginxVersion(nginxPath),
    kernel: kernel(),
  };
}
