/**
 * The S3 store against s3rver (a real S3 API server, in process), reached
 * through a fault proxy so the suite can watch the store's sockets.
 *
 * s3rver quirks, and how the cases stay covered:
 * - It ignores `If-Match`: a pinned GetObject of an overwritten key answers
 *   200 with the new bytes. The store compares the answered ETag with the pin
 *   itself, so the conformance case "overwritten between two reads" still
 *   fails with MG_SOURCE_CHANGED; the test below proves s3rver ignores the
 *   header, so that case really exercises the store's own comparison.
 * - It mishandles suffix ranges (`bytes=-n`): the store never sends them.
 * - A ranged read of an empty object answers `206`, `Content-Range: bytes
 *   0-0/0`, `Content-Length: 1` and then no body (real S3 answers 416). The
 *   store reads a total at or below the range start as "no bytes" and drops
 *   the body, so the conformance case "when an object is empty" passes here.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { S3StoreConfig } from '../../src/config/config.types.ts';
import { createS3Store, parseS3Location } from '../../src/stores/s3/s3-store.ts';
import type { Store } from '../../src/stores/store.ts';
import { type S3rverEmulator, startS3rver } from '../helpers/emulators.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { code, collect, runStoreConformance } from './conformance.ts';

const timeouts = { connectSeconds: 2, firstByteSeconds: 5, idleSeconds: 5 };
const BUCKET = 'models';

function storeConfig(s3: S3rverEmulator, endpoint: string): S3StoreConfig {
  return {
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: s3.credentials,
    maxSockets: 16,
    timeouts,
  };
}

runStoreConformance('s3 (s3rver)', async () => {
  const s3 = await startS3rver({ buckets: [BUCKET] });
  const proxy = await startFaultProxy({ port: s3.port });
  const store = createS3Store(storeConfig(s3, proxy.url));
  const keyOf = (location: string) => parseS3Location(location).key;
  return {
    store,
    proxy,
    async put(key, bytes) {
      await s3.putObject(BUCKET, key, bytes);
      return `s3://${BUCKET}/${key}`;
    },
    overwrite: async (location, bytes) => {
      await s3.putObject(BUCKET, keyOf(location), bytes);
    },
    remove: (location) => s3.deleteObject(BUCKET, keyOf(location)),
    async teardown() {
      await store.close();
      await proxy.close();
      await s3.stop();
    },
    malformedLocations: [
      's3://',
      's3://models',
      's3://models/',
      's3:///key',
      's3://Bad_Bucket/key',
      'gs://models/key',
    ],
  };
});

describe('when s3rver is asked for a pinned version of an overwritten key', () => {
  let s3: S3rverEmulator;
  let store: Store;
  let proxy: FaultProxy;
  before(async () => {
    s3 = await startS3rver({ buckets: [BUCKET] });
    proxy = await startFaultProxy({ port: s3.port });
    store = createS3Store(storeConfig(s3, proxy.url));
  });
  after(async () => {
    await store.close();
    await proxy.close();
    await s3.stop();
  });

  it('ignores If-Match itself, and the store still fails with MG_SOURCE_CHANGED', async () => {
    const oldEtag = await s3.putObject(BUCKET, 'pinned/model.bin', randomBytes(1000));
    const replacement = randomBytes(1000);
    const newEtag = await s3.putObject(BUCKET, 'pinned/model.bin', replacement);
    assert.notEqual(newEtag, oldEtag);

    // The quirk: a raw GetObject with a stale If-Match succeeds on s3rver (real S3 answers 412).
    const raw = new S3Client({
      region: 'us-east-1',
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: s3.credentials,
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    try {
      const out = await raw.send(
        new GetObjectCommand({ Bucket: BUCKET, Key: 'pinned/model.bin', IfMatch: oldEtag }),
      );
      assert.equal(out.ETag, newEtag);
      assert.deepEqual(Buffer.from(await out.Body!.transformToByteArray()), replacement);
    } finally {
      raw.destroy();
    }

    await assert.rejects(
      store.read(
        `s3://${BUCKET}/pinned/model.bin`,
        { start: 0, end: 1000 },
        { signal: AbortSignal.timeout(5000), pin: oldEtag },
      ),
      code('MG_SOURCE_CHANGED'),
    );
  });

  it('reads keys with slashes, spaces and non-ASCII characters verbatim', async () => {
    const bytes = randomBytes(2048);
    const key = 'models/fraud detector/2026.11.3/modèle+v1.safetensors';
    await s3.putObject(BUCKET, key, bytes);
    const result = await store.read(
      `s3://${BUCKET}/${key}`,
      { start: 0, end: 2048 },
      { signal: AbortSignal.timeout(5000) },
    );
    assert.deepEqual(await collect(result.stream), bytes);
  });
});
