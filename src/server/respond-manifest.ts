import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Release } from '../catalog/release.types.ts';
import { formatIdentityHeader, SIGNER_IDENTITY_HEADER, UPSTREAM_HEADER } from '../release-headers.ts';
import { etagOf, matchesIfNoneMatch } from './conditional.ts';

/**
 * Who signed (method, identity, issuer), the upstream OMS signature the
 * catalog re-verified, and the parent chain: README "HTTP API".
 */
function identityHeaders(release: Release, lineage: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  if (release.signature !== undefined)
    headers[SIGNER_IDENTITY_HEADER] = formatIdentityHeader({ ...release.signature });
  if (release.upstream !== undefined) {
    const { signer, ...rest } = release.upstream;
    headers[UPSTREAM_HEADER] = formatIdentityHeader({
      format: 'oms/v1.0',
      ...rest,
      signer: signer ?? undefined,
    });
  }
  if (lineage.length > 1) headers['Modelgate-Release-Lineage'] = lineage.join(', ');
  return headers;
}

/** Answers the manifest route with the payload bytes exactly as signed; returns the status sent. */
export function respondManifest(
  req: IncomingMessage,
  res: ServerResponse,
  release: Release,
  lineage: readonly string[],
): number {
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
    ...identityHeaders(release, lineage),
    'Cache-Control': 'private, no-transform',
  });
  // The payload bytes exactly as signed: a client can hash them to check the release digest itself.
  res.end(req.method === 'HEAD' ? undefined : release.payload);
  return 200;
}
