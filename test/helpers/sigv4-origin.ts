/**
 * An S3-shaped origin on 127.0.0.1 that checks AWS Signature Version 4 the
 * way S3 does, for the credential-path tests: every request must carry an
 * `Authorization: AWS4-HMAC-SHA256 …` header whose signature it recomputes
 * (node:crypto HMAC steps, no SDK code) with the secret of the access key
 * named, and, for temporary credentials, the matching
 * `X-Amz-Security-Token`. Anything else is answered 403 like S3
 * (`AccessDenied`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`). It serves
 * the subset the S3 store uses: path-style `HEAD`/`GET /bucket/key` with a
 * single `Range`.
 *
 * ```ts
 * const origin = await startSigV4Origin();
 * origin.addCredentials({ accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' });
 * origin.putObject('models', 'a.bin', bytes);
 * // S3 store: { endpoint: origin.url, forcePathStyle: true, region: 'us-east-1' }
 * ```
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OriginCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** Temporary credentials: requests must carry exactly this X-Amz-Security-Token. */
  sessionToken?: string;
}

export interface SigV4LogEntry {
  method: string;
  url: string;
  /** The access key named in the Authorization header, if any. */
  accessKeyId: string | undefined;
  /** 'ok' or the S3 error code answered. */
  verdict: string;
}

export interface SigV4Origin {
  readonly url: string;
  addCredentials(credentials: OriginCredentials): void;
  putObject(bucket: string, key: string, data: Uint8Array): void;
  requests(): readonly SigV4LogEntry[];
  close(): Promise<void>;
}

const sha256Hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();

/** RFC 3986 encoding as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function canonicalQuery(rawQuery: string): string {
  if (rawQuery === '') return '';
  return rawQuery
    .split('&')
    .map((pair) => {
      const [key = '', value = ''] = pair.split('=');
      return [uriEncode(decodeURIComponent(key)), uriEncode(decodeURIComponent(value.replace(/\+/g, ' ')))];
    })
    .sort(([a = '', av = ''], [b = '', bv = '']) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`)
    .join('&');
}

interface ParsedAuthorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

function parseAuthorization(header: string | undefined): ParsedAuthorization | undefined {
  const match =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
      header ?? '',
    );
  if (match === null) return undefined;
  const [, accessKeyId = '', date = '', region = '', service = '', signed = '', signature = ''] = match;
  return { accessKeyId, date, region, service, signedHeaders: signed.split(';'), signature };
}

/** The SigV4 signature of a request as received, with the given secret. */
export function computeSignature(req: IncomingMessage, auth: ParsedAuthorization, secret: string): string {
  const [rawPath = '/', rawQuery = ''] = (req.url ?? '/').split('?', 2);
  const headerValue = (name: string) => {
    const value = req.headers[name];
    return (Array.isArray(value) ? value.join(',') : (value ?? '')).trim().replace(/\s+/g, ' ');
  };
  const canonicalRequest = [
    req.method ?? 'GET',
    rawPath,
    canonicalQuery(rawQuery),
    ...auth.signedHeaders.map((name) => `${name}:${headerValue(name)}`),
    '',
    auth.signedHeaders.join(';'),
    headerValue('x-amz-content-sha256') || sha256Hex(''),
  ].join('\n');
  const scope = `${auth.date}/${auth.region}/${auth.service}/aws4_request`;
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    headerValue('x-amz-date'),
    scope,
    sha256Hex(canonicalRequest),
  ].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, auth.date), auth.region), auth.service), 'aws4_request');
  return hmac(key, stringToSign).toString('hex');
}

export async function startSigV4Origin(): Promise<SigV4Origin> {
  const credentials = new Map<string, OriginCredentials>();
  const objects = new Map<string, { data: Buffer; etag: string; modified: string }>();
  const log: SigV4LogEntry[] = [];

  /** 'ok', or the S3 error code this request earns. */
  function verify(req: IncomingMessage): string {
    const auth = parseAuthorization(req.headers.authorization);
    if (auth === undefined) return 'AccessDenied';
    const known = credentials.get(auth.accessKeyId);
    if (known === undefined) return 'InvalidAccessKeyId';
    if (!auth.signedHeaders.includes('host') || !auth.signedHeaders.includes('x-amz-date')) {
      return 'SignatureDoesNotMatch';
    }
    const expected = Buffer.from(computeSignature(req, auth, known.secretAccessKey));
    const got = Buffer.from(auth.signature);
    if (expected.length !== got.length || !timingSafeEqual(expected, got)) return 'SignatureDoesNotMatch';
    const token = req.headers['x-amz-security-token'];
    if (known.sessionToken !== undefined) {
      if (token !== known.sessionToken || !auth.signedHeaders.includes('x-amz-security-token')) {
        return 'InvalidToken';
      }
    } else if (token !== undefined) {
      return 'InvalidToken';
    }
    return 'ok';
  }

  function sendError(res: ServerResponse, status: number, code: string): void {
    const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`;
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  const server = createServer((req, res) => {
    req.resume();
    const verdict = verify(req);
    const auth = parseAuthorization(req.headers.authorization);
    log.push({ method: req.method ?? '', url: req.url ?? '', accessKeyId: auth?.accessKeyId, verdict });
    if (verdict !== 'ok') return sendError(res, 403, verdict);
    const path = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
    const object = objects.get(path);
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405, 'MethodNotAllowed');
    if (object === undefined) return sendError(res, 404, 'NoSuchKey');
    const headers: Record<string, string | number> = {
      etag: object.etag,
      'last-modified': object.modified,
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
    let body = object.data;
    let status = 200;
    if (range !== null) {
      const start = Number(range[1]);
      const end =
        range[2] === '' ? object.data.length - 1 : Math.min(Number(range[2]), object.data.length - 1);
      if (start >= object.data.length) {
        headers['content-range'] = `bytes */${object.data.length}`;
        return sendError(res, 416, 'InvalidRange');
      }
      body = object.data.subarray(start, end + 1);
      headers['content-range'] = `bytes ${start}-${end}/${object.data.length}`;
      status = 206;
    }
    headers['content-length'] = body.length;
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    addCredentials: (c) => credentials.set(c.accessKeyId, c),
    putObject(bucket, key, data) {
      const buffer = Buffer.from(data);
      objects.set(`/${bucket}/${key}`, {
        data: buffer,
        etag: `"${createHash('md5').update(buffer).digest('hex')}"`,
        modified: new Date().toUTCString(),
      });
    },
    requests: () => log,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
