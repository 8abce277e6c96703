/**
 * A minimal Azure Blob Storage origin over HTTPS on 127.0.0.1 for the Azure
 * credential test: it serves `HEAD`/`GET /{account}/{container}/{blob}`
 * (Get Blob Properties, Get Blob with `x-ms-range`/`Range`) and answers 401
 * with the Bearer challenge unless the request carries a bearer token that
 * `authorize` accepts. HTTPS because the Azure SDK refuses to send a bearer
 * token over plain HTTP.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

export interface BlobOrigin {
  /** `https://127.0.0.1:<port>`. */
  readonly url: string;
  putBlob(account: string, container: string, blob: string, data: Uint8Array): void;
  /** The Authorization header of every request so far (undefined when absent). */
  authorizations(): readonly (string | undefined)[];
  close(): Promise<void>;
}

export async function startBlobOrigin(options: {
  tls: { cert: Buffer; key: Buffer };
  tenantId: string;
  authorize: (authorization: string | undefined) => boolean;
}): Promise<BlobOrigin> {
  const blobs = new Map<string, { data: Buffer; etag: string; modified: string }>();
  const seen: (string | undefined)[] = [];
  const sockets = new Set<Socket>();

  const fail = (res: ServerResponse, status: number, code: string, extra: Record<string, string> = {}) => {
    const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`;
    res.writeHead(status, {
      'content-type': 'application/xml',
      'content-length': Buffer.byteLength(body),
      'x-ms-error-code': code,
      'x-ms-request-id': randomUUID(),
      'x-ms-version': '2025-11-05',
      ...extra,
    });
    res.end(body);
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    seen.push(req.headers.authorization);
    if (!options.authorize(req.headers.authorization)) {
      return fail(res, 401, 'InvalidAuthenticationInfo', {
        'www-authenticate': `Bearer authorization_uri=https://login.microsoftonline.com/${options.tenantId}/oauth2/authorize resource_id=https://storage.azure.com`,
      });
    }
    const path = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
    const blob = blobs.get(path);
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(res, 405, 'UnsupportedHttpVerb');
    if (blob === undefined) return fail(res, 404, 'BlobNotFound');
    const ifMatch = req.headers['if-match'];
    if (ifMatch !== undefined && ifMatch !== blob.etag) return fail(res, 412, 'ConditionNotMet');
    const headers: Record<string, string | number> = {
      etag: blob.etag,
      'last-modified': blob.modified,
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      'x-ms-blob-type': 'BlockBlob',
      'x-ms-request-id': randomUUID(),
      'x-ms-version': '2025-11-05',
    };
    const rangeHeader = String(req.headers['x-ms-range'] ?? req.headers.range ?? '');
    const range = /^bytes=(\d+)-(\d*)$/.exec(rangeHeader);
    let body = blob.data;
    let status = 200;
    if (range !== null && req.method === 'GET') {
      const start = Number(range[1]);
      if (start >= blob.data.length) return fail(res, 416, 'InvalidRange');
      const end = range[2] === '' ? blob.data.length - 1 : Math.min(Number(range[2]), blob.data.length - 1);
      body = blob.data.subarray(start, end + 1);
      headers['content-range'] = `bytes ${start}-${end}/${blob.data.length}`;
      status = 206;
    }
    headers['content-length'] = req.method === 'HEAD' ? blob.data.length : body.length;
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  const server = createServer({ cert: options.tls.cert, key: options.tls.key }, handle);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    putBlob(account, container, name, data) {
      const buffer = Buffer.from(data);
      blobs.set(`/${account}/${container}/${name}`, {
        data: buffer,
        etag: `"0x${createHash('sha256').update(buffer).digest('hex').slice(0, 15).toUpperCase()}"`,
        modified: new Date().toUTCString(),
      });
    },
    authorizations: () => seen,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
