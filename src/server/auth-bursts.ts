import type { Clock } from '../clock.ts';
import type { Logger } from '../telemetry/logger.ts';

/** Authentication failures in one window that make a burst worth a warning (a stolen or stale token, a scan). */
const AUTH_BURST_THRESHOLD = 20;
const AUTH_BURST_WINDOW_MS = 10_000;

/**
 * Each refused token already has its audit line (info); a burst of them is a
 * security event, logged once per window at warn with the count per reason.
 */
export function createBurstDetector(clock: Clock, logger: Logger) {
  let windowStart = 0;
  let counts = new Map<string, number>();
  let total = 0;
  let warned = false;
  return {
    record(code: string) {
      const now = clock();
      if (now - windowStart >= AUTH_BURST_WINDOW_MS) {
        windowStart = now;
        counts = new Map();
        total = 0;
        warned = false;
      }
      counts.set(code, (counts.get(code) ?? 0) + 1);
      total++;
      if (!warned && total >= AUTH_BURST_THRESHOLD) {
        warned = true;
        logger.warn(
          {
            event: 'auth_failure_burst',
            windowSeconds: AUTH_BURST_WINDOW_MS / 1000,
            failures: total,
            byReason: Object.fromEntries(counts),
          },
          `at least ${AUTH_BURST_THRESHOLD} authentication failures within ${AUTH_BURST_WINDOW_MS / 1000}s`,
        );
      }
    },
  };
}
