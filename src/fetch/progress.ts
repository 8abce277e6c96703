import { join } from 'node:path';
import type { FileResult, RetryEvent } from './download-file.ts';
import type { FetchError } from './fetch-error.ts';
import { TEMP_DIR_NAME } from './manifest.ts';

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
  /** Bytes moved forward (or back, after a rollback to a verified checkpoint), resumed bytes included. */
  progress(delta: number): void;
  /** Bytes received from the proxy in this run (what the rate is computed from). */
  received(bytes: number): void;
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
  received() {},
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
    received() {},
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
/**
 * No rate (and so no ETA) before the first network byte is this old and
 * this many bytes arrived: the first instants of a transfer (connection set
 * up, the proxy verifying the first chunk before it sends it) say nothing
 * about its speed, and an ETA computed from them read "thousands of hours".
 */
const SETTLE_MS = 2000;
const SETTLE_BYTES = 256 * 1024;

/**
 * The receive rate of this run: only bytes that came over the network count.
 * Bytes of files already present, or of verified partial files resumed from
 * an earlier run, arrive in an instant and would inflate the rate.
 */
export class RateMeter {
  readonly #now: () => number;
  readonly #samples: Array<{ at: number; bytes: number }> = [];
  #received = 0;
  #firstByteAt: number | undefined;

  constructor(now: () => number) {
    this.#now = now;
  }

  /** Records bytes received from the proxy (negative or zero counts are ignored). */
  add(bytes: number): void {
    if (bytes <= 0) return;
    if (this.#firstByteAt === undefined) this.#firstByteAt = this.#now();
    this.#received += bytes;
  }

  /** Bytes per second over the last window, or undefined while the rate has not settled. */
  sample(): number | undefined {
    const at = this.#now();
    this.#samples.push({ at, bytes: this.#received });
    // Keep one sample at or before the window start, so the window stays full.
    while (this.#samples.length > 2 && at - (this.#samples[1]?.at ?? at) >= RATE_WINDOW_MS) {
      this.#samples.shift();
    }
    const first = this.#samples[0];
    if (first === undefined || this.#firstByteAt === undefined) return undefined;
    if (at - this.#firstByteAt < SETTLE_MS || this.#received < SETTLE_BYTES) return undefined;
    const span = at - first.at;
    return span > 0 ? ((this.#received - first.bytes) * 1000) / span : undefined;
  }
}

/** What one frame of the live line shows. */
export interface ProgressFrame {
  /** `model@version`. */
  name: string;
  /** Verified (or in-flight) bytes, resumed and present files included; never decreasing. */
  done: number;
  total: number;
  filesDone: number;
  files: number;
  /** Bytes per second received in this run; undefined until it settled. */
  rate: number | undefined;
}

/**
 * Renders the live line within `width` columns. Fields are dropped, least
 * important first (name, then rate, ETA, percent), until the line fits; the
 * byte count with its unit and the file count go last. A line wider than the
 * terminal would wrap, and `\r` would then redraw only its last row.
 */
export function renderProgressLine(frame: ProgressFrame, width: number | undefined): string {
  const percent = frame.total === 0 ? 100 : Math.floor((frame.done / frame.total) * 100);
  const left = Math.max(0, frame.total - frame.done);
  const rate = frame.rate !== undefined && frame.rate > 0 ? frame.rate : undefined;
  // [text, rank]: a higher rank is dropped first.
  const fields: Array<[string, number]> = [
    [frame.name, 5],
    [`${formatBytes(frame.done)} / ${formatBytes(frame.total)}`, 0],
    [`${percent}%`, 2],
    ...(rate === undefined ? [] : ([[`${formatBytes(Math.round(rate))}/s`, 4]] as Array<[string, number]>)),
    ...(rate === undefined || left === 0
      ? []
      : ([[`ETA ${formatDuration(left / rate)}`, 3]] as Array<[string, number]>)),
    [`[${frame.filesDone}/${frame.files} files]`, 1],
  ];
  const join = (list: Array<[string, number]>) => list.map(([text]) => text).join('  ');
  let kept = fields;
  while (width !== undefined && join(kept).length > width && kept.length > 2) {
    const worst = Math.max(...kept.map(([, rank]) => rank));
    kept = kept.filter(([, rank]) => rank !== worst);
  }
  const line = join(kept);
  return width === undefined ? line : line.slice(0, width);
}

/** The time source and redraw timer of the live line (tests drive both by hand). */
export interface RedrawClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void;
}

const systemRedrawClock: RedrawClock = {
  now: () => performance.now(),
  every(ms, tick) {
    const timer = setInterval(tick, ms);
    // The live line never keeps the process alive by itself.
    timer.unref();
    return () => clearInterval(timer);
  },
};

/**
 * A live status line (bytes, percent, ETA, rate, files) redrawn in place,
 * with one line per finished file above it. `out.columns` is read at every
 * redraw, so a resized terminal is followed.
 */
export function ttyReporter(
  out: ReporterOutput & { columns?: number },
  clock: RedrawClock = systemRedrawClock,
): FetchReporter {
  const { now } = clock;
  let info: ReleaseInfo | undefined;
  let lineOpen = false;
  let done = 0;
  /** The largest byte count drawn so far: a rollback to a verified checkpoint never moves the line back. */
  let shown = 0;
  let filesDone = 0;
  const meter = new RateMeter(now);
  let stopRedraws: (() => void) | undefined;

  function draw(): void {
    if (info === undefined) return;
    shown = Math.min(info.bytes, Math.max(shown, done));
    const frame: ProgressFrame = {
      name: `${info.model}@${info.version}`,
      done: shown,
      total: info.bytes,
      filesDone,
      files: info.files,
      rate: meter.sample(),
    };
    // The last column stays free: writing into it wraps on some terminals.
    const width = out.columns !== undefined && out.columns > 1 ? out.columns - 1 : undefined;
    out.write(`\r\x1b[K${renderProgressLine(frame, width)}`);
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
      stopRedraws = clock.every(REDRAW_MS, draw);
      draw();
    },
    progress(delta) {
      done += delta;
    },
    received(bytes) {
      meter.add(bytes);
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
      stopRedraws?.();
      stopRedraws = undefined;
      draw();
      lineOpen = false;
      out.write(
        `\n${summary.files} files, ${formatBytes(summary.bytes)} verified in ${formatDuration(summary.seconds)} ` +
          `(${summary.downloaded} downloaded, ${summary.present} already present)\n`,
      );
    },
    close() {
      stopRedraws?.();
      stopRedraws = undefined;
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

/**
 * The line printed after an interruption, or after a failure that left
 * verified partial files: a rerun of the same command resumes (files already
 * in DEST are re-hashed, not downloaded; partial files keep their verified
 * chunks). Undefined when a rerun would not help by itself.
 */
export function describeResume(error: FetchError, keptBytes: number, dest: string): string | undefined {
  const kept =
    keptBytes > 0
      ? `partial files (${formatBytes(keptBytes)}) are kept in ${join(dest, TEMP_DIR_NAME)}; `
      : '';
  if (error.kind === 'interrupted') {
    return `modelgate fetch: interrupted; ${kept}rerun the same command to resume.\n`;
  }
  // A usage error or a planted symlink must be fixed first; an integrity failure deletes its partial file.
  if (keptBytes === 0 || error.kind === 'usage' || error.kind === 'unsafe_destination') return undefined;
  return `modelgate fetch: ${kept}rerun the same command to resume from them.\n`;
}
