/**
 * The measuring client: a minimal HTTP/1.1 client over one keep-alive TCP
 * connection. It reads the socket into one reusable 1 MiB buffer
 * (`net.Socket` `onread`) and counts body bytes without copying or keeping
 * them, so it costs the same for every path it measures. node:http's client
 * (64 KiB reads, a Buffer and an event per read) tops out near 500 MB/s on a
 * 2-vCPU machine where curl reads nginx's static file at about 2 GB/s; this
 * one reads it at 2–5 GB/s, so no row is capped by the client (bench/README.md,
 * "What it builds").
 *
 * It understands exactly what the bench needs: responses with
 * `Content-Length` (every server here sends it for these files).
 */
import { connect, type Socket } from 'node:net';

/** One read from the socket: large, so a loopback transfer costs few syscalls and callbacks. */
const READ_BUFFER_BYTES = 1024 * 1024;
const MAX_HEADER_BYTES = 64 * 1024;

export interface Response {
  status: number;
  headers: Record<string, string>;
  /** Body bytes received (counted, not kept). */
  bytes: number;
  /** The body of an error answer (status 300 and up), for the error message. */
  body?: string;
  seconds: number;
}

interface Pending {
  method: string;
  started: number;
  head: Buffer[];
  headBytes: number;
  status: number;
  headers: Record<string, string>;
  /** Body bytes still expected; -1 until the headers are parsed. */
  remaining: number;
  bytes: number;
  keep: Buffer[] | undefined;
  resolve(response: Response): void;
  reject(error: Error): void;
}

/** The server closed an idle keep-alive connection before answering: safe to send again (GET/HEAD). */
class ClosedBeforeAnswer extends Error {}

/**
 * One keep-alive connection to an origin. Servers close idle keep-alive
 * connections (Node's after 5 s), and a connection may sit idle while other
 * rows of an interleaved group download, so a connection found closed is
 * opened again, and a request the server closed before any answer byte is
 * sent once more on a new connection. The clock of a request starts once its
 * connection is open.
 */
export class Connection {
  private socket: Socket | undefined;
  private connected: Promise<void> = Promise.resolve();
  private pending: Pending | undefined;
  private closed: Error | undefined;
  private ended = false;
  private readonly url: URL;
  private readonly buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);

  constructor(origin: string) {
    this.url = new URL(origin);
    this.open();
  }

  private open(): void {
    this.closed = undefined;
    const socket = connect({
      host: this.url.hostname,
      port: Number(this.url.port),
      noDelay: true,
      onread: {
        buffer: this.buffer,
        callback: (n: number, buf: Uint8Array) => {
          if (socket === this.socket) this.onRead(buf as Buffer, n);
          return true;
        },
      },
    });
    this.socket = socket;
    this.connected = new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    this.connected.catch(() => {});
    socket.on('error', (error) => {
      if (socket === this.socket) this.fail(error);
    });
    socket.on('close', () => {
      if (socket === this.socket) this.fail(new Error('connection closed'));
    });
  }

  /** Sends one request and resolves when its whole body arrived. */
  async request(
    method: 'GET' | 'HEAD',
    path: string,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    if (this.ended) throw new Error('connection was closed by the client');
    if (this.pending) throw new Error('one request at a time per connection');
    for (let attempt = 0; ; attempt++) {
      if (this.closed) this.open();
      await this.connected;
      try {
        return await this.send(method, path, headers);
      } catch (error) {
        if (attempt === 0 && error instanceof ClosedBeforeAnswer) continue;
        throw error;
      }
    }
  }

  private send(method: string, path: string, headers: Record<string, string>): Promise<Response> {
    let text = `${method} ${path} HTTP/1.1\r\nHost: ${this.url.host}\r\nConnection: keep-alive\r\n`;
    for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
    return new Promise<Response>((resolve, reject) => {
      this.pending = {
        method,
        started: performance.now(),
        head: [],
        headBytes: 0,
        status: 0,
        headers: {},
        remaining: -1,
        bytes: 0,
        keep: undefined,
        resolve,
        reject,
      };
      this.socket!.write(`${text}\r\n`);
    });
  }

  close(): void {
    this.ended = true;
    this.socket?.destroy();
  }

  private fail(error: Error): void {
    this.closed ??= error;
    const pending = this.pending;
    this.pending = undefined;
    if (!pending) return;
    pending.reject(pending.headBytes === 0 ? new ClosedBeforeAnswer(error.message, { cause: error }) : error);
  }

  private onRead(buffer: Buffer, n: number): void {
    const p = this.pending;
    if (!p) {
      this.fail(new Error('bytes arrived with no request pending'));
      this.socket?.destroy();
      return;
    }
    let offset = 0;
    if (p.remaining < 0) {
      // Headers: copy only these few bytes, until the blank line.
      p.head.push(Buffer.from(buffer.subarray(0, n)));
      p.headBytes += n;
      const head = Buffer.concat(p.head);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (p.headBytes > MAX_HEADER_BYTES) {
          this.fail(new Error('response headers too large'));
          this.socket?.destroy();
        }
        return;
      }
      this.parseHead(p, head.subarray(0, end).toString('latin1'));
      const bodyStart = end + 4;
      const inHead = head.length - bodyStart;
      // The body bytes that came with the headers are at the end of this read.
      offset = n - inHead;
      if (p.remaining < 0) return;
    }
    const take = n - offset;
    if (take > p.remaining) {
      this.fail(new Error(`${take - p.remaining} bytes more than Content-Length`));
      this.socket?.destroy();
      return;
    }
    if (take > 0) {
      if (p.keep) p.keep.push(Buffer.from(buffer.subarray(offset, n)));
      p.bytes += take;
      p.remaining -= take;
    }
    if (p.remaining === 0) this.finish(p);
  }

  private parseHead(p: Pending, head: string): void {
    const lines = head.split('\r\n');
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!status) {
      this.fail(new Error(`not an HTTP response: ${lines[0]}`));
      return;
    }
    p.status = Number(status[1]);
    if (p.status >= 300) p.keep = [];
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) p.headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    if (p.method === 'HEAD' || p.status === 204 || p.status === 304) {
      p.remaining = 0;
      return;
    }
    const length = p.headers['content-length'];
    if (length === undefined) {
      this.fail(new Error(`status ${p.status} without Content-Length (transfer-encoding unsupported)`));
      this.socket?.destroy();
      return;
    }
    p.remaining = Number(length);
  }

  private finish(p: Pending): void {
    this.pending = undefined;
    const response: Response = {
      status: p.status,
      headers: p.headers,
      bytes: p.bytes,
      seconds: (performance.now() - p.started) / 1000,
    };
    if (p.keep) response.body = Buffer.concat(p.keep).toString('utf8');
    p.resolve(response);
  }
}

/** GET `url` on `connection`; rejects unless the status is 200 and exactly `expectedBytes` arrived. */
export async function download(
  connection: Connection,
  url: string,
  options: { headers?: Record<string, string>; expectedBytes: number },
): Promise<Response> {
  const { pathname, search } = new URL(url);
  const response = await connection.request('GET', pathname + search, options.headers ?? {});
  if (response.status !== 200 || response.bytes !== options.expectedBytes) {
    throw new Error(
      `GET ${url}: expected 200 with ${options.expectedBytes} bytes, got ${response.status} with ${response.bytes}` +
        (response.status !== 200 && response.body ? `: ${response.body.slice(0, 500)}` : ''),
    );
  }
  return response;
}

/** HEAD `url`; rejects unless 200. */
export async function head(connection: Connection, url: string, headers: Record<string, string> = {}) {
  const { pathname, search } = new URL(url);
  const response = await connection.request('HEAD', pathname + search, headers);
  if (response.status !== 200) throw new Error(`HEAD ${url}: status ${response.status}`);
}

export interface LatencyResult {
  requests: number;
  concurrency: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  requestsPerSecond: number;
}

/** Raw latencies (ms) of one batch and the wall time it took. */
export interface LatencyBatch {
  latenciesMs: number[];
  seconds: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

/** Percentiles over every latency of the batches; requests/s over their summed wall time. */
export function summarizeLatency(batches: LatencyBatch[], concurrency: number): LatencyResult {
  const sorted = batches.flatMap((b) => b.latenciesMs).toSorted((a, b) => a - b);
  const seconds = batches.reduce((total, b) => total + b.seconds, 0);
  return {
    requests: sorted.length,
    concurrency,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    meanMs: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    requestsPerSecond: sorted.length / seconds,
  };
}

/**
 * `requests` GETs of a small file over `concurrency` keep-alive connections
 * (each sends its next request when the previous answer ended).
 * `headersFor()` gives the headers of each request (a fresh token per request,
 * or the same one). Latency is from writing the request to the last body byte.
 */
export async function measureLatency(options: {
  url: string;
  requests: number;
  concurrency: number;
  expectedBytes: number;
  headersFor(): Record<string, string>;
}): Promise<LatencyBatch> {
  const origin = new URL(options.url).origin;
  const connections = Array.from({ length: options.concurrency }, () => new Connection(origin));
  const latenciesMs: number[] = [];
  let next = 0;
  const loop = async (connection: Connection) => {
    while (next < options.requests) {
      next++;
      const response = await download(connection, options.url, {
        headers: options.headersFor(),
        expectedBytes: options.expectedBytes,
      });
      latenciesMs.push(response.seconds * 1000);
    }
  };
  const began = performance.now();
  try {
    await Promise.all(connections.map(loop));
  } finally {
    for (const connection of connections) connection.close();
  }
  return { latenciesMs, seconds: (performance.now() - began) / 1000 };
}
