import { createHash, createHmac } from 'node:crypto';
import type { Readable } from 'node:stream';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, Checksum, Provider, SourceData } from '@smithy/types';
import { Agent } from 'undici';

/**
 * The S3 data path: ranged `GET`s over undici instead of the SDK's node:http
 * handler. Measured (bench/README.md "S3 store read path"): node:http parses
 * 64 KiB socket reads and allocates a Buffer for each, and its garbage took
 * about 20 % of the process; undici's parser and body stream move the same
 * bytes for less. The SDK keeps what it is good at: the credentials come from
 * the S3 client's own provider (so the default chain — env, IRSA / Pod
 * Identity, IMDS — and its refresh keep working) and requests are signed by
 * the SDK's SigV4 signer. HEAD stays on the SDK (`s3-store.ts`).
 */

/** SHA-256 of the empty body: a GET signs it as its payload hash. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** Body bytes undici buffers ahead of the reader (its default is 64 KiB). */
const BODY_HIGH_WATER_MARK = 1024 * 1024;

/** node:crypto behind the signer's Checksum interface (plain hash, or HMAC with a secret). */
class NodeSha256 implements Checksum {
  readonly #secret: SourceData | undefined;
  #hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;

  constructor(secret?: SourceData) {
    this.#secret = secret;
    this.#hash = NodeSha256.#start(secret);
  }

  static #start(secret: SourceData | undefined) {
    if (secret === undefined) return createHash('sha256');
    return createHmac('sha256', typeof secret === 'string' ? secret : Buffer.from(secret as Uint8Array));
  }

  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
  }

  async digest(): Promise<Uint8Array> {
    return this.#hash.digest();
  }

  reset(): void {
    this.#hash = NodeSha256.#start(this.#secret);
  }
}

export interface S3RangedGetOptions {
  region: string;
  endpoint: string | undefined;
  forcePathStyle: boolean;
  credentials: AwsCredentialIdentity | Provider<AwsCredentialIdentity>;
  maxSockets: number;
  connectTimeoutMs: number;
}

export interface S3Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/** Each character of a key segment as S3's canonical URI wants it (the SDK's `extendedEncodeURIComponent`). */
function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** The object's URL the way the SDK resolves it for these settings: path-style, or the bucket in the host name. */
export function objectUrl(options: S3RangedGetOptions, bucket: string, key: string): URL {
  const path = key.split('/').map(encodeSegment).join('/');
  const base = new URL(options.endpoint ?? `https://s3.${options.region}.amazonaws.com`);
  const basePath = base.pathname.replace(/\/$/, '');
  // Dotted bucket names break TLS host names: the SDK falls back to path style for them too.
  if (options.forcePathStyle || (bucket.includes('.') && base.protocol === 'https:')) {
    return new URL(`${base.protocol}//${base.host}${basePath}/${bucket}/${path}`);
  }
  return new URL(`${base.protocol}//${bucket}.${base.host}${basePath}/${path}`);
}

const ignore = () => {};

export function createS3RangedGet(options: S3RangedGetOptions) {
  const agent = new Agent({
    connections: options.maxSockets,
    connect: { timeout: options.connectTimeoutMs },
    // The integrity engine's watchdog owns first-byte and idle timeouts (it aborts the signal).
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 30_000,
  });
  const signer = new SignatureV4({
    service: 's3',
    region: options.region,
    credentials: options.credentials,
    sha256: NodeSha256,
    uriEscapePath: false,
    applyChecksum: false,
  });

  /** A signed ranged GET of `[start, end)`, optionally pinned with `If-Match`; the answer as it came. */
  async function get(
    bucket: string,
    key: string,
    start: number,
    end: number,
    pin: string | undefined,
    signal: AbortSignal,
  ): Promise<S3Answer> {
    const url = objectUrl(options, bucket, key);
    const headers: Record<string, string> = {
      host: url.host,
      range: `bytes=${start}-${end - 1}`,
      'x-amz-content-sha256': EMPTY_SHA256,
    };
    if (pin !== undefined) headers['if-match'] = pin;
    const signed = await signer.sign({
      method: 'GET',
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port === '' ? {} : { port: Number(url.port) }),
      path: url.pathname,
      query: {},
      headers,
    });
    const answer = await agent.request({
      origin: url.origin,
      path: url.pathname,
      method: 'GET',
      headers: signed.headers,
      signal,
      highWaterMark: BODY_HIGH_WATER_MARK,
    });
    // undici's body emits an AbortError when destroyed without an error (the engine destroys a stream
    // it stops reading); readers attach their own listeners, this one only keeps that from being uncaught.
    answer.body.on('error', ignore);
    return { status: answer.statusCode, headers: answer.headers, body: answer.body };
  }

  return {
    get,
    close: () => agent.destroy(),
  };
}
