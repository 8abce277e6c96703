/**
 * End to end through the proxy: one release whose files live in S3 (s3rver)
 * with mirrors in GCS (the JSON API test server) and Azure (Azurite), sources
 * ordered `s3://`, `gs://`, `az://`. What SPEC §1–2 promises: mirrors are
 * tried in order when a source fails, and never change which bytes are
 * accepted — a tampered first source fails closed, the good mirrors do not
 * rescue it.
 *
 * Azurite sits behind a pass-through fault proxy so the tests can see
 * whether any byte came from Azure (the proxy counts response bytes); the
 * GCS server keeps its own request log.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type AzuriteEmulator,
  type S3rverEmulator,
  startAzurite,
  startS3rver,
} from '../helpers/emulators.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { type GcsServer, startGcsServer } from '../helpers/gcs-server.ts';
import { rawGet } from '../helpers/http.ts';
import { freePort } from '../helpers/ports.ts';
import { type Harness, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';

const MiB = 1024 * 1024;
const MODEL = 'fraud-detector';
const S3_BUCKET = 'models';
const GCS_BUCKET = 'ml-models-mirror';
const AZURE_CONTAINER = 'models';

interface ReleaseFile {
  path: string;
  bytes: Buffer;
  /** Null: whole-file mode (no chunk digests). */
  chunkSize: number | null;
}

/** A chunk-mode file (1 MiB chunks, the last one short) and a whole-file-mode file. */
function releaseFiles(seed: number): ReleaseFile[] {
  return [
    { path: 'model.safetensors', bytes: randomBytesSeeded(3 * MiB + 12_345, seed), chunkSize: MiB },
    { path: 'tokenizer.bin', bytes: randomBytesSeeded(2 * MiB + 777, seed + 1), chunkSize: null },
  ];
}

const keyOf = (version: string, path: string) => `${MODEL}/${version}/${path}`;

describe('a release in S3 with mirrors in GCS and Azure', () => {
  let s3: S3rverEmulator;
  let gcs: GcsServer;
  let azurite: AzuriteEmulator;
  let azureProxy: FaultProxy;
  /** S3 up. */
  let healthy: Harness;
  /** S3 pointed at a closed port: every S3 read is refused. */
  let s3Down: Harness;

  function storesWith(s3Endpoint: string) {
    return {
      s3: { region: 'us-east-1', endpoint: s3Endpoint, forcePathStyle: true, credentials: s3.credentials },
      gcs: { projectId: 'test-project', apiEndpoint: gcs.url },
      azure: {
        accounts: {
          [azurite.account]: {
            endpoint: `${azureProxy.url}/${azurite.account}`,
            accountKey: azurite.accountKey,
          },
        },
      },
    };
  }

  before(async () => {
    [s3, gcs, azurite] = await Promise.all([
      startS3rver({ buckets: [S3_BUCKET] }),
      startGcsServer(),
      startAzurite(),
    ]);
    azureProxy = await startFaultProxy({ port: azurite.port });
    // No chunk cache: every request really reads its sources.
    const transfer = { chunkCacheBytes: 0, retries: 2, retryBackoffMs: 10 };
    healthy = await startHarness({ config: { stores: storesWith(s3.endpoint), transfer } });
    s3Down = await startHarness({
      config: { stores: storesWith(`http://127.0.0.1:${await freePort()}`), transfer },
    });
  });

  after(async () => {
    await healthy?.stop();
    await s3Down?.stop();
    await azureProxy?.close();
    await Promise.all([s3?.stop(), gcs?.close(), azurite?.stop()]);
  });

  /** Puts every file in all three stores (the same bytes everywhere). */
  async function upload(version: string, files: ReleaseFile[]) {
    for (const file of files) {
      const key = keyOf(version, file.path);
      gcs.putObject(GCS_BUCKET, key, file.bytes);
      await Promise.all([
        s3.putObject(S3_BUCKET, key, file.bytes),
        azurite.putObject(AZURE_CONTAINER, key, file.bytes),
      ]);
    }
  }

  /** Signs the release into a harness's catalog; returns each file's URL path. */
  async function publish(h: Harness, version: string, files: ReleaseFile[]) {
    const { digest } = await h.addRelease({
      model: MODEL,
      version,
      files: files.map((file) => {
        const key = keyOf(version, file.path);
        return {
          path: file.path,
          bytes: file.bytes,
          chunkSize: file.chunkSize,
          sources: [
            `s3://${S3_BUCKET}/${key}`,
            `gs://${GCS_BUCKET}/${key}`,
            `az://${azurite.account}/${AZURE_CONTAINER}/${key}`,
          ],
        };
      }),
    });
    return new Map(
      files.map((file) => [file.path, `/v1/models/${MODEL}/releases/${digest}/files/${file.path}`]),
    );
  }

  async function get(h: Harness, path: string) {
    return rawGet(`${h.url}${path}`, { authorization: `Bearer ${await h.token()}` });
  }

  const gcsMediaRequests = () => gcs.requests().filter((r) => r.url.includes('alt=media'));
  const azureBytes = () => azureProxy.connections().reduce((sum, c) => sum + c.bytesDown, 0);

  /** `modelgate_source_requests_total` per store and outcome. */
  async function sourceCounts(h: Harness) {
    const counts: Record<string, number> = {};
    for (const store of ['s3', 'gcs', 'azure']) {
      for (const outcome of ['ok', 'error']) {
        counts[`${store}/${outcome}`] = await h.metric('modelgate_source_requests_total', { store, outcome });
      }
    }
    return counts;
  }

  /** The audit line of the last retrieval of this file. */
  function lastRetrieval(h: Harness, path: string) {
    return h.logs.findLast((line) => line.event === 'retrieval' && line.file === path);
  }

  describe('when every store is up', () => {
    it('serves both files from S3, the first source, and never touches the mirrors', async () => {
      const files = releaseFiles(101);
      await upload('1.0.0', files);
      const paths = await publish(healthy, '1.0.0', files);
      gcs.clearRequests();
      const azureBefore = azureBytes();
      const before = await sourceCounts(healthy);

      for (const file of files) {
        const res = await get(healthy, paths.get(file.path)!);
        assert.equal(res.status, 200, file.path);
        assert.equal(res.complete, true, file.path);
        assert.ok(res.body.equals(file.bytes), `${file.path}: the bytes differ from the original`);
        assert.equal(lastRetrieval(healthy, file.path)?.store, 's3');
      }

      const now = await sourceCounts(healthy);
      // Four chunk reads (3 MiB + a short chunk) and one whole-file read.
      assert.ok(now['s3/ok']! - before['s3/ok']! >= 5, `s3 ok reads: ${now['s3/ok']! - before['s3/ok']!}`);
      assert.equal(now['s3/error'], before['s3/error']);
      assert.equal(now['gcs/ok'], before['gcs/ok']);
      assert.equal(now['azure/ok'], before['azure/ok']);
      assert.equal(gcs.requests().length, 0);
      assert.equal(azureBytes(), azureBefore);
    });
  });

  describe('when S3 refuses connections', () => {
    it('serves the same download from GCS, the second source', async () => {
      const files = releaseFiles(201);
      await upload('2.0.0', files);
      const paths = await publish(s3Down, '2.0.0', files);
      gcs.clearRequests();
      const azureBefore = azureBytes();
      const before = await sourceCounts(s3Down);

      for (const file of files) {
        const res = await get(s3Down, paths.get(file.path)!);
        assert.equal(res.status, 200, file.path);
        assert.equal(res.complete, true, file.path);
        assert.ok(res.body.equals(file.bytes), `${file.path}: the bytes differ from the original`);
        assert.equal(lastRetrieval(s3Down, file.path)?.store, 'gcs');
      }

      const now = await sourceCounts(s3Down);
      assert.ok(now['s3/error']! > before['s3/error']!, 'the refused S3 reads are counted');
      assert.equal(now['s3/ok'], before['s3/ok']);
      assert.ok(
        now['gcs/ok']! - before['gcs/ok']! >= 5,
        `gcs ok reads: ${now['gcs/ok']! - before['gcs/ok']!}`,
      );
      assert.equal(now['azure/ok'], before['azure/ok']);
      const media = gcsMediaRequests();
      assert.ok(media.length >= 5, `GCS media requests: ${media.length}`);
      assert.ok(
        media.every((r) => r.status === 206),
        'every GCS media request answered a range',
      );
      assert.equal(azureBytes(), azureBefore);
    });

    describe('and GCS answers 503 to every request', () => {
      it('serves the same download from Azure, the third source', async () => {
        const files = releaseFiles(301);
        await upload('3.0.0', files);
        const paths = await publish(s3Down, '3.0.0', files);
        gcs.clearRequests();
        const azureBefore = azureBytes();
        const before = await sourceCounts(s3Down);
        gcs.failNext(1000);
        try {
          for (const file of files) {
            const res = await get(s3Down, paths.get(file.path)!);
            assert.equal(res.status, 200, file.path);
            assert.equal(res.complete, true, file.path);
            assert.ok(res.body.equals(file.bytes), `${file.path}: the bytes differ from the original`);
            assert.equal(lastRetrieval(s3Down, file.path)?.store, 'azure');
          }
        } finally {
          gcs.failNext(0);
        }

        const now = await sourceCounts(s3Down);
        assert.ok(now['s3/error']! > before['s3/error']!);
        assert.ok(now['gcs/error']! > before['gcs/error']!, 'the failed GCS reads are counted');
        assert.equal(now['gcs/ok'], before['gcs/ok']);
        assert.ok(
          now['azure/ok']! - before['azure/ok']! >= 5,
          `azure ok reads: ${now['azure/ok']! - before['azure/ok']!}`,
        );
        assert.ok(gcs.requests().length > 0, 'GCS was asked');
        assert.ok(
          gcs.requests().every((r) => r.status === 503),
          'GCS served nothing but the injected 503s',
        );
        const total = files.reduce((sum, f) => sum + f.bytes.length, 0);
        assert.ok(azureBytes() - azureBefore >= total, 'every byte came through Azure');
      });
    });
  });

  describe('when the S3 copy has one byte flipped and the mirrors hold good copies', () => {
    /** Uploads good copies everywhere, then overwrites the S3 copy of one file with `tampered`. */
    async function tamperedRelease(version: string, seed: number, path: string, flipAt: number) {
      const files = releaseFiles(seed);
      await upload(version, files);
      const file = files.find((f) => f.path === path)!;
      const tampered = Buffer.from(file.bytes);
      tampered[flipAt]! ^= 0x01;
      await s3.putObject(S3_BUCKET, keyOf(version, path), tampered);
      const paths = await publish(healthy, version, files);
      return { file, path: paths.get(path)! };
    }

    async function observe(run: () => Promise<void>) {
      gcs.clearRequests();
      const azureBefore = azureBytes();
      const mismatches = await healthy.metric('modelgate_digest_mismatches_total', { store: 's3' });
      const failures = await healthy.metric('modelgate_requests_total', {
        route: 'file',
        outcome: 'integrity_failure',
      });
      await run();
      // No mirror rescue: not one request to GCS, not one byte from Azure.
      assert.deepEqual(gcsMediaRequests(), []);
      assert.equal(azureBytes(), azureBefore);
      assert.equal(
        await healthy.metric('modelgate_digest_mismatches_total', { store: 's3' }),
        mismatches + 1,
      );
      assert.equal(
        (await healthy.metric('modelgate_digest_mismatches_total', { store: 'gcs' })) +
          (await healthy.metric('modelgate_digest_mismatches_total', { store: 'azure' })),
        0,
      );
      assert.equal(
        await healthy.metric('modelgate_requests_total', { route: 'file', outcome: 'integrity_failure' }),
        failures + 1,
      );
    }

    describe('in chunk 0', () => {
      it('answers 502 MG_DIGEST_MISMATCH before headers', async () => {
        const { path } = await tamperedRelease('4.0.0', 401, 'model.safetensors', 1000);
        await observe(async () => {
          const res = await healthy.request(path);
          assert.equal(res.status, 502);
          const body = (await res.json()) as { error: { code: string } };
          assert.equal(body.error.code, 'MG_DIGEST_MISMATCH');
        });
        assert.equal(lastRetrieval(healthy, 'model.safetensors')?.code, 'MG_DIGEST_MISMATCH');
      });
    });

    describe('in chunk 2', () => {
      it('sends the verified chunks 0 and 1, then breaks the body', async () => {
        const { file, path } = await tamperedRelease('5.0.0', 501, 'model.safetensors', 2 * MiB + 4321);
        await observe(async () => {
          const res = await get(healthy, path);
          assert.equal(res.status, 200);
          assert.equal(res.complete, false);
          assert.equal(res.body.length, 2 * MiB);
          assert.ok(res.body.equals(file.bytes.subarray(0, 2 * MiB)));
        });
      });
    });

    describe('in a whole-file-mode file', () => {
      it('never delivers the complete body', async () => {
        const { file, path } = await tamperedRelease('6.0.0', 601, 'tokenizer.bin', MiB + 99);
        await observe(async () => {
          const res = await get(healthy, path);
          // The mismatch shows only at the end, long after the headers: the body must break. (Whole-file
          // mode streams before it can verify, holding back only the final bytes, so the prefix the
          // client got may hold the flipped byte; only a complete body would mean "verified".)
          assert.equal(res.status, 200);
          assert.equal(res.complete, false);
          assert.ok(res.body.length < file.bytes.length, `got ${res.body.length} of ${file.bytes.length}`);
        });
      });
    });
  });
});
