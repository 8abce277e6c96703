import { rootCertificates } from 'node:tls';
import { Agent, type Dispatcher, request } from 'undici';
import { type IdentityFields, parseIdentityHeader } from '../release-headers.ts';
import { errorFromResponse, FetchError, isFetchError } from './fetch-error.ts';
import type { TokenSource } from './token-source.ts';

/** Error bodies are small JSON documents; read at most this much of one (a misrouted HTML page can be large). */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** The manifest of a release with many files stays far below this; more is refused rather than buffered. */
const MAX_MANIFEST_BYTES = 32 * 1024 * 1024;
/** A file response may wait this long for headers: chunk mode verifies the first chunk before sending any. */
const HEADERS_TIMEOUT_MS = 120_000;
/** Silence between two body reads before the connection counts as broken (and the file resumes). */
const BODY_TIMEOUT_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;

const USER_AGENT = 'modelgate-fetch';

export interface ProxyClientOptions {
  /** Base URL of the proxy's data listener, e.g. `http://modelgate.modelgate.svc:8080`. */
  proxy: URL;
  tokens: TokenSource;
  /** PEM of an extra CA trusted for an https proxy, beside the system roots. */
  ca?: string;
  /** Sockets kept to the proxy: one per concurrent file, plus one for the manifest. */
  connections: number;
  /** A break-glass token sent in `Modelgate-Break-Glass` on every request (docs/break-glass.md). */
  breakGlassToken?: string;
}

export interface ManifestResponse {
  body: Buffer;
  /** The `Modelgate-Release-Digest` header. */
  releaseDigest: string | undefined;
  /** The `Modelgate-Release-Signer` header: the signer the proxy verified, or `unsigned`. */
  signer: string | undefined;
  /** Who signed (`Modelgate-Release-Signer-Identity`): method, identity, issuer. */
  signerIdentity: IdentityFields | undefined;
  /** Upstream (OMS) evidence the proxy re-verified (`Modelgate-Release-Upstream`). */
  upstream: IdentityFields | undefined;
}

export interface FileResponse {
  /** 200: the body starts at byte 0. 206: it starts at `start`. */
  status: 200 | 206;
  start: number;
  /** Total size as announced (Content-Range total, or Content-Length for 200); undefined when absent. */
  total: number | undefined;
  releaseDigest: string | undefined;
  body: AsyncIterable<Buffer> & { destroy(error?: Error): unknown };
}

/** The proxy's answer on `…/releases/{ref}/prefetch` (docs/scaling.md). */
export interface PrefetchState {
  state: 'running' | 'done' | 'failed';
  bytes: number;
  totalBytes: number;
}

export interface ProxyClient {
  /** `POST` starts warming the proxy's disk cache for a release (202); `GET` reports how far it got. */
  prefetch(model: string, ref: string, method: 'GET' | 'POST', signal: AbortSignal): Promise<PrefetchState>;
  getManifest(model: string, ref: string, signal: AbortSignal): Promise<ManifestResponse>;
  /** GETs a file of a release from `offset` (a `Range: bytes=offset-` request when offset > 0). */
  getFile(
    model: string,
    releaseDigest: string,
    path: string,
    offset: number,
    signal: AbortSignal,
  ): Promise<FileResponse>;
  close(): Promise<void>;
}

/**
 * Percent-encodes one path segment. `:` and `@` are legal in a segment
 * (RFC 3986 `pchar`) and stay readable (`sha256:…`).
 */
export function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replaceAll('%3A', ':').replaceAll('%40', '@');
}

/** Encodes a model name or manifest path segment by segment; `/` separators stay as they are. */
export function encodeSegments(value: string): string {
  return value.split('/').map(encodeSegment).join('/');
}

export function releaseUrl(proxy: URL, model: string, ref: string): URL {
  const base = proxy.pathname.replace(/\/+$/, '');
  return new URL(`${base}/v1/models/${encodeSegments(model)}/releases/${encodeSegment(ref)}`, proxy);
}

export function fileUrl(proxy: URL, model: string, releaseDigest: string, path: string): URL {
  const release = releaseUrl(proxy, model, releaseDigest);
  return new URL(`${release.pathname}/files/${encodeSegments(path)}`, proxy);
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3). */
function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

async function readCapped(body: Dispatcher.ResponseData['body'], limit: number): Promise<Buffer | null> {
  const parts: Buffer[] = [];
  let length = 0;
  for await (const part of body as AsyncIterable<Buffer>) {
    length += part.length;
    if (length > limit) {
      body.destroy();
      return null;
    }
    parts.push(part);
  }
  return Buffer.concat(parts, length);
}

async function responseError(response: Dispatcher.ResponseData): Promise<FetchError> {
  let code: string | undefined;
  let message: string | undefined;
  try {
    const text = await readCapped(response.body, MAX_ERROR_BODY_BYTES);
    const json = text === null ? undefined : (JSON.parse(text.toString('utf8')) as unknown);
    const error = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    if (typeof error?.code === 'string') code = error.code;
    if (typeof error?.message === 'string') message = error.message;
  } catch {
    // Not our JSON (a load balancer's page, a cut body): the status alone classifies it.
  }
  return errorFromResponse(
    response.statusCode,
    code,
    message,
    parseRetryAfter(header(response.headers, 'retry-after')),
  );
}

/** Any failure below HTTP (refused, reset, timed out, TLS) is a network error and may be retried. */
function networkError(error: unknown, signal: AbortSignal, what: string): FetchError {
  if (isFetchError(error)) return error;
  if (signal.aborted)
    return new FetchError('interrupted', 'FETCH_INTERRUPTED', 'interrupted', { cause: error });
  const detail =
    error instanceof Error ? ((error as { code?: string }).code ?? error.message) : String(error);
  return new FetchError('unavailable', 'FETCH_NETWORK', `${what}: ${detail}`, {
    cause: error,
    retryable: true,
  });
}

/**
 * The proxy's data API over one pooled undici Agent. The bearer token is read
 * from its source before every request (projected tokens rotate).
 */
export function createProxyClient(options: ProxyClientOptions): ProxyClient {
  const agent = new Agent({
    connections: options.connections,
    headersTimeout: HEADERS_TIMEOUT_MS,
    bodyTimeout: BODY_TIMEOUT_MS,
    connect: {
      timeout: CONNECT_TIMEOUT_MS,
      ...(options.ca === undefined ? {} : { ca: [...rootCertificates, options.ca] }),
    },
  });

  const breakGlass: Record<string, string> =
    options.breakGlassToken === undefined ? {} : { 'modelgate-break-glass': options.breakGlassToken };

  async function send(
    url: URL,
    headers: Record<string, string>,
    signal: AbortSignal,
    method: 'GET' | 'POST' = 'GET',
  ) {
    const token = await options.tokens.read();
    try {
      return await request(url, {
        dispatcher: agent,
        method,
        signal,
        headers: {
          'user-agent': USER_AGENT,
          authorization: `Bearer ${token}`,
          ...breakGlass,
          ...headers,
        },
      });
    } catch (error) {
      throw networkError(error, signal, `cannot reach ${url.origin}`);
    }
  }

  return {
    async prefetch(model, ref, method, signal) {
      const release = releaseUrl(options.proxy, model, ref);
      const url = new URL(`${release.pathname}/prefetch`, options.proxy);
      const response = await send(url, { accept: 'application/json' }, signal, method);
      if (response.statusCode !== 200 && response.statusCode !== 202) throw await responseError(response);
      let state: Partial<PrefetchState> | undefined;
      try {
        const body = await readCapped(response.body, MAX_ERROR_BODY_BYTES);
        state = body === null ? undefined : (JSON.parse(body.toString('utf8')) as Partial<PrefetchState>);
      } catch (error) {
        throw networkError(error, signal, 'prefetch answer broken');
      }
      const valid =
        (state?.state === 'running' || state?.state === 'done' || state?.state === 'failed') &&
        Number.isSafeInteger(state.bytes) &&
        Number.isSafeInteger(state.totalBytes);
      if (!valid)
        throw new FetchError('unexpected', 'FETCH_BAD_RESPONSE', 'the prefetch answer is not a state');
      return state as PrefetchState;
    },

    async getManifest(model, ref, signal) {
      const url = releaseUrl(options.proxy, model, ref);
      const response = await send(url, { accept: 'application/json' }, signal);
      if (response.statusCode !== 200) throw await responseError(response);
      let body: Buffer | null;
      try {
        body = await readCapped(response.body, MAX_MANIFEST_BYTES);
      } catch (error) {
        throw networkError(error, signal, 'manifest body broken');
      }
      if (body === null) {
        throw new FetchError('integrity', 'FETCH_BAD_MANIFEST', 'manifest is larger than 32 MiB');
      }
      return {
        body,
        releaseDigest: header(response.headers, 'modelgate-release-digest'),
        signer: header(response.headers, 'modelgate-release-signer'),
        signerIdentity: parseIdentityHeader(header(response.headers, 'modelgate-release-signer-identity')),
        upstream: parseIdentityHeader(header(response.headers, 'modelgate-release-upstream')),
      };
    },

    async getFile(model, releaseDigest, path, offset, signal) {
      const url = fileUrl(options.proxy, model, releaseDigest, path);
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (offset > 0) headers.range = `bytes=${offset}-`;
      const response = await send(url, headers, signal);
      const digestHeader = header(response.headers, 'modelgate-release-digest');
      if (response.statusCode === 200) {
        const length = header(response.headers, 'content-length');
        return {
          status: 200,
          start: 0,
          total: length === undefined ? undefined : Number(length),
          releaseDigest: digestHeader,
          body: response.body,
        };
      }
      if (response.statusCode === 206) {
        const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header(response.headers, 'content-range') ?? '');
        if (range === null) {
          response.body.destroy();
          throw new FetchError(
            'integrity',
            'FETCH_BAD_RESPONSE',
            '206 response without a valid Content-Range',
          );
        }
        return {
          status: 206,
          start: Number(range[1]),
          total: Number(range[3]),
          releaseDigest: digestHeader,
          body: response.body,
        };
      }
      throw await responseError(response);
    },

    async close() {
      await agent.close();
    },
  };
}

/** Wraps an error thrown while reading a response body (reset, premature close, idle timeout). */
export function bodyError(error: unknown, signal: AbortSignal): FetchError {
  return networkError(error, signal, 'connection broken during the transfer');
}
