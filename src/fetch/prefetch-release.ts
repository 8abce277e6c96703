import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from './download-file.ts';
import { FetchError, isFetchError } from './fetch-error.ts';
import { createProxyClient, type PrefetchState, type ProxyClient } from './proxy-client.ts';
import type { TokenSource } from './token-source.ts';

export interface PrefetchOptions {
  proxy: URL;
  model: string;
  release: string;
  tokens: TokenSource;
  /** Failed requests in a row (network, 502–504) before giving up. */
  retries: number;
  signal: AbortSignal;
  /** One line of progress (a JSON object per poll where the bytes moved, and at the end). */
  report(state: PrefetchState): void;
  ca?: string;
  breakGlassToken?: string;
  /** Pause between two status polls (default 1000 ms). */
  pollMs?: number;
}

/** Retries one request on retryable failures with the fetch backoff; anything else is thrown. */
async function retrying<T>(
  what: () => Promise<T>,
  options: { retries: number; signal: AbortSignal },
): Promise<T> {
  for (let failures = 1; ; failures++) {
    try {
      return await what();
    } catch (error) {
      if (!isFetchError(error) || !error.retryable || failures > options.retries) throw error;
      await pause(Math.min(error.retryAfterMs ?? backoffDelay(500, failures), 30_000), options.signal);
    }
  }
}

async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch (abort) {
    throw new FetchError('interrupted', 'FETCH_INTERRUPTED', 'interrupted', { cause: abort });
  }
}

async function waitForDone(client: ProxyClient, options: PrefetchOptions, first: PrefetchState) {
  let state = first;
  let reported = -1;
  for (;;) {
    if (state.bytes !== reported || state.state !== 'running') {
      options.report(state);
      reported = state.bytes;
    }
    if (state.state === 'done') return state;
    if (state.state === 'failed') {
      throw new FetchError(
        'unavailable',
        'FETCH_PREFETCH_FAILED',
        `the proxy's prefetch failed after ${state.bytes} of ${state.totalBytes} bytes (its log says why: prefetch_failed)`,
      );
    }
    await pause(options.pollMs ?? 1000, options.signal);
    state = await retrying(
      () => client.prefetch(options.model, options.release, 'GET', options.signal),
      options,
    );
  }
}

/**
 * `modelgate fetch --prefetch-only`: asks the proxy to warm its disk cache for
 * the release (`POST …/prefetch`, idempotent) and waits until it is `done`,
 * so a rollout can fill a node's cache before the Pods that read it start.
 * Writes nothing locally.
 */
export async function prefetchRelease(options: PrefetchOptions): Promise<PrefetchState> {
  const client = createProxyClient({
    proxy: options.proxy,
    tokens: options.tokens,
    connections: 1,
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    ...(options.breakGlassToken === undefined ? {} : { breakGlassToken: options.breakGlassToken }),
  });
  try {
    const started = await retrying(
      () => client.prefetch(options.model, options.release, 'POST', options.signal),
      options,
    );
    return await waitForDone(client, options, started);
  } finally {
    await client.close();
  }
}
