import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Release } from '../catalog/release.types.ts';
import { etagOf, matchesIfNoneMatch } from './conditional.ts';

/** Answers the manifest route with the payload bytes exactly as signed; returns the status sent. */
export function respondManifest(req: IncomingMessage, res: ServerResponse, release: Release): number {
  const etag = etagOf(release.digest);
  if (matchesIfNoneMatch(req.headers['if-none-match'], etag)) {
    res.writeHead(304, { ETag: etag, 'Modelgate-Release-Digest': release.digest });
    res.end();
    return 304;
  }
  res.writeHead(200, {
    'Content-Type': 'application/json',
    'Content-Length': String(release.payload.length),
    ETag: etag,
    'Modelgate-Release-Digest': release.digest,
    // Which signer the proxy verified (a name from its configuration), so clients can record it.
    'Modelgate-Release-Signer': release.signer ?? 'unsigned',
    'Cache-Control': 'private, no-transform',
  });
  // The payload bytes exactly as signed: a client can hash them to check the release digest itself.
  res.end(req.method === 'HEAD' ? undefined : release.payload);
  return 200;
}
