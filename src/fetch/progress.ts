import type { FileResult, RetryEvent } from './download-file.ts';
import type { FetchError } from './fetch-error.ts';

export interface ReleaseInfo {
  model: string;
  version: string;
  releaseDigest: string;
  files: number;
  bytes: number;
}

export interface FetchSummary extends ReleaseInfo {
  environment: string;
  results: FileResult[];
  downloaded: number;
  present: number;
  /** Bytes received from the proxy, across files and attempts. */
  transferred: number;
  seconds: number;
}

/** What `fetchRelease` tells about its progress. */
export interface FetchReporter {
  release(info: ReleaseInfo): void;
  /** Bytes moved forward (or back, after a rollback to a verified checkpoint). */
  progress(delta: number): void;
  retry(event: RetryEvent): void;
  file(result: FileResult): void;
  done(summary: FetchSummary): void;
  /** Stops timers; called once, on success or failure. */
  close(): void;
}

export interface ReporterOutput {
  write(text: string): unknown;
}

export const silentReporter: FetchReporter = {
  release() {},
  progress() {},
  retry() {},
  file() {},
  done() {},
  close() {},
};

/**
 * One JSON line per event, for logs (stderr of an init container is what
 * `kubectl logs -c fetch` shows): `release`, `retry`, one `file` line per
 * finished file, and a final `done` line.
 */
export function jsonReporter(out: ReporterOutput): FetchReporter {
  const line = (event: Record<string, unknown>) => out.write(`${JSON.stringify(event)}\n`);
  return {
    release(info) {
      line({ event: 'release', ...info });
    },
    progress() {},
    retry(event) {
      line({ event: 'retry', ...event });
    },
    file(result) {
      line({
        event: 'file',
        path: result.path,
        bytes: result.size,
        seconds: result.seconds,
        digest: result.digest,
        status: result.status,
        resumedFrom: result.resumedFrom,
        transferred: result.transferred,
      });
    },
    done(summary) {
      line({
        event: 'done',
        model: summary.model,
        version: summary.version,
        releaseDigest: summary.releaseDigest,
        environment: summary.environment,
        files: summary.files,
        downloaded: summary.downloaded,
        present: summary.present,
        bytes: summary.bytes,
        transferred: summary.transferred,
        seconds: summary.seconds,
      });
    },
    close() {},
  };
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Redraws of the live line per second: smooth enough, and cheap on a slow terminal. */
const REDRAW_MS = 250;
/** The rate is measured over this window, so the ETA follows the current speed, not the average. */
const RATE_WINDOW_MS = 5000;

/** A live status line (bytes, rate, ETA) redrawn in place, with one line per finished file above it. */
export function ttyReporter(
  out: ReporterOutput & { columns?: number },
  now: () => number = () => performance.now(),
): FetchReporter {
  let info: ReleaseInfo | undefined;
  let lineOpen = false;
  let done = 0;
  let filesDone = 0;
  const samples: Array<{ at: number; bytes: number }> = [];
  let timer: NodeJS.Timeout | undefined;

  function rate(): number {
    const at = now();
    samples.push({ at, bytes: done });
    while (samples.length > 2 && at - samples[0]!.at > RATE_WINDOW_MS) samples.shift();
    const first = samples[0]!;
    const elapsed = (at - first.at) / 1000;
    return elapsed > 0 ? Math.max(0, (done - first.bytes) / elapsed) : 0;
  }

  function draw(): void {
    if (info === undefined) return;
    const perSecond = rate();
    const left = Math.max(0, info.bytes - done);
    const percent = info.bytes === 0 ? 100 : Math.floor((done / info.bytes) * 100);
    const eta = perSecond > 0 ? formatDuration(left / perSecond) : '--';
    const line =
      `${info.model}@${info.version}  ${formatBytes(done)} / ${formatBytes(info.bytes)}  ${percent}%  ` +
      `${formatBytes(Math.round(perSecond))}/s  ETA ${eta}  [${filesDone}/${info.files} files]`;
    // A line wider than the terminal wraps, and `\r` would then redraw only its last row.
    const width = out.columns !== undefined && out.columns > 1 ? out.columns - 1 : line.length;
    out.write(`\r\x1b[K${line.slice(0, width)}`);
    lineOpen = true;
  }

  function above(text: string): void {
    out.write(`\r\x1b[K${text}\n`);
    draw();
  }

  return {
    release(release) {
      info = release;
      out.write(`fetching ${release.model}@${release.version} (${release.releaseDigest})\n`);
      timer = setInterval(draw, REDRAW_MS);
      timer.unref();
      draw();
    },
    progress(delta) {
      done += delta;
    },
    retry(event) {
      const where = event.path ?? 'manifest';
      above(
        `  retry ${where}: ${event.code}, again in ${(event.delayMs / 1000).toFixed(1)}s from byte ${event.offset}`,
      );
    },
    file(result) {
      filesDone += 1;
      above(
        `  ${result.status === 'present' ? 'present   ' : 'downloaded'}  ${result.path}  ${formatBytes(result.size)}`,
      );
    },
    done(summary) {
      if (timer !== undefined) clearInterval(timer);
      draw();
      lineOpen = false;
      out.write(
        `\n${summary.files} files, ${formatBytes(summary.bytes)} verified in ${formatDuration(summary.seconds)} ` +
          `(${summary.downloaded} downloaded, ${summary.present} already present)\n`,
      );
    },
    close() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      // Leave the live line in place and start a fresh one for whatever is printed next.
      if (lineOpen) out.write('\n');
      lineOpen = false;
    },
  };
}

/** The one-line message for a failure, naming the exit code and the proxy's error code. */
export function describeFailure(error: FetchError, exitCode: number): string {
  const status = error.status === undefined ? '' : `, HTTP ${error.status}`;
  return `modelgate fetch: failed (exit ${exitCode}, ${error.code}${status}): ${error.message}\n`;
}
