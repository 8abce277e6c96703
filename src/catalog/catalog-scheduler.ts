import { createCoalescer } from '../util/single-flight.ts';

/**
 * When the catalog scans: on demand (start, SIGHUP) and every `pollSeconds`.
 * One scan at a time; requests during a scan share one follow-up scan that
 * sees their changes. A failed poll is reported, never thrown.
 */
export function createScanScheduler<T>(options: {
  pollSeconds: number;
  scan: () => Promise<T>;
  onPollError: (error: unknown) => void;
}) {
  const trigger = createCoalescer(options.scan);
  let timer: NodeJS.Timeout | undefined;
  return {
    trigger,
    startPolling(): void {
      if (options.pollSeconds <= 0 || timer !== undefined) return;
      timer = setInterval(() => {
        trigger().catch(options.onPollError);
      }, options.pollSeconds * 1000);
      // Polling alone must not keep a process alive that is otherwise shutting down.
      timer.unref();
    },
    stop(): void {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
  };
}
