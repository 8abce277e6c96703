/**
 * A Google Cloud Storage JSON API server on 127.0.0.1 for tests (no GCS
 * emulator runs here). It implements what the GCS store and the SDK's
 * uploads use, with the real API's status codes and headers:
 *
 * - `GET /storage/v1/b/{bucket}/o/{object}`: object metadata (JSON: name,
 *   bucket, size and generation as strings, metageneration, md5Hash, crc32c,
 *   etag, contentType).
 * - the same with `?alt=media`, or `GET /download/storage/v1/b/…?alt=media`:
 *   the bytes, with `Range` (206 + `Content-Range`, 416 when the start lies
 *   at or past the end), `generation` (404 when that generation is no longer
 *   live), `ifGenerationMatch` / `ifGenerationNotMatch` (412), and
 *   `x-goog-generation`, `x-goog-metageneration`, `x-goog-hash`,
 *   `x-goog-stored-content-length` headers.
 * - `DELETE /storage/v1/b/{bucket}/o/{object}`.
 * - `POST /upload/storage/v1/b/{bucket}/o?uploadType=media|multipart|resumable`
 *   and the resumable session's `PUT` (what `file.save()` sends: resumable by
 *   default, multipart with `resumable: false`).
 *
 * Buckets spring into existence on first use. Object names arrive
 * percent-encoded (`/` as `%2F`). Tests seed objects in process, read the
 * request log, and inject faults (the next N requests fail, every answer is
 * delayed, bodies are sent slowly).
 *
 * ```ts
 * const gcs = await startGcsServer();
 * gcs.putObject('models', 'a/b.bin', bytes);
 * // store config: { apiEndpoint: gcs.url }
 * after(() => gcs.close());
 * ```
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GcsObject {
  readonly bucket: string;
  readonly name: string;
  readonly data: Buffer;
  readonly generation: string;
  readonly metageneration: string;
  readonly contentType: string;
  readonly updated: string;
}

export interface GcsRequestLogEntry {
  readonly method: string;
  /** Path and query as received (object names still percent-encoded). */
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  /** The status answered (0 when the connection was cut before answering). */
  status: number;
}

export interface GcsServer {
  /** `http://127.0.0.1:<port>`: the store's `apiEndpoint`. */
  readonly url: string;
  readonly port: number;
  /** Stores an object in process (a new generation each time); returns it. */
  putObject(bucket: string, name: string, data: Uint8Array, contentType?: string): GcsObject;
  /** Removes an object; true when it existed. */
  deleteObject(bucket: string, name: string): boolean;
  getObject(bucket: string, name: string): GcsObject | undefined;
  /** Every request so far, oldest first. */
  requests(): readonly GcsRequestLogEntry[];
  clearRequests(): void;
  /** The next `count` requests answer `status` (default 503) with a JSON error. */
  failNext(count: number, status?: number): void;
  /** Delay every answer's headers by this many milliseconds (0 for none). */
  setDelay(ms: number): void;
  /** Send media bodies at most this many bytes per 10 ms tick (0 for full speed). */
  setBodyRate(bytesPerTick: number): void;
  /** Connections currently open to this server. */
  openConnections(): number;
  /** Stops for good, closing every connection; safe to call twice. */
  close(): Promise<void>;
}

interface ResumableSession {
  bucket: string;
  name: string;
  contentType: string;
  chunks: Buffer[];
  received: number;
  ifGenerationMatch: string | undefined;
}

/** Largest request body accepted: uploads in tests are small (8 MiB objects at most). */
const MAX_UPLOAD_BYTES = 64 * 1024 * 1024;

/** Starts a GCS JSON API server on 127.0.0.1, port 0. */
export interface GcsServerOptions {
  /**
   * When given, every request must pass it (it sees the `Authorization`
   * header) or is answered 401 like GCS: for the credential-path test.
   */
  authorize?: (authorization: string | undefined) => boolean;
}

export async function startGcsServer(options: GcsServerOptions = {}): Promise<GcsServer> {
  const buckets = new Map<string, Map<string, GcsObject>>();
  const sessions = new Map<string, ResumableSession>();
  const log: GcsRequestLogEntry[] = [];
  let nextGeneration = BigInt(Date.now()) * 1000n;
  let failures: { count: number; status: number } = { count: 0, status: 503 };
  let delayMs = 0;
  let bodyRate = 0;
  let closed = false;

  function bucketOf(name: string): Map<string, GcsObject> {
    let bucket = buckets.get(name);
    if (bucket === undefined) {
      bucket = new Map();
      buckets.set(name, bucket);
    }
    return bucket;
  }

  function putObject(
    bucket: string,
    name: string,
    data: Uint8Array,
    contentType = 'application/octet-stream',
  ) {
    nextGeneration += 1n;
    const object: GcsObject = {
      bucket,
      name,
      data: Buffer.from(data),
      generation: nextGeneration.toString(),
      metageneration: '1',
      contentType,
      updated: new Date().toISOString(),
    };
    bucketOf(bucket).set(name, object);
    return object;
  }

  const server: Server = createServer((req, res) => {
    const entry: GcsRequestLogEntry = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      status: 0,
    };
    log.push(entry);
    if (options.authorize !== undefined && !options.authorize(req.headers.authorization)) {
      drain(req);
      sendError(res, 401, 'Anonymous caller does not have storage.objects.get access');
      return;
    }
    res.on('finish', () => {
      entry.status = res.statusCode;
    });
    const answer = () => {
      if (failures.count > 0) {
        failures = { count: failures.count - 1, status: failures.status };
        drain(req);
        sendError(res, failures.status, 'injected failure');
        return;
      }
      handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) sendError(res, 500, String(error));
        else res.destroy();
      });
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const query = url.searchParams;
    const path = url.pathname;
    const objectMatch = /^\/(?:download\/)?storage\/v1\/b\/([^/]+)\/o\/([^/]+)$/.exec(path);
    const uploadMatch = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(path);

    if (objectMatch !== null) {
      const bucket = decodeURIComponent(objectMatch[1]!);
      const name = decodeURIComponent(objectMatch[2]!);
      const object = bucketOf(bucket).get(name);
      if (req.method === 'DELETE') {
        if (object === undefined) return sendError(res, 404, `No such object: ${bucket}/${name}`);
        if (!preconditionsHold(object, query)) return sendError(res, 412, 'Precondition Failed');
        bucketOf(bucket).delete(name);
        res.writeHead(204).end();
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405, 'method not allowed');
      const generation = query.get('generation');
      if (object === undefined || (generation !== null && generation !== object.generation)) {
        return sendError(res, 404, `No such object: ${bucket}/${name}`);
      }
      if (!preconditionsHold(object, query)) return sendError(res, 412, 'Precondition Failed');
      if (query.get('alt') === 'media' || path.startsWith('/download/')) return sendMedia(req, res, object);
      sendJson(res, 200, metadataOf(object));
      return;
    }

    const listMatch = /^\/storage\/v1\/b\/([^/]+)\/o$/.exec(path);
    if (listMatch !== null && req.method === 'GET') {
      // Object listing, as much as a readiness probe needs: 404 for a bucket never written to.
      const bucket = buckets.get(decodeURIComponent(listMatch[1] ?? ''));
      if (bucket === undefined) return sendError(res, 404, 'The specified bucket does not exist.');
      const first = [...bucket.values()].slice(0, Number(query.get('maxResults') ?? '1000'));
      sendJson(res, 200, { kind: 'storage#objects', items: first.map(metadataOf) });
      return;
    }

    if (uploadMatch !== null && (req.method === 'POST' || req.method === 'PUT')) {
      const bucket = decodeURIComponent(uploadMatch[1]!);
      const uploadId = query.get('upload_id');
      if (uploadId !== null) return continueResumable(req, res, uploadId);
      const body = await readBody(req);
      const uploadType = query.get('uploadType');
      let name = query.get('name');
      let contentType = req.headers['content-type'] ?? 'application/octet-stream';
      let data = body;
      if (uploadType === 'multipart') {
        const parts = parseMultipart(body, req.headers['content-type'] ?? '');
        if (parts.length !== 2) return sendError(res, 400, 'multipart upload needs metadata and media parts');
        const metadata = JSON.parse(parts[0]!.body.toString('utf8')) as {
          name?: string;
          contentType?: string;
        };
        name = metadata.name ?? name;
        contentType = metadata.contentType ?? parts[1]!.contentType ?? 'application/octet-stream';
        data = parts[1]!.body;
      } else if (uploadType === 'resumable') {
        const metadata =
          body.length > 0
            ? (JSON.parse(body.toString('utf8')) as { name?: string; contentType?: string })
            : {};
        name = metadata.name ?? name;
        if (name === null) return sendError(res, 400, 'missing object name');
        const id = randomUUID();
        sessions.set(id, {
          bucket,
          name,
          contentType:
            metadata.contentType ??
            headerString(req.headers['x-upload-content-type']) ??
            'application/octet-stream',
          chunks: [],
          received: 0,
          ifGenerationMatch: query.get('ifGenerationMatch') ?? undefined,
        });
        const location = `${baseUrl}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&upload_id=${id}`;
        res.writeHead(200, { Location: location, 'Content-Length': '0' }).end();
        return;
      } else if (uploadType !== 'media') {
        return sendError(res, 400, `unsupported uploadType ${String(uploadType)}`);
      }
      if (name === null) return sendError(res, 400, 'missing object name');
      const existing = bucketOf(bucket).get(name);
      const ifGenerationMatch = query.get('ifGenerationMatch');
      if (ifGenerationMatch !== null && ifGenerationMatch !== (existing?.generation ?? '0')) {
        return sendError(res, 412, 'Precondition Failed');
      }
      sendJson(res, 200, metadataOf(putObject(bucket, name, data, contentType)));
      return;
    }

    drain(req);
    sendError(res, 404, `no route for ${req.method} ${path}`);
  }

  async function continueResumable(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const session = sessions.get(id);
    const body = await readBody(req);
    if (session === undefined) return sendError(res, 404, 'no such upload session');
    // Content-Range: `bytes a-b/total` or `bytes a-b/*` (a chunk), `bytes a-*/total|*` (the rest,
    // streamed to its end: the SDK's single-request form), `bytes */total` (query or finish).
    const range = /^bytes (?:(\d+)-(\d+|\*)|\*)\/(\d+|\*)$/.exec(
      headerString(req.headers['content-range']) ?? '',
    );
    if (range === null) return sendError(res, 400, 'bad Content-Range for resumable upload');
    if (range[1] !== undefined) {
      if (Number(range[1]) !== session.received)
        return sendError(res, 400, 'resumable upload offset mismatch');
      session.chunks.push(body);
      session.received += body.length;
    }
    const final = range[2] === '*' || (range[3] !== '*' && Number(range[3]) === session.received);
    if (final) {
      sessions.delete(id);
      const existing = bucketOf(session.bucket).get(session.name);
      if (
        session.ifGenerationMatch !== undefined &&
        session.ifGenerationMatch !== (existing?.generation ?? '0')
      ) {
        return sendError(res, 412, 'Precondition Failed');
      }
      const object = putObject(
        session.bucket,
        session.name,
        Buffer.concat(session.chunks),
        session.contentType,
      );
      sendJson(res, 200, metadataOf(object));
      return;
    }
    const headers: Record<string, string> = { 'Content-Length': '0' };
    if (session.received > 0) headers.Range = `bytes=0-${session.received - 1}`;
    res.writeHead(308, headers).end();
  }

  function sendMedia(req: IncomingMessage, res: ServerResponse, object: GcsObject): void {
    const size = object.data.length;
    const headers: Record<string, string> = {
      'Content-Type': object.contentType,
      'Accept-Ranges': 'bytes',
      'x-goog-generation': object.generation,
      'x-goog-metageneration': object.metageneration,
      'x-goog-hash': `crc32c=${crc32cBase64(object.data)},md5=${md5Base64(object.data)}`,
      'x-goog-stored-content-length': String(size),
      'x-goog-stored-content-encoding': 'identity',
      ETag: etagOf(object),
    };
    const rangeHeader = headerString(req.headers.range);
    let start = 0;
    let end = size; // exclusive
    let status = 200;
    if (rangeHeader !== undefined) {
      const match = /^bytes=(\d*)-(\d*)$/.exec(rangeHeader);
      if (match === null || (match[1] === '' && match[2] === '')) {
        sendError(res, 400, 'bad Range');
        return;
      }
      if (match[1] === '') {
        start = Math.max(0, size - Number(match[2]));
      } else {
        start = Number(match[1]);
        end = match[2] === '' ? size : Math.min(size, Number(match[2]) + 1);
      }
      if (start >= size) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Type': 'application/json' });
        res.end(
          JSON.stringify({ error: { code: 416, message: 'The requested range cannot be satisfied.' } }),
        );
        return;
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end - 1}/${size}`;
    }
    headers['Content-Length'] = String(end - start);
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const body = object.data.subarray(start, end);
    if (bodyRate <= 0) {
      res.end(body);
      return;
    }
    let offset = 0;
    const tick = setInterval(() => {
      if (res.destroyed) {
        clearInterval(tick);
        return;
      }
      const piece = body.subarray(offset, offset + bodyRate);
      offset += piece.length;
      if (offset >= body.length) {
        clearInterval(tick);
        res.end(piece);
      } else {
        res.write(piece);
      }
    }, 10);
    res.on('close', () => clearInterval(tick));
  }

  function metadataOf(object: GcsObject) {
    return {
      kind: 'storage#object',
      id: `${object.bucket}/${object.name}/${object.generation}`,
      name: object.name,
      bucket: object.bucket,
      generation: object.generation,
      metageneration: object.metageneration,
      contentType: object.contentType,
      size: String(object.data.length),
      md5Hash: md5Base64(object.data),
      crc32c: crc32cBase64(object.data),
      etag: etagOf(object),
      timeCreated: object.updated,
      updated: object.updated,
      storageClass: 'STANDARD',
    };
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const baseUrl = `http://127.0.0.1:${port}`;
  let openCount = 0;
  server.on('connection', (socket) => {
    openCount += 1;
    socket.on('close', () => {
      openCount -= 1;
    });
  });

  return {
    url: baseUrl,
    port,
    putObject,
    deleteObject: (bucket, name) => bucketOf(bucket).delete(name),
    getObject: (bucket, name) => bucketOf(bucket).get(name),
    requests: () => log,
    clearRequests: () => {
      log.length = 0;
    },
    failNext: (count, status = 503) => {
      failures = { count, status };
    },
    setDelay: (ms) => {
      delayMs = ms;
    },
    setBodyRate: (bytesPerTick) => {
      bodyRate = bytesPerTick;
    },
    openConnections: () => openCount,
    close: async () => {
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function preconditionsHold(object: GcsObject, query: URLSearchParams): boolean {
  const match = query.get('ifGenerationMatch');
  const notMatch = query.get('ifGenerationNotMatch');
  const metaMatch = query.get('ifMetagenerationMatch');
  if (match !== null && match !== object.generation) return false;
  if (notMatch !== null && notMatch === object.generation) return false;
  if (metaMatch !== null && metaMatch !== object.metageneration) return false;
  return true;
}

function etagOf(object: GcsObject): string {
  return Buffer.from(`${object.generation}/${object.metageneration}`).toString('base64');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=UTF-8',
    'Content-Length': String(Buffer.byteLength(text)),
  });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, { error: { code: status, message, errors: [{ message, reason: String(status) }] } });
}

function headerString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function drain(req: IncomingMessage): void {
  req.resume();
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > MAX_UPLOAD_BYTES) throw new Error('upload too large for the test server');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Splits a `multipart/related` body into its parts (RFC 2046). */
function parseMultipart(body: Buffer, contentType: string): { contentType?: string; body: Buffer }[] {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
  if (boundary === undefined) return [];
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: { contentType?: string; body: Buffer }[] = [];
  let index = body.indexOf(delimiter);
  while (index !== -1) {
    const next = body.indexOf(delimiter, index + delimiter.length);
    if (next === -1) break;
    let part = body.subarray(index + delimiter.length, next);
    if (part[0] === 0x0d && part[1] === 0x0a) part = part.subarray(2);
    if (part.at(-2) === 0x0d && part.at(-1) === 0x0a) part = part.subarray(0, -2);
    const headerEnd = part.indexOf('\r\n\r\n');
    if (headerEnd !== -1) {
      const headerText = part.subarray(0, headerEnd).toString('latin1');
      const type = /content-type:\s*([^\r\n]+)/i.exec(headerText)?.[1]?.trim();
      parts.push({
        ...(type === undefined ? {} : { contentType: type }),
        body: part.subarray(headerEnd + 4),
      });
    }
    index = next;
  }
  return parts;
}

function md5Base64(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32C (Castagnoli), big-endian, base64: the form GCS uses in `crc32c` and `x-goog-hash`. */
function crc32cBase64(data: Buffer): string {
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return out.toString('base64');
}
