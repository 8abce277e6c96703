import { Readable } from 'node:stream';
import { HeadBucketCommand, HeadObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { S3StoreConfig } from '../../config/config.types.ts';
import { ModelgateError } from '../../errors.ts';
import {
  acceptRangedAnswer,
  checkEtagPin,
  createStoreAgents,
  disambiguatePinFailure,
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
import { createS3RangedGet, type S3Answer } from './s3-ranged-get.ts';

/**
 * Amazon S3 (and S3-compatible endpoints): `s3://bucket/key`, read with
 * ranged `GetObject`. One `S3Client` per store. The SDK neither retries
 * (`maxAttempts: 1`: the integrity engine retries from chunk boundaries and
 * fails over to mirrors, and stacked retries would multiply latency — with
 * the SDK's default of 3 attempts under the engine's 4, one throttled chunk
 * would cost 12 requests; errors carry a `Transient` verdict instead) nor
 * checksums (`WHEN_REQUIRED`: the engine hashes every byte against the signed
 * manifest, which is stronger).
 *
 * Ranged reads (the data path) go over undici (`s3-ranged-get.ts`), signed
 * with the SDK's SigV4 signer and this client's credentials; HEAD stays on the
 * SDK.
 *
 * The version is the ETag. A pinned read sends `If-Match` and also compares
 * the answered ETag itself, so a server that ignores `If-Match` (s3rver does)
 * still cannot hand back bytes of another version.
 */
export function createS3Store(config: S3StoreConfig): Store {
  const connectTimeoutMs = config.timeouts.connectSeconds * 1000;
  // Keep-alive agents with `maxSockets`; their connect timeout also covers the TLS handshake,
  // which the handler's own `connectionTimeout` (TCP connect only) does not.
  const agents = createStoreAgents({ maxSockets: config.maxSockets, connectTimeoutMs });
  const clientConfig: S3ClientConfig = {
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: new NodeHttpHandler({
      connectionTimeout: connectTimeoutMs,
      httpAgent: agents.http,
      httpsAgent: agents.https,
    }),
  };
  if (config.endpoint !== undefined) clientConfig.endpoint = config.endpoint;
  // Without configured credentials the SDK's default chain applies (env, IRSA / Pod Identity, IMDS).
  if (config.credentials !== undefined) clientConfig.credentials = config.credentials;
  const client = new S3Client(clientConfig);
  const ranged = createS3RangedGet({
    region: config.region,
    endpoint: config.endpoint,
    forcePathStyle: config.forcePathStyle,
    credentials: client.config.credentials,
    maxSockets: config.maxSockets,
    connectTimeoutMs,
  });

  async function head(location: string, signal: AbortSignal, pin?: string): Promise<ObjectVersion> {
    const { bucket, key } = parseS3Location(location);
    try {
      const out = await client.send(
        new HeadObjectCommand({ Bucket: bucket, Key: key, ...(pin === undefined ? {} : { IfMatch: pin }) }),
        { abortSignal: signal },
      );
      const version = out.ETag;
      if (version === undefined || out.ContentLength === undefined) {
        throw new ModelgateError('MG_SOURCE_FAILED', `${location}: HeadObject answered without ETag or size`);
      }
      checkEtagPin(location, pin, version);
      return { size: out.ContentLength, version };
    } catch (error) {
      throw await disambiguatePinFailure(mapS3Error(error, location, signal, pin), pin, () =>
        head(location, signal),
      );
    }
  }

  return {
    kind: 's3',
    timeouts: config.timeouts,

    stat(location: string, signal: AbortSignal): Promise<ObjectVersion> {
      return head(location, signal);
    },

    async read(location: string, range: ByteRange, options: ReadOptions): Promise<ReadResult> {
      const { bucket, key } = parseS3Location(location);
      const { signal, pin } = options;
      signal.throwIfAborted();
      if (range.end <= range.start) {
        const info = await head(location, signal, pin);
        return { stream: Readable.from([]), version: info.version, size: info.size };
      }
      let answer: S3Answer;
      try {
        // Always an explicit first-last range; suffix ranges (`bytes=-n`) are never sent.
        answer = await ranged.get(bucket, key, range.start, range.end, pin, signal);
      } catch (error) {
        throw mapS3Error(error, location, signal, pin);
      }
      const { status, headers, body } = answer;
      if (status === 416) {
        // The range starts at or past the end (or the object is empty): no bytes, the real size.
        body.destroy();
        const info = await head(location, signal, pin);
        return { stream: Readable.from([]), version: info.version, size: info.size };
      }
      if (status !== 200 && status !== 206) {
        const failure = await failureOf(status, body, headerOf(headers, 'retry-after'), location, pin);
        throw await disambiguatePinFailure(failure, pin, () => head(location, signal));
      }
      const length = headerOf(headers, 'content-length');
      return acceptRangedAnswer({
        location,
        operation: 'GetObject',
        body,
        etag: headerOf(headers, 'etag'),
        contentRange: headerOf(headers, 'content-range'),
        contentLength: length === undefined ? undefined : Number(length),
        range,
        pin,
        signal,
      });
    },

    probe(locations: readonly string[], signal: AbortSignal): Promise<void> {
      // HeadBucket needs s3:ListBucket, which a reader of the bucket normally has; it reads no object.
      return probeScopes(
        locations,
        (location) => parseS3Location(location).bucket,
        async (bucket) => {
          await client.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal: signal });
        },
      );
    },

    async close(): Promise<void> {
      client.destroy();
      agents.destroy();
      await ranged.close();
    },
  };
}

/** Splits `s3://bucket/key`; the key keeps its `/`s and is used verbatim. */
export function parseS3Location(location: string): { bucket: string; key: string } {
  const match = /^s3:\/\/([^/]+)\/(.+)$/s.exec(location);
  const bucket = match?.[1];
  const key = match?.[2];
  // Bucket naming rules (3–63 of a-z 0-9 . -); anything else is not a bucket and must not
  // reach the SDK's endpoint resolution (the bucket becomes part of a host name).
  if (bucket === undefined || key === undefined || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ModelgateError('MG_SOURCE_FAILED', `malformed s3 location: ${JSON.stringify(location)}`);
  }
  if (Buffer.byteLength(key) > 1024) {
    throw new ModelgateError('MG_SOURCE_FAILED', `s3 key longer than 1024 bytes: ${location}`);
  }
  return { bucket, key };
}

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** The raw answer's `Retry-After`: the SDK keeps the HTTP response on a service error as `$response`. */
function retryAfterOf(error: unknown): string | undefined {
  const headers = (error as { $response?: { headers?: Record<string, string | undefined> } } | undefined)
    ?.$response?.headers;
  return headers?.['retry-after'] ?? headers?.['Retry-After'];
}

function nameOf(error: unknown): string | undefined {
  return error instanceof Error ? error.name : undefined;
}

function headerOf(headers: S3Answer['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Up to this much of an error answer's body is read to find its `<Code>`. */
const ERROR_BODY_LIMIT = 64 * 1024;

/** The S3 error code (`<Code>SlowDown</Code>`) of an error answer's XML body, reading at most 64 KiB of it. */
async function errorCodeOf(body: Readable): Promise<string | undefined> {
  let text = '';
  try {
    for await (const piece of body as AsyncIterable<Buffer>) {
      text += piece.toString('utf8');
      if (text.length >= ERROR_BODY_LIMIT) break;
    }
  } catch {
    // A broken error body still leaves the status to go by.
  } finally {
    body.destroy();
  }
  return /<Code>([A-Za-z0-9.]{1,64})<\/Code>/.exec(text)?.[1];
}

async function failureOf(
  status: number,
  body: Readable,
  retryAfter: string | undefined,
  location: string,
  pin: string | undefined,
): Promise<ModelgateError> {
  const name = await errorCodeOf(body);
  return answerError({ status, name, retryAfter, location, pin });
}

function mapS3Error(error: unknown, location: string, signal: AbortSignal, pin?: string): unknown {
  if (error instanceof ModelgateError) return error;
  // The caller aborted: hand back its own reason, as the file store does.
  if (signal.aborted) return signal.reason;
  const status = statusOf(error);
  const name = nameOf(error);
  if (status === undefined && isTimeoutError(error)) {
    return new ModelgateError('MG_SOURCE_TIMEOUT', `${location}: connect timed out`, {
      cause: error,
      details: { location, status, name },
    });
  }
  return answerError({ status, name, retryAfter: retryAfterOf(error), location, pin, cause: error });
}

interface FailedAnswer {
  status: number | undefined;
  name: string | undefined;
  retryAfter: string | undefined;
  location: string;
  pin: string | undefined;
  cause?: unknown;
}

/** An S3 failure (an error answer, or a request that got none) as the Store contract's errors. */
function answerError(failed: FailedAnswer): ModelgateError {
  const { status, name, location, pin, cause } = failed;
  const options = { cause, details: { location, status, name } };
  if (status === 404 || name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchBucket') {
    return new ModelgateError('MG_SOURCE_NOT_FOUND', `no such object: ${location}`, options);
  }
  if (status === 412 || name === 'PreconditionFailed') {
    return new ModelgateError(
      'MG_SOURCE_CHANGED',
      `${location} changed: expected ETag ${pin ?? '(none)'}, got a precondition failure`,
      options,
    );
  }
  if (status === undefined && isTimeoutError(cause)) {
    return new ModelgateError('MG_SOURCE_TIMEOUT', `${location}: connect timed out`, options);
  }
  const what = status === undefined ? (name ?? String(cause)) : `HTTP ${status} ${name ?? ''}`.trim();
  const transient =
    status === undefined ? transientTransport(cause) : transientAnswer(status, name, failed.retryAfter);
  return new ModelgateError('MG_SOURCE_FAILED', `${location}: expected the object, got ${what}`, {
    cause,
    details: { ...options.details, transient },
  });
}
