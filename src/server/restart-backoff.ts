/** When a dead worker is replaced: exponential backoff with a cap, like Kubernetes' CrashLoopBackOff. */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

/**
 * Failures in a row once a worker has died. A worker that stayed ready for
 * twice the cap before dying starts a new sequence (a crash after hours of
 * serving is not a crash loop); `readyForMs` is undefined when it died before
 * it was ready.
 */
export function countFailures(
  previous: number,
  readyForMs: number | undefined,
  policy: BackoffPolicy,
): number {
  return readyForMs !== undefined && readyForMs >= 2 * policy.maxMs ? 1 : previous + 1;
}

/** Delay before the replacement of a worker that has failed `failures` times in a row (≥ 1). */
export function restartDelayMs(failures: number, policy: BackoffPolicy): number {
  return Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, failures - 1));
}
