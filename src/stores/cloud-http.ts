import { type AgentOptions, type ClientRequestArgs, Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent, type AgentOptions as HttpsAgentOptions } from 'node:https';
import { Socket } from 'node:net';
import { addAbortSignal, type Duplex, Readable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { ModelgateError } from '../errors.ts';
import type { ByteRange, ReadResult, Transient, TransientReason } from './store.ts';

/*
 * What the cloud stores (S3, GCS, Azure) share: their HTTP agents and how to
 * read a ranged answer.
 */

/**
 * Keep-alive HTTP(S) agents for the cloud stores (GCS, Azure; S3 uses the
 * SDK's own connect timeout): one pair per store, `maxSockets` per origin
 * from the config, and a connect timeout that covers the TCP connect and,
 * for HTTPS, the TLS handshake. A socket that does not connect in time is
 * destroyed with an `ETIMEDOUT` error carrying `connectTimeout: true`, which
 * the stores map to MG_SOURCE_TIMEOUT.
 */
export interface StoreAgents {
  readonly http: HttpAgent;
  readonly https: HttpsAgent;
  /** The agent for a URL's scheme. */
  forUrl(url: URL | string): HttpAgent;
  /** Destroys every pooled and in-use socket. */
  destroy(): void;
}

export interface StoreAgentOptions {
  maxSockets: number;
  connectTimeoutMs: number;
}

export function createStoreAgents(options: StoreAgentOptions): StoreAgents {
  const common = {
    keepAlive: true,
    maxSockets: options.maxSockets,
    // Idle pooled sockets beyond this are closed: a burst of parallel chunk reads must not pin
    // `maxSockets` idle connections forever.
    maxFreeSockets: Math.min(options.maxSockets, 16),
    scheduling: 'lifo' as const,
  };
  const http = new ConnectTimeoutHttpAgent(common, options.connectTimeoutMs);
  const https = new ConnectTimeoutHttpsAgent(common, options.connectTimeoutMs);
  return {
    http,
    https,
    forUrl: (url) => (new URL(url).protocol === 'https:' ? https : http),
    destroy: () => {
      http.destroy();
      https.destroy();
    },
  };
}

/**
 * True when `error` (or an error in its `cause` chain) is a timeout. The AWS
 * SDK names connection resets `TimeoutError` too (with `code: 'ECONNRESET'`),
 * so the name alone counts only without another code.
 */
export function isTimeoutError(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 8; depth++) {
    const fields = current as Error & { code?: unknown; connectTimeout?: unknown };
    if (
      fields.connectTimeout === true ||
      fields.code === 'ETIMEDOUT' ||
      fields.code === 'UND_ERR_CONNECT_TIMEOUT' ||
      (fields.name === 'TimeoutError' && fields.code === undefined)
    ) {
      return true;
    }
    current = current.cause;
  }
  return false;
}

class ConnectTimeoutHttpAgent extends HttpAgent {
  readonly #connectTimeoutMs: number;

  constructor(options: AgentOptions, connectTimeoutMs: number) {
    super(options);
    this.#connectTimeoutMs = connectTimeoutMs;
  }

  override createConnection(
    options: ClientRequestArgs,
    callback?: (error: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const socket = super.createConnection(options, callback);
    armConnectTimeout(socket, this.#connectTimeoutMs);
    return socket;
  }
}

class ConnectTimeoutHttpsAgent extends HttpsAgent {
  readonly #connectTimeoutMs: number;

  constructor(options: HttpsAgentOptions, connectTimeoutMs: number) {
    super(options);
    this.#connectTimeoutMs = connectTimeoutMs;
  }

  override createConnection(
    options: ClientRequestArgs,
    callback?: (error: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const socket = super.createConnection(options, callback);
    armConnectTimeout(socket, this.#connectTimeoutMs);
    return socket;
  }
}

function armConnectTimeout(socket: Duplex | null | undefined, ms: number): void {
  if (!(socket instanceof Socket) || !socket.connecting) return;
  const connectedEvent = socket instanceof TLSSocket ? 'secureConnect' : 'connect';
  const timer = setTimeout(() => {
    const error = Object.assign(new Error(`connect timed out after ${ms} ms`), {
      code: 'ETIMEDOUT',
      connectTimeout: true,
    });
    socket.destroy(error);
  }, ms);
  // The timer must not keep a shutting-down process alive.
  timer.unref();
  const clear = () => clearTimeout(timer);
  socket.once(connectedEvent, clear);
  socket.once('close', clear);
}

/** What a ranged answer says: the object's total size, and whether it holds none of the range. */
export interface RangeAnswer {
  size: number;
  /** The range starts at or past the end: the body (if any) must be dropped. */
  empty: boolean;
}

/**
 * Checks an answer to `Range: bytes=start-(end-1)` against what was asked.
 * A 206 must carry `Content-Range: bytes start-last/total` with `last` the
 * end of the range clipped to the object; a 200 (no `Content-Range`) is only
 * acceptable as the whole object from offset 0 within the range. Anything
 * else would hand the engine bytes from another offset, so it fails
 * MG_SOURCE_FAILED. A total at or below `start` means the range is empty:
 * s3rver, for one, answers a ranged read of an empty object with
 * `206 bytes 0-0/0` and a body that never comes.
 */
export function checkRangeAnswer(
  contentRange: string | undefined,
  contentLength: number | undefined,
  range: ByteRange,
  location: string,
): RangeAnswer {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange ?? '');
  if (match !== null) {
    const first = Number(match[1]);
    const last = Number(match[2]);
    const total = Number(match[3]);
    if (total <= range.start) return { size: total, empty: true };
    if (first === range.start && last === Math.min(range.end, total) - 1)
      return { size: total, empty: false };
  } else if (
    contentRange === undefined &&
    contentLength !== undefined &&
    range.start === 0 &&
    contentLength <= range.end
  ) {
    return { size: contentLength, empty: false };
  }
  throw new ModelgateError(
    'MG_SOURCE_FAILED',
    `${location}: expected bytes ${range.start}-${range.end - 1}, got ${contentRange ?? `a whole body of ${contentLength ?? 'unknown'} bytes`}`,
  );
}

/** Fails MG_SOURCE_CHANGED when an ETag pin no longer matches the object's ETag. */
export function checkEtagPin(location: string, pin: string | undefined, version: string): void {
  if (pin !== undefined && pin !== version) {
    throw new ModelgateError(
      'MG_SOURCE_CHANGED',
      `${location} changed: expected ETag ${pin}, got ${version}`,
    );
  }
}

export interface RangedAnswer {
  location: string;
  /** What answered, for messages (`GetObject`, `download`). */
  operation: string;
  body: unknown;
  etag: string | undefined;
  contentRange: string | undefined;
  contentLength: number | undefined;
  range: ByteRange;
  pin: string | undefined;
  signal: AbortSignal;
}

/**
 * The checks every ETag-pinned ranged read shares (S3 GetObject, Azure
 * download): a body stream and an ETag must be there, the pin must hold, and
 * the Content-Range must be the range asked for. The body is destroyed on any
 * failure; on success, aborting `signal` destroys it (and its socket).
 */
export function acceptRangedAnswer(answer: RangedAnswer): ReadResult {
  const { location, body } = answer;
  try {
    if (!(body instanceof Readable)) {
      throw new ModelgateError(
        'MG_SOURCE_FAILED',
        `${location}: ${answer.operation} answered without a body stream`,
      );
    }
    const version = answer.etag;
    if (version === undefined) {
      throw new ModelgateError(
        'MG_SOURCE_FAILED',
        `${location}: ${answer.operation} answered without an ETag`,
      );
    }
    checkEtagPin(location, answer.pin, version);
    const checked = checkRangeAnswer(answer.contentRange, answer.contentLength, answer.range, location);
    if (checked.empty) {
      body.destroy();
      return { stream: Readable.from([]), version, size: checked.size };
    }
    addAbortSignal(answer.signal, body);
    return { stream: body, version, size: checked.size };
  } catch (error) {
    if (body instanceof Readable) body.destroy();
    throw error;
  }
}

/**
 * A failed ETag pin is MG_SOURCE_CHANGED while some version of the object
 * still exists, and MG_SOURCE_NOT_FOUND once none does: a conditional request
 * on a deleted object may answer either 404 or 412, so one unpinned lookup
 * (`statUnpinned`) tells the two apart. Other errors pass through unchanged.
 */
export async function disambiguatePinFailure(
  error: unknown,
  pin: string | undefined,
  statUnpinned: () => Promise<unknown>,
): Promise<unknown> {
  if (pin === undefined || !(error instanceof ModelgateError) || error.code !== 'MG_SOURCE_CHANGED')
    return error;
  try {
    await statUnpinned();
    return error;
  } catch (live) {
    return live instanceof ModelgateError && live.code === 'MG_SOURCE_NOT_FOUND' ? live : error;
  }
}

/**
 * Error codes that mean "slow down" whatever the status: S3 (`SlowDown`…),
 * Azure (`ServerBusy`), GCS JSON API reasons (`rateLimitExceeded`, which GCS
 * may send with 403).
 */
const THROTTLING_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'TooManyRequests',
  'TooManyRequestsException',
  'BandwidthLimitExceeded',
  'ServerBusy',
  'rateLimitExceeded',
  'userRateLimitExceeded',
]);

/** Error codes of a server-side failure worth asking again (S3, Azure, GCS). */
const SERVER_ERROR_CODES = new Set([
  'InternalError',
  'InternalServerError',
  'ServiceUnavailable',
  'OperationTimedOut',
  'backendError',
  'internalError',
]);

/** Connection failures before any byte of the answer: the request can be sent again as is. */
const CONNECTION_ERRNOS = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'EAI_AGAIN',
  // undici (the S3 data path): the socket closed or failed under the request.
  'UND_ERR_SOCKET',
]);

/**
 * Whether an error answer is transient: 429 and 503 (and throttling codes)
 * are `throttled`; 500, 502 and 504 (and server-error codes) are
 * `server_error`; anything else (403, 404, 412, 416…) is final.
 */
export function transientAnswer(
  status: number | undefined,
  code: string | undefined,
  retryAfter: string | null | undefined,
  now = Date.now(),
): Transient | undefined {
  let reason: TransientReason | undefined;
  if (status === 429 || status === 503 || (code !== undefined && THROTTLING_CODES.has(code))) {
    reason = 'throttled';
  } else if (
    status === 500 ||
    status === 502 ||
    status === 504 ||
    (code !== undefined && SERVER_ERROR_CODES.has(code))
  ) {
    reason = 'server_error';
  }
  if (reason === undefined) return undefined;
  const retryAfterMs = parseRetryAfter(retryAfter, now);
  return retryAfterMs === undefined ? { reason } : { reason, retryAfterMs };
}

/** A connection reset, refused or unreachable (in `error` or its causes) is transient: `connection`. */
export function transientTransport(error: unknown): Transient | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 8; depth++) {
    const code = (current as NodeJS.ErrnoException).code;
    if (code !== undefined && CONNECTION_ERRNOS.has(code)) return { reason: 'connection' };
    current = current.cause;
  }
  return undefined;
}

/** `Retry-After` as delay-seconds or an HTTP date, in milliseconds from `now`; undefined when absent or malformed. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value === null) return undefined;
  const text = value.trim();
  if (/^\d{1,9}$/.test(text)) return Number(text) * 1000;
  // An HTTP date names a day and month; without letters, Date.parse would read `-5` as a year.
  const at = /[A-Za-z]/.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
