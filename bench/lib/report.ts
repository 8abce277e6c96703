/** Result rows, the printed tables, and the targets the README records. */

export interface ThroughputRow {
  section: 'single' | 'optimizations' | 'rate-limited';
  /** Where the bytes come from: `file`, `s3`, or `rate-limited`. */
  source: string;
  /** Who serves the client: `direct …`, `nginx proxy_pass`, `modelgate`. */
  path: string;
  /** modelgate: `chunk` or `whole`. */
  mode?: string;
  /** modelgate transfer settings of this row, e.g. `readAhead=4 hashWorkers=true`. */
  settings?: string;
  sizeBytes: number;
  /** MB/s (10^6 bytes per second) of each timed download. */
  runsMBps: number[];
  /** Median of `runsMBps`. */
  mbps: number;
  peakRssMiB?: number;
  /** This row's MB/s over the direct / nginx row of the same source. */
  vsDirect?: number;
  vsNginx?: number;
}

export interface FanoutRow {
  path: string;
  source: string;
  clients: number;
  sizeBytes: number;
  seconds: number;
  aggregateMBps: number;
  /** modelgate_source_requests_total after the run (all outcomes). */
  sourceReads?: number;
  /** Chunks in the file: the fewest source reads a fan-out can cost. */
  chunks?: number;
  peakRssMiB?: number;
  note?: string;
}

export interface LatencyRow {
  path: string;
  token?: 'cached' | 'fresh';
  concurrency: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  requestsPerSecond: number;
  peakRssMiB?: number;
}

export interface Target {
  name: string;
  goal: string;
  measured: string;
  met: boolean | null;
}

export interface BenchReport {
  date: string;
  command: string;
  quick: boolean;
  machine: Record<string, unknown>;
  sizes: { bigBytes: number; chunkBytes: number; smallBytes: number; limitRate: string };
  throughput: ThroughputRow[];
  fanout: FanoutRow[];
  latency: LatencyRow[];
  targets: Target[];
  skipped: string[];
}

export const mbps = (bytes: number, seconds: number) => bytes / seconds / 1e6;
export const mib = (bytes: number) => Math.round((bytes / (1024 * 1024)) * 10) / 10;

export function median(values: number[]): number {
  const sorted = values.toSorted((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const fixed = (value: number | undefined, digits = 0) =>
  value === undefined || !Number.isFinite(value) ? '—' : value.toFixed(digits);
const ratio = (value: number | undefined) => (value === undefined ? '—' : `${value.toFixed(2)}×`);

/** A plain text table (also valid Markdown, so README figures can be pasted from the output). */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function throughputTable(rows: ThroughputRow[]): string {
  return table(
    ['source', 'path', 'mode', 'settings', 'MB/s', 'runs', 'vs direct', 'vs nginx', 'peak RSS MiB'],
    rows.map((r) => [
      r.source,
      r.path,
      r.mode ?? '',
      r.settings ?? '',
      fixed(r.mbps),
      r.runsMBps.map((v) => v.toFixed(0)).join(' '),
      ratio(r.vsDirect),
      ratio(r.vsNginx),
      fixed(r.peakRssMiB),
    ]),
  );
}

export function fanoutTable(rows: FanoutRow[]): string {
  return table(
    ['path', 'source', 'clients', 'aggregate MB/s', 'seconds', 'source reads', 'chunks', 'peak RSS MiB'],
    rows.map((r) => [
      r.note ? `${r.path} (${r.note})` : r.path,
      r.source,
      String(r.clients),
      fixed(r.aggregateMBps),
      fixed(r.seconds, 1),
      fixed(r.sourceReads),
      fixed(r.chunks),
      fixed(r.peakRssMiB),
    ]),
  );
}

export function latencyTable(rows: LatencyRow[]): string {
  return table(
    ['path', 'token', 'concurrency', 'requests', 'p50 ms', 'p99 ms', 'req/s', 'peak RSS MiB'],
    rows.map((r) => [
      r.path,
      r.token ?? '',
      String(r.concurrency),
      String(r.requests),
      fixed(r.p50Ms, 3),
      fixed(r.p99Ms, 3),
      fixed(r.requestsPerSecond),
      fixed(r.peakRssMiB),
    ]),
  );
}

export function targetsTable(targets: Target[]): string {
  return table(
    ['target', 'goal', 'measured', 'met'],
    targets.map((t) => [t.name, t.goal, t.measured, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
  );
}
