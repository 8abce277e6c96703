/**
 * The S3 data path signs its own ranged GETs (SigV4 with the SDK's signer,
 * sent over undici). s3rver does not check signatures, so this origin does:
 * it recomputes each request's signature from the bytes that arrived on the
 * wire — the path as sent, the headers the request says it signed — with an
 * implementation of AWS's published algorithm written here, independent of
 * the SDK, and answers 403 SignatureDoesNotMatch when they differ. A
 * mismatch between what the store signs and what undici sends (path
 * encoding, a header added after signing, the host) fails here, as it would
 * against real S3.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ModelgateError } from '../../src/errors.ts';
import { createS3Store } from '../../src/stores/s3/s3-store.ts';
import { code, collect } from './conformance.ts';

const SECRET = 'test-secret-key';
const ACCESS_KEY = 'AKIDTEST';
const REGION = 'eu-west-1';
const BODY = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz');
const timeouts = { connectSeconds: 2, firstByteSeconds: 5, idleSeconds: 5 };

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();

/** AWS SigV4 (docs.aws.amazon.com, "Create a signed AWS API request"), for an S3 GET without a query. */
function expectedAuthorization(req: IncomingMessage, secret: string): string | undefined {
  const auth = req.headers.authorization ?? '';
  const match =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, SignedHeaders=([^,]+), Signature=[0-9a-f]{64}$/.exec(
      auth,
    );
  if (match === null) return undefined;
  const [, accessKey, day, region, signedHeaders] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
  ];
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const names = signedHeaders.split(';');
  // S3 canonical URI: the path exactly as sent (already URI-encoded once, not normalized).
  const canonicalHeaders = names
    .map((name) => `${name}:${String(req.headers[name] ?? '').trim()}\n`)
    .join('');
  const canonicalRequest = [
    req.method,
    req.url ?? '',
    '',
    canonicalHeaders,
    signedHeaders,
    String(req.headers['x-amz-content-sha256'] ?? ''),
  ].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', key).update(stringToSign).digest('hex');
  return `AWS4-HMAC-SHA256 Credential=${accessKey}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
}

describe('when the S3 store sends a signed ranged GET to an origin that checks SigV4', () => {
  let server: Server;
  let endpoint: string;
  const seen: Array<{ url: string; signedHeaders: string; token: string | undefined }> = [];

  before(async () => {
    server = createServer((req, res) => {
      const auth = req.headers.authorization ?? '';
      seen.push({
        url: req.url ?? '',
        signedHeaders: /SignedHeaders=([^,]+)/.exec(auth)?.[1] ?? '',
        token: req.headers['x-amz-security-token'] as string | undefined,
      });
      if (
        expectedAuthorization(req, SECRET) !== auth ||
        !auth.includes('SignedHeaders=') ||
        !/range/.test(auth)
      ) {
        res.writeHead(403, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code></Error>');
        return;
      }
      const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
      const start = Number(range?.[1] ?? 0);
      const last = Math.min(Number(range?.[2] ?? BODY.length - 1), BODY.length - 1);
      res.writeHead(206, {
        etag: '"v1"',
        'content-range': `bytes ${start}-${last}/${BODY.length}`,
        'content-length': last - start + 1,
      });
      res.end(BODY.subarray(start, last + 1));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('signs the path as sent, the host and the range, for keys with spaces, unicode and reserved characters', async () => {
    const store = createS3Store({
      region: REGION,
      endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET },
      maxSockets: 4,
      timeouts,
    });
    try {
      for (const key of ['plain.bin', 'dir/sub dir/model (v2)*.bin', "modèles/ü+ñ!$&'=;,@.bin"]) {
        const { stream } = await store.read(
          `s3://models/${key}`,
          { start: 3, end: 13 },
          { signal: AbortSignal.timeout(5000) },
        );
        assert.deepEqual(await collect(stream), BODY.subarray(3, 13), key);
      }
      for (const { signedHeaders } of seen) {
        assert.ok(
          signedHeaders.split(';').includes('host') && signedHeaders.split(';').includes('range'),
          signedHeaders,
        );
      }
      assert.ok(
        seen.some(({ url }) => url.includes('%20') && url.includes('%28')),
        'reserved characters were encoded',
      );
    } finally {
      await store.close();
    }
  });

  it('signs the session token of temporary credentials (IRSA, Pod Identity) and sends it', async () => {
    const store = createS3Store({
      region: REGION,
      endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET, sessionToken: 'session-token-1' },
      maxSockets: 4,
      timeouts,
    });
    try {
      seen.length = 0;
      const { stream } = await store.read(
        's3://models/a.bin',
        { start: 0, end: 4 },
        { signal: AbortSignal.timeout(5000) },
      );
      assert.deepEqual(await collect(stream), BODY.subarray(0, 4));
      assert.equal(seen[0]?.token, 'session-token-1');
      assert.ok(seen[0]?.signedHeaders.split(';').includes('x-amz-security-token'));
    } finally {
      await store.close();
    }
  });

  it('fails MG_SOURCE_FAILED, not transient, when the origin rejects the signature', async () => {
    const store = createS3Store({
      region: REGION,
      endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: 'wrong-secret' },
      maxSockets: 4,
      timeouts,
    });
    try {
      const reading = store.read(
        's3://models/a.bin',
        { start: 0, end: 4 },
        { signal: AbortSignal.timeout(5000) },
      );
      await assert.rejects(reading, code('MG_SOURCE_FAILED'));
      const error = await reading.then(
        () => undefined,
        (e: unknown) => e as ModelgateError,
      );
      assert.match(String(error?.message), /403 SignatureDoesNotMatch/);
      assert.equal(error?.details.transient, undefined);
    } finally {
      await store.close();
    }
  });
});
