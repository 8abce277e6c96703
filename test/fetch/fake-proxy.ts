/**
 * A tiny real HTTP server that speaks the proxy's data API (SPEC §2) for one
 * release, so the fetch client's resume, retry and verification logic can be
 * tested without the real proxy: it serves the manifest with
 * `Modelgate-Release-Digest`, answers `Range: bytes=N-` with 206 for chunked
 * files (200 for whole-file ones, as the proxy does), and takes queued faults
 * per route: cut the connection after N body bytes, answer an error status,
 * corrupt a byte, or send a wrong header. Every request is logged.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

export interface FakeFile {
  path: string;
  bytes: Buffer;
  /** null = whole-file mode (no `chunks` in the manifest). */
  chunkSize: number | null;
}

export interface FakeRelease {
  model: string;
  version: string;
  environment?: string;
  files: FakeFile[];
}

export type Fault =
  /** Send the headers and this many body bytes, then destroy the socket. */
  | { cutAfterBytes: number }
  /** Send the headers and this many body bytes, then nothing more (the connection stays open). */
  | { stallAfterBytes: number }
  /** Answer this status with the proxy's JSON error body. */
  | { status: number; code?: string; retryAfter?: string }
  /** Flip the byte at this file offset in the body. */
  | { corruptAt: number }
  /** Announce another release digest than the manifest's (manifest route only). */
  | { wrongDigestHeader: true }
  /** Answer a Range request with the whole body (200), as for a whole-file-mode file. */
  | { ignoreRange: true };

export interface LoggedRequest {
  route: 'manifest' | 'file' | 'other';
  /** Model and ref or file path, decoded. */
  model?: string;
  ref?: string;
  path?: string;
  range: string | undefined;
  authorization: string | undefined;
  status: number;
}

export interface FakeProxy {
  url: string;
  releaseDigest: string;
  manifestBytes: Buffer;
  /** Bearer tokens accepted; tests add and remove to simulate rotation. */
  tokens: Set<string>;
  log: LoggedRequest[];
  /** Faults for the next requests of a route: 'manifest' or a file path. One fault per request, in order. */
  queue(target: string, ...faults: Fault[]): void;
  /** Called on every request after logging (e.g. to rotate a token file mid-fetch). */
  onRequest?: (entry: LoggedRequest) => void;
  close(): Promise<void>;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Builds the manifest JSON of a fake release; `mutate` may alter it (e.g. plant an unsafe path). */
export function fakeManifest(
  release: FakeRelease,
  mutate?: (manifest: Record<string, unknown>) => void,
): Buffer {
  const manifest: Record<string, unknown> = {
    schema: 'modelgate/release/v1',
    model: release.model,
    version: release.version,
    environment: release.environment ?? 'prod',
    created: '2026-11-25T10:00:00Z',
    provenance: { builder: 'test' },
    files: release.files.map((file) => {
      const entry: Record<string, unknown> = {
        path: file.path,
        size: file.bytes.length,
        digest: `sha256:${sha256(file.bytes)}`,
        sources: [`file:${file.path}`],
      };
      if (file.chunkSize !== null) {
        const chunks: string[] = [];
        for (let at = 0; at < file.bytes.length; at += file.chunkSize) {
          chunks.push(sha256(file.bytes.subarray(at, at + file.chunkSize)));
        }
        entry.chunkSize = file.chunkSize;
        entry.chunks = chunks;
      }
      return entry;
    }),
  };
  mutate?.(manifest);
  return Buffer.from(JSON.stringify(manifest));
}

function sendError(res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}) {
  const body = JSON.stringify({ error: { code, message: `fake ${code}` } });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

/** Starts the fake proxy on 127.0.0.1, port 0. */
export async function startFakeProxy(
  release: FakeRelease,
  options: {
    token?: string;
    manifestBytes?: Buffer;
    anyRef?: boolean;
    /** Send file bodies at about this rate (64 KiB pieces on a timer), so a transfer lasts a while. */
    bytesPerSecond?: number;
  } = {},
): Promise<FakeProxy> {
  const manifestBytes = options.manifestBytes ?? fakeManifest(release);
  const releaseDigest = `sha256:${sha256(manifestBytes)}`;
  const files = new Map(release.files.map((f) => [f.path, f]));
  const faults = new Map<string, Fault[]>();
  const log: LoggedRequest[] = [];

  const proxy: FakeProxy = {
    url: '',
    releaseDigest,
    manifestBytes,
    tokens: new Set([options.token ?? 'good-token']),
    log,
    queue(target, ...more) {
      faults.set(target, [...(faults.get(target) ?? []), ...more]);
    },
    close: async () => {},
  };

  function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://x');
    const entry: LoggedRequest = {
      route: 'other',
      range: req.headers.range,
      authorization: req.headers.authorization,
      status: 0,
    };
    const respond = (status: number, act: () => void) => {
      entry.status = status;
      log.push(entry);
      proxy.onRequest?.(entry);
      act();
    };
    const match = /^\/v1\/models\/(.+?)\/releases\/([^/]+)(?:\/files\/(.+))?$/.exec(url.pathname);
    if (match === null) return respond(404, () => sendError(res, 404, 'MG_ROUTE_NOT_FOUND'));
    const model = match[1]!.split('/').map(decodeURIComponent).join('/');
    const ref = decodeURIComponent(match[2]!);
    const path = match[3]?.split('/').map(decodeURIComponent).join('/');
    entry.route = path === undefined ? 'manifest' : 'file';
    entry.model = model;
    entry.ref = ref;
    if (path !== undefined) entry.path = path;
    const fault = faults.get(path ?? 'manifest')?.shift();

    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (token === undefined || !proxy.tokens.has(token)) {
      return respond(401, () =>
        sendError(res, 401, 'MG_TOKEN_SIGNATURE_INVALID', {
          'www-authenticate': 'Bearer error="invalid_token"',
        }),
      );
    }
    if (fault !== undefined && 'status' in fault) {
      return respond(fault.status, () =>
        sendError(
          res,
          fault.status,
          fault.code ?? 'MG_INTERNAL',
          fault.retryAfter ? { 'retry-after': fault.retryAfter } : {},
        ),
      );
    }
    if (model !== release.model) return respond(404, () => sendError(res, 404, 'MG_MODEL_NOT_FOUND'));

    if (path === undefined) {
      if (ref !== release.version && ref !== releaseDigest && options.anyRef !== true) {
        return respond(404, () => sendError(res, 404, 'MG_RELEASE_NOT_FOUND'));
      }
      const digestHeader =
        fault !== undefined && 'wrongDigestHeader' in fault ? `sha256:${'0'.repeat(64)}` : releaseDigest;
      return respond(200, () => {
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': manifestBytes.length,
          'modelgate-release-digest': digestHeader,
        });
        res.end(manifestBytes);
      });
    }

    // Files are served by release digest only: a client asking by version would get 404 here.
    if (ref !== releaseDigest) return respond(404, () => sendError(res, 404, 'MG_RELEASE_NOT_FOUND'));
    const file = files.get(path);
    if (file === undefined) return respond(404, () => sendError(res, 404, 'MG_FILE_NOT_FOUND'));
    const size = file.bytes.length;
    let start = 0;
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ignoreRange = fault !== undefined && 'ignoreRange' in fault;
    if (range !== null && file.chunkSize !== null && !ignoreRange) {
      start = Number(range[1]);
      if (start >= size) return respond(416, () => sendError(res, 416, 'MG_RANGE_NOT_SATISFIABLE'));
      status = 206;
    }
    let body = file.bytes.subarray(start);
    if (fault !== undefined && 'corruptAt' in fault && fault.corruptAt >= start) {
      body = Buffer.from(body);
      body[fault.corruptAt - start]! ^= 0xff;
    }
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'content-length': body.length,
      etag: `"sha256:${sha256(file.bytes)}"`,
      'modelgate-release-digest': releaseDigest,
      'accept-ranges': file.chunkSize === null ? 'none' : 'bytes',
    };
    if (status === 206) headers['content-range'] = `bytes ${start}-${size - 1}/${size}`;
    respond(status, () => {
      res.writeHead(status, headers);
      if (fault !== undefined && 'stallAfterBytes' in fault) {
        res.write(body.subarray(0, fault.stallAfterBytes));
        return;
      }
      if (fault !== undefined && 'cutAfterBytes' in fault) {
        res.write(body.subarray(0, fault.cutAfterBytes), () => res.socket?.destroy());
        return;
      }
      if (options.bytesPerSecond !== undefined) return pace(res, body, options.bytesPerSecond);
      res.end(body);
    });
  }

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  proxy.url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}

/** Writes `body` in 64 KiB pieces spaced to `bytesPerSecond`; stops when the client goes away. */
function pace(res: ServerResponse, body: Buffer, bytesPerSecond: number): void {
  const piece = 64 * 1024;
  const gapMs = (piece / bytesPerSecond) * 1000;
  let offset = 0;
  const next = () => {
    if (res.destroyed) return;
    const end = Math.min(body.length, offset + piece);
    const last = end === body.length;
    const part = body.subarray(offset, end);
    offset = end;
    if (last) res.end(part);
    else res.write(part, () => setTimeout(next, gapMs));
  };
  next();
}

/** Deterministic bytes, distinct in every chunk (shared with the proxy tests). */
export { randomBytesSeeded as seededBytes } from '../helpers/proxy.ts';
