import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Release } from '../catalog/release.types.ts';
import { ModelgateError } from '../errors.ts';
import type { Prefetcher, PrefetchStatus } from './prefetch.ts';

function sendJson(res: ServerResponse, status: number, body: PrefetchStatus): number {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
  });
  res.end(text);
  return status;
}

/**
 * `POST …/releases/{ref}/prefetch` starts warming the disk cache (202, also
 * when a prefetch of the release already runs or is done: it is not started
 * twice); `GET` reports its state (docs/scaling.md). Authorized like the manifest.
 */
export async function respondPrefetch(
  req: IncomingMessage,
  res: ServerResponse,
  prefetcher: Prefetcher | undefined,
  release: Release,
): Promise<number> {
  if (!prefetcher) {
    throw new ModelgateError(
      'MG_CACHE_NOT_CONFIGURED',
      'this proxy has no cache: configured; prefetch needs one',
    );
  }
  if (req.method === 'POST') return sendJson(res, 202, await prefetcher.start(release));
  const status = await prefetcher.status(release);
  if (!status) throw new ModelgateError('MG_PREFETCH_NOT_STARTED', 'no prefetch of this release was started');
  return sendJson(res, 200, status);
}
