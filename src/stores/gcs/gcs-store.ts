import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { addAbortSignal, Readable } from 'node:stream';
import { Storage, type StorageOptions } from '@google-cloud/storage';
import type { GcsStoreConfig } from '../../config/config.types.ts';
import { ModelgateError } from '../../errors.ts';
import {
  checkRangeAnswer,
  createStoreAgents,
  isTimeoutError,
  transientAnswer,
  transientTransport,
} from '../cloud-http.ts';
import {
  type ByteRange,
  type ObjectVersion,
  probeScopes,
  type ReadOptions,
  type ReadResult,
  type Store,
} from '../store.ts';

/** Largest error body read to build a message; the rest is dropped with the socket. */
const MAX_ERROR_BODY_BYTES = 16 * 1024;

/** Maps a non-success status; a 404 under a pin asks whether a live object still exists. */
async function statusError(
  res: IncomingMessage,
  body: string,
  location: string,
  signal: AbortSignal,
  metadata: (location: string, signal: AbortSignal) => Promise<ObjectVersion>,
  pin?: string,
): Promise<ModelgateError> {
  const status = res.statusCode ?? 0;
  const details = { location, status, body: body.slice(0, 512) };
  if (status === 404 && pin !== undefined) {
    try {
      const live = await metadata(location, signal);
      return new ModelgateError(
        'MG_SOURCE_CHANGED',
        `${location} changed: expected generation ${pin}, got ${live.version}`,
        { details },
      );
    } catch (error) {
      if (error instanceof ModelgateError && error.code === 'MG_SOURCE_NOT_FOUND') return error;
      throw error;
    }
  }
  if (status === 404)
    return new ModelgateError('MG_SOURCE_NOT_FOUND', `no such object: ${location}`, { details });
  if (status === 412) {
    return new ModelgateError('MG_SOURCE_CHANGED', `${location} changed: precondition failed`, { details });
  }
  const transient = transientAnswer(status, errorReasonOf(body), headerOf(res, 'retry-after'));
  return new ModelgateError('MG_SOURCE_FAILED', `${location}: expected the object, got HTTP ${status}`, {
    details: { ...details, transient },
  });
}
/** The JSON API URL of one object. */
function objectUrl(apiEndpoint: string, bucket: string, name: string, query: Record<string, string>): URL {
  const url = new URL(
    `${apiEndpoint}/storage/v1/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(name)}`,
  );
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  return url;
}
/**
 * Google Cloud Storage: `gs://bucket/object`, read through the JSON API
 * (`GET …/o/{object}?alt=media` with `Range`). The official SDK's `Storage`
 * client owns the credentials — Application Default Credentials (GKE
 * Workload Identity, metadata server, `GOOGLE_APPLICATION_CREDENTIALS`), or
 * `keyFilename` — and its `authClient` signs every request; a loopback
 * `apiEndpoint` (a local test server) without a `keyFilename` is used without credentials, as the
 * SDK does for custom endpoints, while any other custom endpoint still
 * authenticates (`useAuthWithCustomEndpoint`).
 *
 * The HTTP exchange itself is ours rather than `file.createReadStream()`:
 * measured against a body cut short after 256 KiB, that stream (node-fetch 2
 * under teeny-request) neither ends nor errors — it hangs until an outside
 * timeout — where the engine needs an error to retry at once. It also sends
 * its request only when first read, so the generation and size are unknown
 * when `read()` must return them, and takes no AbortSignal or agent (no
 * connect timeout, no `maxSockets`). Here every request runs
 * on this store's keep-alive agent, aborting the signal destroys the socket,
 * and a body cut short surfaces as a stream error (test/stores/fault-proxy.test.ts).
 *
 * The version is the object's `generation`. A pinned read asks for exactly
 * that generation (`generation=`), so a versioned bucket keeps serving the
 * pinned bytes after an overwrite; when that generation is gone GCS answers
 * 404, which is MG_SOURCE_CHANGED when a live object still exists and
 * MG_SOURCE_NOT_FOUND when none does. Objects are read as stored
 * (`Accept-Encoding: gzip` turns off decompressive transcoding, which would
 * otherwise change the bytes and ignore `Range`).
 */
export function createGcsStore(config: GcsStoreConfig): Store {
  // A key file given explicitly is always used, even on loopback (the credential-path test runs there).
  const anonymous =
    config.keyFilename === undefined && config.apiEndpoint !== undefined && isLoopbackUrl(config.apiEndpoint);
  // Requests are never retried here: the engine retries from chunk boundaries and fails over to mirrors.
  const options: StorageOptions = { useAuthWithCustomEndpoint: !anonymous };
  if (config.projectId !== undefined) options.projectId = config.projectId;
  if (config.apiEndpoint !== undefined) options.apiEndpoint = config.apiEndpoint;
  if (config.keyFilename !== undefined) options.keyFilename = config.keyFilename;
  const storage = new Storage(options);
  const apiEndpoint = storage.apiEndpoint;
  const agents = createStoreAgents({
    maxSockets: config.maxSockets,
    connectTimeoutMs: config.timeouts.connectSeconds * 1000,
  });

  async function send(
    url: URL,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<IncomingMessage> {
    // Copied through `Headers` so this works whether the auth library answers a plain object or a `Headers`.
    const auth = anonymous
      ? {}
      : Object.fromEntries(new Headers(await storage.authClient.getRequestHeaders(url.href)));
    signal.throwIfAborted();
    return new Promise((resolve, reject) => {
      const requestOptions = {
        agent: agents.forUrl(url),
        headers: { ...auth, ...headers, 'User-Agent': 'modelgate' },
        // Aborting destroys the request and its socket, before or after the response arrived.
        signal,
      };
      const req =
        url.protocol === 'https:'
          ? httpsRequest(url, requestOptions, resolve)
          : httpRequest(url, requestOptions, resolve);
      req.once('error', reject);
      req.end();
    });
  }

  /** Object metadata; with a pin, of exactly that generation. */
  async function metadata(location: string, signal: AbortSignal, pin?: string): Promise<ObjectVersion> {
    const { bucket, name } = parseGcsLocation(location);
    const query: Record<string, string> = { fields: 'size,generation' };
    if (pin !== undefined) query.generation = pin;
    let res: IncomingMessage;
    try {
      res = await send(objectUrl(apiEndpoint, bucket, name, query), { Accept: 'application/json' }, signal);
    } catch (error) {
      throw mapTransportError(error, location, signal);
    }
    const status = res.statusCode ?? 0;
    const text = await readText(res, signal, location);
    if (status !== 200) throw await statusError(res, text, location, signal, metadata, pin);
    let parsed: { size?: unknown; generation?: unknown };
    try {
      parsed = JSON.parse(text) as { size?: unknown; generation?: unknown };
    } catch (error) {
      throw new ModelgateError('MG_SOURCE_FAILED', `${location}: metadata is not JSON`, { cause: error });
    }
    const size = typeof parsed.size === 'string' ? Number(parsed.size) : Number.NaN;
    const generation = parsed.generation;
    if (!Number.isSafeInteger(size) || size < 0 || typeof generation !== 'string') {
      throw new ModelgateError('MG_SOURCE_FAILED', `${location}: metadata lacks size or generation`);
    }
    return { size, version: generation };
  }

  return {
    kind: 'gcs',
    timeouts: config.timeouts,

    stat(location: string, signal: AbortSignal): Promise<ObjectVersion> {
      return metadata(location, signal);
    },

    async read(location: string, range: ByteRange, options: ReadOptions): Promise<ReadResult> {
      const { bucket, name } = parseGcsLocation(location);
      const { signal, pin } = options;
      signal.throwIfAborted();
      if (range.end <= range.start) {
        const info = await metadata(location, signal, pin);
        return { stream: Readable.from([]), version: info.version, size: info.size };
      }
      const query: Record<string, string> = { alt: 'media' };
      if (pin !== undefined) query.generation = pin;
      let res: IncomingMessage;
      try {
        res = await send(
          objectUrl(apiEndpoint, bucket, name, query),
          // An explicit first-last range, never a suffix; `gzip` keeps the stored bytes (no transcoding).
          { Range: `bytes=${range.start}-${range.end - 1}`, 'Accept-Encoding': 'gzip' },
          signal,
        );
      } catch (error) {
        throw mapTransportError(error, location, signal);
      }
      const status = res.statusCode ?? 0;
      if (status === 416) {
        res.destroy();
        const info = await metadata(location, signal, pin);
        return { stream: Readable.from([]), version: info.version, size: info.size };
      }
      if (status !== 200 && status !== 206) {
        const text = await readText(res, signal, location).catch(() => '');
        throw await statusError(res, text, location, signal, metadata, pin);
      }
      try {
        const version = headerOf(res, 'x-goog-generation');
        if (version === undefined) {
          throw new ModelgateError(
            'MG_SOURCE_FAILED',
            `${location}: download answered without x-goog-generation`,
          );
        }
        if (pin !== undefined && version !== pin) {
          throw new ModelgateError(
            'MG_SOURCE_CHANGED',
            `${location} changed: expected generation ${pin}, got ${version}`,
          );
        }
        const length = Number(headerOf(res, 'content-length') ?? Number.NaN);
        const answer = checkRangeAnswer(
          status === 206 ? (headerOf(res, 'content-range') ?? '') : undefined,
          Number.isSafeInteger(length) ? length : undefined,
          range,
          location,
        );
        if (answer.empty) {
          res.destroy();
          return { stream: Readable.from([]), version, size: answer.size };
        }
        addAbortSignal(signal, res);
        return { stream: res, version, size: answer.size };
      } catch (error) {
        res.destroy();
        throw error;
      }
    },

    probe(locations: readonly string[], signal: AbortSignal): Promise<void> {
      // List one object name: needs only storage.objects.list (roles/storage.objectViewer), not buckets.get.
      return probeScopes(
        locations,
        (location) => parseGcsLocation(location).bucket,
        async (bucket) => {
          const url = new URL(`${apiEndpoint}/storage/v1/b/${encodeURIComponent(bucket)}/o`);
          url.searchParams.set('maxResults', '1');
          url.searchParams.set('fields', 'kind');
          const res = await send(url, { Accept: 'application/json' }, signal);
          const text = await readText(res, signal, `gs://${bucket}`);
          if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
        },
      );
    },

    async close(): Promise<void> {
      agents.destroy();
    },
  };
}

/** Splits `gs://bucket/object`; the object name keeps its `/`s and is sent percent-encoded. */
export function parseGcsLocation(location: string): { bucket: string; name: string } {
  const match = /^gs:\/\/([^/]+)\/(.+)$/s.exec(location);
  const bucket = match?.[1];
  const name = match?.[2];
  // Bucket naming rules; object names are 1–1024 bytes without CR/LF and are never `.` or `..`.
  if (
    bucket === undefined ||
    name === undefined ||
    !/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(bucket) ||
    /[\r\n]/.test(name) ||
    name === '.' ||
    name === '..' ||
    Buffer.byteLength(name) > 1024
  ) {
    throw new ModelgateError('MG_SOURCE_FAILED', `malformed gs location: ${JSON.stringify(location)}`);
  }
  return { bucket, name };
}

function isLoopbackUrl(endpoint: string): boolean {
  try {
    const host = new URL(endpoint).hostname;
    return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
  } catch {
    return false;
  }
}

function headerOf(res: IncomingMessage, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

async function readText(res: IncomingMessage, signal: AbortSignal, location: string): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > MAX_ERROR_BODY_BYTES) {
        res.destroy();
        break;
      }
      chunks.push(chunk);
    }
  } catch (error) {
    throw mapTransportError(error, location, signal);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The first `reason` of a JSON API error body (`rateLimitExceeded`, `backendError`…), if it is one. */
function errorReasonOf(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: { errors?: Array<{ reason?: unknown }> } };
    const reason = parsed.error?.errors?.[0]?.reason;
    return typeof reason === 'string' ? reason : undefined;
  } catch {
    return undefined;
  }
}

function mapTransportError(error: unknown, location: string, signal: AbortSignal): unknown {
  if (error instanceof ModelgateError) return error;
  if (signal.aborted) return signal.reason;
  const options = { cause: error, details: { location, transient: transientTransport(error) } };
  if (isTimeoutError(error))
    return new ModelgateError('MG_SOURCE_TIMEOUT', `${location}: connect timed out`, options);
  const code = (error as NodeJS.ErrnoException).code;
  return new ModelgateError(
    'MG_SOURCE_FAILED',
    `${location}: expected a response, got ${code ?? (error instanceof Error ? error.message : String(error))}`,
    options,
  );
}
