/**
 * An HTTP proxy on 127.0.0.1 in front of one test origin (s3rver, Azurite,
 * the GCS test server) that records every request's method, URL and headers
 * and answers chosen requests itself, the way a throttled cloud store does:
 * the Nth..Mth request matching a method and `Range` gets an S3-style XML
 * `503 SlowDown` (or any status, headers and body), or a connection reset
 * before any byte. It can also strip request headers (`If-Match`) or rewrite
 * URLs before forwarding, to play an origin that ignores a precondition.
 * Headers are forwarded verbatim (Host included), so signatures that cover
 * the Host still verify at the origin.
 *
 * ```ts
 * const proxy = await startHttpFaultProxy({ port: s3.port });
 * proxy.addFault({ range: 'bytes=0-1048575', from: 1, to: 2, ...s3SlowDown({ retryAfter: '1' }) });
 * // point the store at proxy.url
 * after(() => proxy.close());
 * ```
 */
import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type ServerResponse,
} from 'node:http';

export interface HttpFault {
  /** Method to match (default GET). */
  method?: string;
  /** Exact `Range` (or Azure's `x-ms-range`) header to match; any request when absent. */
  range?: string;
  /** A substring the request URL must contain. */
  urlIncludes?: string;
  /** Fail the `from`-th through `to`-th matching requests (1-based, inclusive; `to` defaults to `from`). */
  from: number;
  to?: number;
  /** Answer this status with `headers` and `body`… */
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  /** …or reset the connection before any byte of an answer… */
  reset?: boolean;
  /** …or forward the request and the origin's headers, then reset before the first body byte… */
  resetAfterHeaders?: boolean;
  /** …or forward the origin's answer but end the connection after this many body bytes. */
  cutBodyAfterBytes?: number;
  /**
   * …or forward the origin's headers without `Content-Length` (a chunked body)
   * and end that body cleanly after this many bytes: a complete answer that is
   * shorter than the range asked for, as a truncating middlebox sends it.
   */
  truncateBodyAfterBytes?: number;
  /** …or forward this many body bytes, then send nothing more while keeping the connection open. */
  stallBodyAfterBytes?: number;
}

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  /** As the client sent them (before any stripping). */
  readonly headers: IncomingHttpHeaders;
  /** `origin` when forwarded, else the fault's status (or `reset`). */
  readonly answeredBy: 'origin' | number | 'reset' | 'reset-after-headers' | 'cut' | 'truncated' | 'stalled';
  /** `performance.now()` when the request arrived. */
  readonly at: number;
}

export interface HttpFaultProxyOptions {
  /** Origin port on 127.0.0.1. */
  port: number;
  /** Request headers (lower case) removed before forwarding, e.g. `if-match`. */
  stripRequestHeaders?: string[];
  /** Rewrites a request URL (path and query) before forwarding. */
  rewriteUrl?: (url: URL) => URL;
}

export interface HttpFaultProxy {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  addFault(fault: HttpFault): void;
  clearFaults(): void;
  requests(): readonly RecordedRequest[];
  clearRequests(): void;
  /** Stops listening and closes every connection; safe to call twice. */
  close(): Promise<void>;
}

/** Starts a recording, fault-injecting HTTP proxy on 127.0.0.1, port 0. */
export async function startHttpFaultProxy(options: HttpFaultProxyOptions): Promise<HttpFaultProxy> {
  const agent = new Agent({ keepAlive: true });
  const strip = new Set(options.stripRequestHeaders ?? []);
  let faults: Array<{ fault: HttpFault; seen: number }> = [];
  let recorded: RecordedRequest[] = [];
  let closed = false;

  /** The first fault whose window covers this request (every matching fault counts it). */
  function faultFor(req: IncomingMessage): HttpFault | undefined {
    let chosen: HttpFault | undefined;
    for (const entry of faults) {
      const { fault } = entry;
      if ((fault.method ?? 'GET') !== req.method) continue;
      if (fault.range !== undefined && rangeOf(req.headers) !== fault.range) continue;
      if (fault.urlIncludes !== undefined && !(req.url ?? '').includes(fault.urlIncludes)) continue;
      entry.seen++;
      if (chosen === undefined && entry.seen >= fault.from && entry.seen <= (fault.to ?? fault.from)) {
        chosen = fault;
      }
    }
    return chosen;
  }

  function forward(req: IncomingMessage, res: ServerResponse, fault?: HttpFault) {
    const headers = { ...req.headers };
    for (const name of strip) delete headers[name];
    let path = req.url ?? '/';
    if (options.rewriteUrl) {
      const rewritten = options.rewriteUrl(new URL(path, 'http://origin'));
      path = `${rewritten.pathname}${rewritten.search}`;
    }
    const upstream = request(
      { host: '127.0.0.1', port: options.port, method: req.method, path, headers, agent },
      (answer) => {
        if (fault?.truncateBodyAfterBytes !== undefined) {
          truncateBody(answer, res, fault.truncateBodyAfterBytes);
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
        if (fault?.resetAfterHeaders) {
          res.flushHeaders();
          answer.destroy();
          // Let the headers leave before the reset.
          setImmediate(() => req.socket.resetAndDestroy());
          return;
        }
        if (fault?.cutBodyAfterBytes !== undefined) {
          cutBody(answer, res, fault.cutBodyAfterBytes);
          return;
        }
        if (fault?.stallBodyAfterBytes !== undefined) {
          relayBytes(answer, res, fault.stallBodyAfterBytes, () => answer.pause());
          return;
        }
        answer.pipe(res);
        answer.once('error', () => res.destroy());
      },
    );
    upstream.once('error', () => res.destroy());
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  /** Relays the first `limit` body bytes, then calls `done` once (and relays nothing more). */
  function relayBytes(answer: IncomingMessage, res: ServerResponse, limit: number, done: () => void) {
    if (limit <= 0) {
      done();
      return;
    }
    let sent = 0;
    answer.on('data', (chunk: Buffer) => {
      if (sent >= limit) return;
      const piece = chunk.subarray(0, limit - sent);
      sent += piece.length;
      res.write(piece);
      if (sent >= limit) done();
    });
  }

  /** Relays `limit` body bytes, then ends the socket: a clean FIN mid-body, every relayed byte delivered. */
  function cutBody(answer: IncomingMessage, res: ServerResponse, limit: number) {
    relayBytes(answer, res, limit, () => {
      answer.destroy();
      res.socket?.end();
    });
  }

  /** The origin's status and headers but a chunked body that ends, well-formed, after `limit` bytes. */
  function truncateBody(answer: IncomingMessage, res: ServerResponse, limit: number) {
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value !== undefined && name !== 'content-length' && name !== 'connection') headers[name] = value;
    }
    res.writeHead(answer.statusCode ?? 502, headers);
    relayBytes(answer, res, limit, () => {
      answer.destroy();
      res.end();
    });
  }

  const server = createServer((req, res) => {
    const fault = faultFor(req);
    const answeredBy =
      fault === undefined
        ? 'origin'
        : fault.reset
          ? 'reset'
          : fault.resetAfterHeaders
            ? 'reset-after-headers'
            : fault.cutBodyAfterBytes !== undefined
              ? 'cut'
              : fault.truncateBodyAfterBytes !== undefined
                ? 'truncated'
                : fault.stallBodyAfterBytes !== undefined
                  ? 'stalled'
                  : (fault.status ?? 503);
    recorded.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      answeredBy,
      at: performance.now(),
    });
    const forwarded =
      fault === undefined ||
      fault.resetAfterHeaders === true ||
      fault.cutBodyAfterBytes !== undefined ||
      fault.truncateBodyAfterBytes !== undefined ||
      fault.stallBodyAfterBytes !== undefined;
    if (forwarded) {
      forward(req, res, fault);
      return;
    }
    // Drain the request first: answering before it was read would look like a broken origin.
    req.resume();
    req.once('end', () => {
      if (fault.reset) {
        req.socket.resetAndDestroy();
        return;
      }
      const body = fault.body ?? '';
      res.writeHead(fault.status ?? 503, {
        'content-length': Buffer.byteLength(body),
        ...fault.headers,
      });
      res.end(body);
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    addFault: (fault) => {
      faults.push({ fault, seen: 0 });
    },
    clearFaults: () => {
      faults = [];
    },
    requests: () => recorded,
    clearRequests: () => {
      recorded = [];
    },
    close: async () => {
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

/** The byte range a request asks for: `Range`, or `x-ms-range` (which the Azure SDK sends instead). */
export function rangeOf(headers: IncomingHttpHeaders): string | undefined {
  const value = headers['x-ms-range'] ?? headers.range;
  return Array.isArray(value) ? value[0] : value;
}

/** S3's throttling answer: `503 SlowDown` with an XML error body. */
export function s3SlowDown(
  options: { retryAfter?: string } = {},
): Pick<HttpFault, 'status' | 'headers' | 'body'> {
  return {
    status: 503,
    headers: {
      'content-type': 'application/xml',
      ...(options.retryAfter === undefined ? {} : { 'retry-after': options.retryAfter }),
    },
    body:
      '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>' +
      '<Message>Please reduce your request rate.</Message><RequestId>FAULT</RequestId></Error>',
  };
}

/** Azure Blob Storage's throttling answer: `503 ServerBusy` with `x-ms-error-code` and an XML body. */
export function azureServerBusy(
  options: { retryAfter?: string } = {},
): Pick<HttpFault, 'status' | 'headers' | 'body'> {
  return {
    status: 503,
    headers: {
      'content-type': 'application/xml',
      'x-ms-error-code': 'ServerBusy',
      ...(options.retryAfter === undefined ? {} : { 'retry-after': options.retryAfter }),
    },
    body:
      '<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>' +
      '<Message>The server is busy.</Message></Error>',
  };
}

/** The GCS JSON API's rate-limit answer: `429` with a `rateLimitExceeded` JSON error. */
export function gcsRateLimited(
  options: { retryAfter?: string } = {},
): Pick<HttpFault, 'status' | 'headers' | 'body'> {
  return {
    status: 429,
    headers: {
      'content-type': 'application/json',
      ...(options.retryAfter === undefined ? {} : { 'retry-after': options.retryAfter }),
    },
    body: JSON.stringify({
      error: {
        code: 429,
        message: 'The rate of requests exceeds the limit.',
        errors: [{ reason: 'rateLimitExceeded', domain: 'usageLimits' }],
      },
    }),
  };
}
