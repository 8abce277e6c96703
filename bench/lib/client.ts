/**
 * The measuring client: node:http with keep-alive agents. Large bodies are
 * counted, never copied or kept (a `data` listener that adds up lengths), so
 * the client costs the same for every path it measures and stays well above
 * the rates it reports (see the "client ceiling" note in bench/README.md).
 */
import { Agent, request } from 'node:http';

export interface Download {
  bytes: number;
  seconds: number;
}

export function createAgent(maxSockets: number): Agent {
  return new Agent({ keepAlive: true, maxSockets, keepAliveMsecs: 1000 });
}

/** One GET; rejects unless the status is 200 and exactly `expectedBytes` arrived. */
export function download(
  url: string,
  options: { agent: Agent; headers?: Record<string, string>; expectedBytes: number },
): Promise<Download> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: options.agent, headers: options.headers ?? {} }, (res) => {
      let bytes = 0;
      if (res.statusCode !== 200) {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (body.length < 2000) body += d;
        });
        res.on('end', () => reject(new Error(`GET ${url}: status ${res.statusCode}: ${body}`)));
        return;
      }
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      res.on('error', reject);
      res.on('end', () => {
        const seconds = (performance.now() - started) / 1000;
        if (!res.complete || bytes !== options.expectedBytes) {
          reject(new Error(`GET ${url}: expected ${options.expectedBytes} bytes, got ${bytes}`));
        } else resolve({ bytes, seconds });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

export interface LatencyResult {
  requests: number;
  concurrency: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  requestsPerSecond: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

/**
 * `requests` GETs of a small file over `concurrency` keep-alive connections
 * (each connection sends its next request when the previous answer ended).
 * `headersFor(i)` gives the headers of request i (a fresh token per request,
 * or the same one). Latency is from `request()` to the last body byte.
 */
export async function measureLatency(options: {
  url: string;
  requests: number;
  concurrency: number;
  expectedBytes: number;
  headersFor(index: number): Record<string, string>;
}): Promise<LatencyResult> {
  const agent = createAgent(options.concurrency);
  const latencies: number[] = [];
  let next = 0;
  const one = (index: number) =>
    new Promise<void>((resolve, reject) => {
      const started = performance.now();
      const req = request(options.url, { agent, headers: options.headersFor(index) }, (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
        });
        res.on('error', reject);
        res.on('end', () => {
          latencies.push(performance.now() - started);
          if (res.statusCode !== 200 || bytes !== options.expectedBytes) {
            reject(new Error(`GET ${options.url}: status ${res.statusCode}, ${bytes} bytes`));
          } else resolve();
        });
      });
      req.on('error', reject);
      req.end();
    });
  const loop = async () => {
    while (next < options.requests) await one(next++);
  };
  const began = performance.now();
  try {
    await Promise.all(Array.from({ length: options.concurrency }, loop));
  } finally {
    agent.destroy();
  }
  const wall = (performance.now() - began) / 1000;
  const sorted = latencies.toSorted((a, b) => a - b);
  return {
    requests: options.requests,
    concurrency: options.concurrency,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    meanMs: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    requestsPerSecond: options.requests / wall,
  };
}
