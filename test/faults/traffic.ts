import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

/** One request on its own new connection, as the client saw it. */
export interface Exchange {
  kind: 'probe' | 'download';
  /** performance.now() when the connection was opened, and when the exchange ended. */
  start: number;
  end: number;
  /** Response status, or undefined when no response head arrived. */
  status?: number;
  /** The client error (ECONNRESET, "socket hang up", "timeout"), if any. */
  error?: string;
  /** Downloads: whether the body arrived whole and hashed to the expected digest. */
  verified?: boolean;
}

interface ExchangeOptions {
  kind: Exchange['kind'];
  url: string;
  token: string;
  timeoutMs: number;
  /** Downloads: the expected SHA-256 (hex) of the body; the reader pauses `readDelayMs` per piece. */
  sha256?: string;
  readDelayMs?: number;
}

/** A GET on a fresh connection (agent: false): a pooled keep-alive socket would hide new-connection losses. */
function exchange(options: ExchangeOptions): Promise<Exchange> {
  const start = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    let status: number | undefined;
    const finish = (fields: Partial<Exchange>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        kind: options.kind,
        start,
        end: performance.now(),
        ...(status ? { status } : {}),
        ...fields,
      });
    };
    const req = request(
      options.url,
      { headers: { authorization: `Bearer ${options.token}` }, agent: false },
      (res) => {
        status = res.statusCode;
        const hash = createHash('sha256');
        res.on('data', (piece: Buffer) => {
          hash.update(piece);
          if (options.readDelayMs) {
            res.pause();
            setTimeout(() => res.resume(), options.readDelayMs);
          }
        });
        res.on('end', () => {
          if (!res.complete) finish({ error: 'body cut' });
          else if (options.sha256 && status === 200)
            finish({ verified: hash.digest('hex') === options.sha256 });
          else finish({});
        });
        res.on('error', (error: Error) =>
          finish({ error: (error as NodeJS.ErrnoException).code ?? error.message }),
        );
        res.on('close', () => {
          if (!res.complete) finish({ error: 'body cut' });
        });
      },
    );
    // A connection that is never answered would otherwise wait forever: that is the loss we look for.
    const timer = setTimeout(() => {
      finish({ error: 'timeout' });
      req.destroy();
    }, options.timeoutMs);
    req.on('error', (error: Error) =>
      finish({ error: (error as NodeJS.ErrnoException).code ?? error.message }),
    );
    req.end();
  });
}

export interface TrafficOptions {
  dataUrl: string;
  token: string;
  /** Path answered quickly (a manifest), requested in a loop by each probe. */
  probePath: string;
  probes: number;
  /** Pause between two probes of one loop (and after any failed exchange). */
  probeIntervalMs: number;
  /** Path of a file downloaded in a loop by each downloader, with its SHA-256 (hex). */
  downloadPath: string;
  downloadSha256: string;
  downloads: number;
  /** Pause per received piece in downloads, so they stay in flight across kills. */
  readDelayMs: number;
  timeoutMs: number;
}

export interface Traffic {
  /** Stops starting new exchanges and resolves with every exchange once all ended. */
  stop(): Promise<Exchange[]>;
}

/** Probes and downloads in loops, each request on a new connection, until stop(). */
export function startTraffic(options: TrafficOptions): Traffic {
  const exchanges: Exchange[] = [];
  let running = true;
  const loop = async (kind: Exchange['kind']) => {
    while (running) {
      const result = await exchange({
        kind,
        url: `${options.dataUrl}${kind === 'probe' ? options.probePath : options.downloadPath}`,
        token: options.token,
        timeoutMs: options.timeoutMs,
        ...(kind === 'download' ? { sha256: options.downloadSha256, readDelayMs: options.readDelayMs } : {}),
      });
      exchanges.push(result);
      // Probes are a steady stream, not a flood that would starve the workers' start-up of CPU.
      if (kind === 'probe' || result.error) await sleep(options.probeIntervalMs);
    }
  };
  const loops = [
    ...Array.from({ length: options.probes }, () => loop('probe')),
    ...Array.from({ length: options.downloads }, () => loop('download')),
  ];
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return exchanges;
    },
  };
}

/**
 * Exchanges that broke without a kill to explain them. A connection that a
 * killed worker had already accepted is necessarily cut, so an exchange that
 * failed is excused only when a kill happened between its start and its end;
 * one that timed out is never excused (nobody answered it).
 */
export function unexplainedFailures(exchanges: Exchange[], kills: number[]): Exchange[] {
  return exchanges.filter((e) => {
    // A whole body with the wrong bytes is never excused: no kill can make a verified proxy send that.
    if (e.verified === false) return true;
    if (e.error === undefined) return false;
    if (e.error === 'timeout') return true;
    return !kills.some((k) => k >= e.start && k <= e.end);
  });
}
