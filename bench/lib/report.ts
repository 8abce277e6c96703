/** Result rows, the printed tables, and the targets the README records. */

/** Resident memory of one modelgate process group during a scenario. */
export interface ProxyMemory {
  /** Processes in the group (the primary and its workers, or one). */
  processes: number;
  /** Sum of VmRSS after start-up and warm-up, before the timed work. */
  idleMiB: number;
  /** Sum of VmHWM at the end (an upper bound of the group's peak: the peaks need not coincide). */
  peakMiB: number;
  /** The largest single process's VmHWM. */
  peakLargestMiB: number;
}

/** `peak (idle I; N procs, largest L)`, or just `peak (idle I)` for one process. */
export function formatMemory(memory: ProxyMemory): string {
  const group = memory.processes > 1 ? `; ${memory.processes} procs, largest ${memory.peakLargestMiB}` : '';
  return `${memory.peakMiB.toFixed(0)} (idle ${memory.idleMiB.toFixed(0)}${group})`;
}

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
  memory?: ProxyMemory;
  /** Source requests per timed download (the chunk count in chunk mode; 1 in whole-file mode). */
  sourceReads?: number;
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
  /** modelgate processes serving (`--workers`). */
  processes?: number;
  /** Transfer settings that differ from the defaults, e.g. `chunkCacheBytes=0`. */
  settings?: string;
  memory?: ProxyMemory;
}

/** A row of the verified disk cache scenario (bench/lib/cache-scenario.ts). */
export interface CacheRow {
  /** cold, warm, warm after restart, 8 clients, fleet of 3, or the nginx reference. */
  row: string;
  /** modelgate processes serving data (workers, or proxies in the fleet). */
  processes: number;
  clients: number;
  sizeBytes: number;
  /** MB/s: per download (median) for one client, aggregate for many. */
  mbps: number;
  runsMBps?: number[];
  /** Bytes read from the source (modelgate_source_bytes_total summed over the proxies). */
  sourceBytes?: number;
  /** Source requests over the chunks of the file. */
  sourceReadsPerChunk?: number;
  vsNginx?: number;
  memory?: ProxyMemory;
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
  memory?: ProxyMemory;
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
  /** Commit measured, and files under src/ that differed from it. */
  revision: { commit: string; uncommitted: string[] };
  machine: Record<string, unknown>;
  sizes: { bigBytes: number; chunkBytes: number; smallBytes: number; limitRate: string };
  throughput: ThroughputRow[];
  fanout: FanoutRow[];
  latency: LatencyRow[];
  cache: CacheRow[];
  targets: Target[];
  /** One core's SHA-256 rate in this run (bench/lib/sha256-rate.ts), measured beside the single-stream rows. */
  sha256?: { mbps: number; runsMBps: number[] };
  skipped: string[];
  /** 1, 5 and 15 minute load averages when the run started and ended (other work on the machine skews figures). */
  load: { start: number[]; end: number[] };
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
    [
      'source',
      'path',
      'mode',
      'settings',
      'MB/s',
      'runs',
      'vs direct',
      'vs nginx',
      'reads/run',
      'RSS MiB peak (idle)',
    ],
    rows.map((r) => [
      r.source,
      r.path,
      r.mode ?? '',
      r.settings ?? '',
      fixed(r.mbps),
      r.runsMBps.map((v) => v.toFixed(0)).join(' '),
      ratio(r.vsDirect),
      ratio(r.vsNginx),
      fixed(r.sourceReads),
      r.memory ? formatMemory(r.memory) : '—',
    ]),
  );
}

export function fanoutTable(rows: FanoutRow[]): string {
  return table(
    [
      'path',
      'processes',
      'source',
      'clients',
      'aggregate MB/s',
      'seconds',
      'source reads',
      'chunks',
      'RSS MiB peak (idle)',
    ],
    rows.map((r) => [
      r.settings ? `${r.path} ${r.settings}` : r.path,
      r.processes === undefined ? '' : String(r.processes),
      r.source,
      String(r.clients),
      fixed(r.aggregateMBps),
      fixed(r.seconds, 1),
      fixed(r.sourceReads),
      fixed(r.chunks),
      r.memory ? formatMemory(r.memory) : '—',
    ]),
  );
}

export function cacheTable(rows: CacheRow[]): string {
  return table(
    [
      'row',
      'processes',
      'clients',
      'MB/s',
      'runs',
      'vs nginx',
      'source bytes',
      'source reads / chunk',
      'proxy RSS MiB peak (idle)',
    ],
    rows.map((r) => [
      r.row,
      String(r.processes),
      String(r.clients),
      r.mbps.toFixed(0),
      r.runsMBps?.map((v) => v.toFixed(0)).join(' ') ?? '',
      r.vsNginx === undefined ? '' : `${r.vsNginx.toFixed(2)}×`,
      r.sourceBytes === undefined
        ? ''
        : `${mib(r.sourceBytes)} MiB (${(r.sourceBytes / r.sizeBytes).toFixed(2)}× file)`,
      r.sourceReadsPerChunk === undefined ? '' : r.sourceReadsPerChunk.toFixed(2),
      r.memory ? formatMemory(r.memory) : '',
    ]),
  );
}

export function latencyTable(rows: LatencyRow[]): string {
  return table(
    ['path', 'token', 'concurrency', 'requests', 'p50 ms', 'p99 ms', 'req/s', 'RSS MiB peak (idle)'],
    rows.map((r) => [
      r.path,
      r.token ?? '',
      String(r.concurrency),
      String(r.requests),
      fixed(r.p50Ms, 3),
      fixed(r.p99Ms, 3),
      fixed(r.requestsPerSecond),
      r.memory ? formatMemory(r.memory) : '—',
    ]),
  );
}

export function targetsTable(targets: Target[]): string {
  return table(
    ['target', 'goal', 'measured', 'met'],
    targets.map((t) => [t.name, t.goal, t.measured, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
  );
}
