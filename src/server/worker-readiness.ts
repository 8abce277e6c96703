import type { WorkerState } from '../telemetry/metrics.ts';
import type { ReadinessReport } from './admin.ts';

/** How a worker's last process ended. */
export interface WorkerExit {
  code: number | null;
  signal: string | null;
  /** Whether it died before it was ready (start-up) or while serving. */
  phase: 'starting' | 'serving';
  /** What the worker reported before exiting, when its start-up failed. */
  error?: string;
  /** ISO time of the exit. */
  at: string;
}

/** One worker slot as the supervisor sees it (also the `/readyz` detail). */
export interface WorkerStatus {
  /** Slot number, 1..N: stable across restarts, unlike the pid. */
  worker: number;
  pid: number | null;
  state: WorkerState;
  /** Replacement processes started for this slot so far. */
  restarts: number;
  /** Deaths in a row without a long enough ready period between them (drives the backoff). */
  failures: number;
  lastExit?: WorkerExit;
  /** While in backoff: when the replacement starts. */
  nextStartInSeconds?: number;
}

/** A worker that keeps failing this often in a row is called crash-looping in `/readyz`. */
const CRASH_LOOP_FAILURES = 3;

function describeExit(exit: WorkerExit): string {
  const how = exit.signal === null ? `exited with code ${exit.code}` : `was killed by ${exit.signal}`;
  const when = exit.phase === 'starting' ? 'before it was ready' : 'while serving';
  return `${how} ${when}${exit.error ? ` (${exit.error.split('\n')[0]})` : ''}`;
}

function describeWorker(status: WorkerStatus, report: ReadinessReport | undefined): string {
  const name = `worker ${status.worker}`;
  const looping = status.failures >= CRASH_LOOP_FAILURES;
  const exit = status.lastExit ? describeExit(status.lastExit) : 'exited';
  if (status.state === 'backoff') {
    return `${name} is ${looping ? 'crash-looping' : 'restarting'}: it ${exit}, ${status.failures} failures in a row; next start in ${status.nextStartInSeconds ?? 0} s`;
  }
  if (status.state === 'starting') {
    if (looping)
      return `${name} is crash-looping: starting again (pid ${status.pid}) after ${status.failures} failures in a row; last it ${exit}`;
    return `${name} (pid ${status.pid}) is starting${status.lastExit ? `; last it ${exit}` : ''}`;
  }
  if (report === undefined) return `${name} (pid ${status.pid}) did not answer the readiness question`;
  const failed = Object.entries(report.checks)
    .filter(([, check]) => !check.ok)
    .map(([check]) => check);
  return `${name} (pid ${status.pid}) is not ready: ${failed.join(', ') || 'not ready'}`;
}

/**
 * Readiness of `serve --workers N`: ready while at least one worker is ready
 * (the others' share of traffic goes to it: the data socket is shared), so a
 * crash-looping worker degrades capacity, not availability. The `workers`
 * check names every worker that is not ready and why; the other checks are
 * those of a ready worker. Not ready when no worker is, or while stopping.
 */
export function aggregateReadiness(
  statuses: WorkerStatus[],
  reports: ReadonlyMap<number, ReadinessReport>,
  stopping: boolean,
): ReadinessReport {
  const isReady = (s: WorkerStatus) => s.state === 'ready' && reports.get(s.worker)?.ready === true;
  const ready = statuses.filter(isReady);
  const degraded = statuses.filter((s) => !isReady(s));
  const reasons = degraded.map((s) => describeWorker(s, reports.get(s.worker)));
  if (stopping) reasons.unshift('shutting down');
  const representative = ready[0] ?? statuses.find((s) => reports.has(s.worker));
  const report = representative === undefined ? undefined : reports.get(representative.worker);
  const ok = !stopping && ready.length > 0;
  return {
    ready: ok && (report?.ready ?? false),
    checks: {
      workers: {
        ok,
        ...(reasons.length > 0
          ? { reason: `${ready.length} of ${statuses.length} workers ready; ${reasons.join('; ')}` }
          : {}),
        detail: { expected: statuses.length, ready: ready.length, workers: statuses },
      },
      ...(report?.checks ?? {}),
    },
    auditEnvironments: report?.auditEnvironments ?? [],
  };
}
