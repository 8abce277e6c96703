import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import type { FileResult, RetryEvent } from '../../src/fetch/download-file.ts';
import { type FetchError, isFetchError } from '../../src/fetch/fetch-error.ts';
import { type FetchOptions, fetchRelease, type ReleaseRecord } from '../../src/fetch/fetch-release.ts';
import type { FetchReporter } from '../../src/fetch/progress.ts';
import { fileTokenSource, staticTokenSource } from '../../src/fetch/token-source.ts';
import { type FakeProxy, type FakeRelease, fakeManifest, seededBytes, startFakeProxy } from './fake-proxy.ts';

const MiB = 1024 * 1024;

const release: FakeRelease = {
  model: 'team/fraud-detector',
  version: '2026.11.3',
  files: [
    { path: 'model.safetensors', bytes: seededBytes(5 * MiB + 12345, 1), chunkSize: MiB },
    { path: 'config/tokenizer.json', bytes: seededBytes(300_000, 2), chunkSize: null },
    { path: 'empty.txt', bytes: Buffer.alloc(0), chunkSize: MiB },
  ],
};
const big = release.files[0]!;
const whole = release.files[1]!;

function collector() {
  const files: FileResult[] = [];
  const retries: RetryEvent[] = [];
  const counts = { progress: 0, received: 0 };
  const reporter: FetchReporter = {
    release() {},
    progress(delta) {
      counts.progress += delta;
    },
    received(bytes) {
      counts.received += bytes;
    },
    retry: (event) => retries.push(event),
    file: (result) => files.push(result),
    done() {},
    close() {},
  };
  return { files, retries, reporter, counts };
}

async function expectFailure(promise: Promise<unknown>): Promise<FetchError> {
  try {
    await promise;
  } catch (error) {
    if (isFetchError(error)) return error;
    throw error;
  }
  assert.fail('expected the fetch to fail');
}

describe('fetchRelease against a small HTTP server', () => {
  let proxy: FakeProxy;
  let work: string;
  let dest: string;
  let events: ReturnType<typeof collector>;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'modelgate-fetch-'));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });
  beforeEach(async () => {
    proxy = await startFakeProxy(release);
    dest = await mkdtemp(join(work, 'dest-'));
    events = collector();
  });
  afterEach(async () => {
    await proxy.close();
  });

  function options(overrides: Partial<FetchOptions> = {}): FetchOptions {
    return {
      proxy: new URL(proxy.url),
      model: release.model,
      release: release.version,
      dest,
      tokens: staticTokenSource('good-token', 'test'),
      concurrency: 2,
      retries: 3,
      retryBaseMs: 5,
      reporter: events.reporter,
      ...overrides,
    };
  }

  const fileRequests = (path: string) => proxy.log.filter((r) => r.route === 'file' && r.path === path);

  async function assertBytes(file: { path: string; bytes: Buffer }) {
    assert.ok((await readFile(join(dest, file.path))).equals(file.bytes), `${file.path} differs`);
  }

  describe('when nothing goes wrong', () => {
    it('writes every file, the release record, and no temporary folder', async () => {
      const summary = await fetchRelease(options());
      for (const file of release.files) await assertBytes(file);
      const record = JSON.parse(
        await readFile(join(dest, '.modelgate-release.json'), 'utf8'),
      ) as ReleaseRecord;
      assert.equal(record.releaseDigest, proxy.releaseDigest);
      assert.equal(record.model, release.model);
      assert.equal(record.version, release.version);
      assert.equal(record.environment, 'prod');
      assert.deepEqual(
        record.files.map((f) => f.path),
        release.files.map((f) => f.path),
      );
      assert.equal(summary.downloaded, 3);
      assert.deepEqual((await readdir(dest)).sort(), [
        '.modelgate-release.json',
        'config',
        'empty.txt',
        'model.safetensors',
      ]);
    });

    it('requests files by release digest even when asked by version', async () => {
      await fetchRelease(options());
      const files = proxy.log.filter((r) => r.route === 'file');
      assert.equal(files.length, 3);
      assert.ok(files.every((r) => r.ref === proxy.releaseDigest));
      assert.equal(proxy.log.find((r) => r.route === 'manifest')?.ref, release.version);
    });

    it('downloads nothing on a second run and reports every file as present', async () => {
      await fetchRelease(options());
      const before = proxy.log.length;
      const second = collector();
      const summary = await fetchRelease(options({ reporter: second.reporter }));
      assert.equal(proxy.log.filter((r) => r.route === 'file').length, before - 1);
      assert.deepEqual(
        second.files.map((f) => f.status),
        ['present', 'present', 'present'],
      );
      assert.equal(summary.transferred, 0);
    });
  });

  describe('when the connection breaks in the middle of a chunked file', () => {
    it('resumes with a Range from the last verified chunk instead of starting over', async () => {
      proxy.queue(big.path, { cutAfterBytes: 2 * MiB + 500 });
      await fetchRelease(options());
      await assertBytes(big);
      const requests = fileRequests(big.path);
      assert.equal(requests.length, 2);
      assert.equal(requests[0]!.range, undefined);
      assert.equal(requests[1]!.range, `bytes=${2 * MiB}-`);
      assert.equal(requests[1]!.status, 206);
      const result = events.files.find((f) => f.path === big.path)!;
      assert.equal(result.resumedFrom, 2 * MiB);
      assert.equal(events.retries[0]?.code, 'FETCH_NETWORK');
    });

    it('keeps resuming as long as each attempt makes progress', async () => {
      proxy.queue(
        big.path,
        { cutAfterBytes: MiB + 1 },
        { cutAfterBytes: MiB + 1 },
        { cutAfterBytes: MiB + 1 },
        { cutAfterBytes: MiB + 1 },
      );
      await fetchRelease(options({ retries: 1 }));
      await assertBytes(big);
      assert.deepEqual(
        fileRequests(big.path).map((r) => r.range),
        [undefined, `bytes=${MiB}-`, `bytes=${2 * MiB}-`, `bytes=${3 * MiB}-`, `bytes=${4 * MiB}-`],
      );
    });
  });

  describe('when the connection breaks in the middle of a whole-file-mode file', () => {
    it('downloads that file again from byte 0', async () => {
      proxy.queue(whole.path, { cutAfterBytes: 200_000 });
      await fetchRelease(options());
      await assertBytes(whole);
      assert.deepEqual(
        fileRequests(whole.path).map((r) => [r.range, r.status]),
        [
          [undefined, 200],
          [undefined, 200],
        ],
      );
    });
  });

  describe('when an earlier fetch process was killed and left a partial file', () => {
    it('re-verifies the partial file and asks only for the missing chunks', async () => {
      const partial = join(dest, '.modelgate-tmp', `${big.path}.partial`);
      await mkdir(join(dest, '.modelgate-tmp'), { recursive: true });
      await writeFile(partial, big.bytes.subarray(0, 3 * MiB + 777));
      await fetchRelease(options());
      await assertBytes(big);
      assert.deepEqual(
        fileRequests(big.path).map((r) => r.range),
        [`bytes=${3 * MiB}-`],
      );
      assert.equal(events.files.find((f) => f.path === big.path)?.resumedFrom, 3 * MiB);
      await assert.rejects(stat(join(dest, '.modelgate-tmp')), { code: 'ENOENT' });
    });

    // Regression: resumed bytes were counted like received ones, so the rate (and ETA) of a resumed fetch was inflated.
    it('reports the resumed bytes as progress but only the missing bytes as received', async () => {
      const partial = join(dest, '.modelgate-tmp', `${big.path}.partial`);
      await mkdir(join(dest, '.modelgate-tmp'), { recursive: true });
      await writeFile(partial, big.bytes.subarray(0, 3 * MiB + 777));
      await fetchRelease(options());
      const total = release.files.reduce((sum, f) => sum + f.bytes.length, 0);
      assert.equal(events.counts.progress, total);
      assert.equal(events.counts.received, total - 3 * MiB);
    });

    it('keeps only the chunks before the first one that does not verify', async () => {
      const partial = join(dest, '.modelgate-tmp', `${big.path}.partial`);
      await mkdir(join(dest, '.modelgate-tmp'), { recursive: true });
      const damaged = Buffer.from(big.bytes.subarray(0, 4 * MiB));
      damaged[2 * MiB + 10]! ^= 1;
      await writeFile(partial, damaged);
      await fetchRelease(options());
      await assertBytes(big);
      assert.deepEqual(
        fileRequests(big.path).map((r) => r.range),
        [`bytes=${2 * MiB}-`],
      );
    });

    it('finishes a partial file that already holds every byte without asking for it', async () => {
      const partial = join(dest, '.modelgate-tmp', `${big.path}.partial`);
      await mkdir(join(dest, '.modelgate-tmp'), { recursive: true });
      await writeFile(partial, big.bytes);
      await fetchRelease(options());
      await assertBytes(big);
      assert.equal(fileRequests(big.path).length, 0);
    });
  });

  describe('when the proxy answers a Range request for a chunked file with the whole body', () => {
    it('starts the file over from byte 0', async () => {
      await mkdir(join(dest, '.modelgate-tmp'), { recursive: true });
      await writeFile(join(dest, '.modelgate-tmp', `${big.path}.partial`), big.bytes.subarray(0, 2 * MiB));
      proxy.queue(big.path, { ignoreRange: true });
      await fetchRelease(options());
      await assertBytes(big);
      assert.deepEqual(
        fileRequests(big.path).map((r) => [r.range, r.status]),
        [[`bytes=${2 * MiB}-`, 200]],
      );
      assert.equal(events.files.find((f) => f.path === big.path)?.resumedFrom, 0);
    });
  });

  describe('when a file in DEST has the right name but the wrong bytes', () => {
    it('downloads it again and replaces it', async () => {
      await writeFile(join(dest, big.path), seededBytes(big.bytes.length, 99));
      await fetchRelease(options());
      await assertBytes(big);
      assert.equal(events.files.find((f) => f.path === big.path)?.status, 'downloaded');
    });
  });

  describe('when the bytes do not match the manifest', () => {
    it('retries once after a corrupted chunk and succeeds when the next answer is right', async () => {
      proxy.queue(big.path, { corruptAt: 3 * MiB + 5 });
      await fetchRelease(options());
      await assertBytes(big);
      assert.equal(events.retries[0]?.code, 'FETCH_CHUNK_MISMATCH');
      assert.deepEqual(
        fileRequests(big.path).map((r) => r.range),
        [undefined, undefined],
      );
    });

    it('fails with an integrity error on the second mismatch and leaves no file behind', async () => {
      proxy.queue(big.path, { corruptAt: 3 * MiB + 5 }, { corruptAt: 5 });
      const error = await expectFailure(fetchRelease(options({ concurrency: 1 })));
      assert.equal(error.kind, 'integrity');
      assert.equal(error.code, 'FETCH_CHUNK_MISMATCH');
      await assert.rejects(stat(join(dest, big.path)), { code: 'ENOENT' });
      await assert.rejects(stat(join(dest, '.modelgate-tmp', `${big.path}.partial`)), { code: 'ENOENT' });
      await assert.rejects(stat(join(dest, '.modelgate-release.json')), { code: 'ENOENT' });
    });

    it('checks the whole-file digest of a file without chunks', async () => {
      proxy.queue(whole.path, { corruptAt: 7 }, { corruptAt: 299_999 });
      const error = await expectFailure(fetchRelease(options()));
      assert.equal(error.code, 'FETCH_DIGEST_MISMATCH');
      await assert.rejects(stat(join(dest, whole.path)), { code: 'ENOENT' });
    });

    it('treats the proxy answering 502 MG_DIGEST_MISMATCH twice as fatal', async () => {
      proxy.queue(
        big.path,
        { status: 502, code: 'MG_DIGEST_MISMATCH' },
        { status: 502, code: 'MG_DIGEST_MISMATCH' },
      );
      const error = await expectFailure(fetchRelease(options()));
      assert.equal(error.kind, 'integrity');
      assert.equal(error.code, 'MG_DIGEST_MISMATCH');
      assert.equal(fileRequests(big.path).length, 2);
    });
  });

  describe('when the proxy is unavailable', () => {
    it('retries 503 with backoff and succeeds', async () => {
      proxy.queue(
        big.path,
        { status: 503, code: 'MG_OVERLOADED', retryAfter: '0' },
        { status: 504, code: 'MG_SOURCE_TIMEOUT' },
      );
      await fetchRelease(options());
      await assertBytes(big);
      assert.deepEqual(
        events.retries.map((r) => r.code),
        ['MG_OVERLOADED', 'MG_SOURCE_TIMEOUT'],
      );
    });

    it('gives up after --retries attempts without progress', async () => {
      proxy.queue(
        'manifest',
        { status: 502, code: 'MG_SOURCE_FAILED' },
        { status: 502, code: 'MG_SOURCE_FAILED' },
        { status: 502, code: 'MG_SOURCE_FAILED' },
      );
      const error = await expectFailure(fetchRelease(options({ retries: 2 })));
      assert.equal(error.kind, 'unavailable');
      assert.equal(error.code, 'MG_SOURCE_FAILED');
      assert.equal(proxy.log.length, 3);
    });

    it('reports a refused connection as unavailable', async () => {
      const url = proxy.url;
      await proxy.close();
      const error = await expectFailure(fetchRelease(options({ proxy: new URL(url), retries: 1 })));
      assert.equal(error.kind, 'unavailable');
      assert.equal(error.code, 'FETCH_NETWORK');
    });
  });

  describe('when the proxy refuses', () => {
    it('does not retry a 401', async () => {
      const error = await expectFailure(fetchRelease(options({ tokens: staticTokenSource('bad', 'test') })));
      assert.equal(error.kind, 'auth');
      assert.equal(error.code, 'MG_TOKEN_SIGNATURE_INVALID');
      assert.equal(proxy.log.length, 1);
    });

    it('does not retry a 403', async () => {
      proxy.queue('manifest', { status: 403, code: 'MG_NOT_GRANTED' });
      const error = await expectFailure(fetchRelease(options()));
      assert.equal(error.kind, 'auth');
      assert.equal(error.code, 'MG_NOT_GRANTED');
      assert.equal(proxy.log.length, 1);
    });

    it('does not retry a 404', async () => {
      const error = await expectFailure(fetchRelease(options({ release: '9.9.9' })));
      assert.equal(error.kind, 'not_found');
      assert.equal(error.code, 'MG_RELEASE_NOT_FOUND');
      assert.equal(proxy.log.length, 1);
    });
  });

  describe('when the manifest cannot be trusted', () => {
    it('refuses a body whose sha256 is not the announced release digest', async () => {
      proxy.queue('manifest', { wrongDigestHeader: true }, { wrongDigestHeader: true });
      const error = await expectFailure(fetchRelease(options()));
      assert.equal(error.code, 'FETCH_RELEASE_DIGEST_MISMATCH');
      assert.deepEqual(await readdir(dest), []);
    });

    it('refuses a release whose digest is not the one asked for', async () => {
      await proxy.close();
      proxy = await startFakeProxy(release, { anyRef: true });
      const error = await expectFailure(fetchRelease(options({ release: `sha256:${'1'.repeat(64)}` })));
      assert.equal(error.code, 'FETCH_RELEASE_DIGEST_MISMATCH');
      assert.equal(proxy.log.filter((r) => r.route === 'file').length, 0);
    });

    it('accepts the release when asked by its digest', async () => {
      await fetchRelease(options({ release: proxy.releaseDigest }));
      await assertBytes(big);
    });
  });

  describe('when the manifest lists a path that would leave DEST', () => {
    for (const path of ['../escape.bin', '/etc/passwd', 'a/../../b', '.modelgate-release.json', 'a\\b']) {
      it(`refuses ${JSON.stringify(path)} and writes nothing`, async () => {
        await proxy.close();
        const manifestBytes = fakeManifest(release, (m) => {
          (m.files as Array<Record<string, unknown>>)[0]!.path = path;
        });
        proxy = await startFakeProxy(release, { manifestBytes });
        const error = await expectFailure(fetchRelease(options()));
        assert.equal(error.code, 'FETCH_UNSAFE_PATH');
        assert.equal(proxy.log.filter((r) => r.route === 'file').length, 0);
        assert.deepEqual(await readdir(dest), []);
        await assert.rejects(stat(join(work, 'escape.bin')), { code: 'ENOENT' });
      });
    }

    it('refuses to write through a folder in DEST that is a symlink to elsewhere', async () => {
      const outside = await mkdtemp(join(work, 'outside-'));
      await symlink(outside, join(dest, 'config'));
      const error = await expectFailure(fetchRelease(options({ concurrency: 1 })));
      assert.equal(error.code, 'FETCH_UNSAFE_DESTINATION');
      assert.deepEqual(await readdir(outside), []);
    });
  });

  describe('when the token file is rotated during the fetch', () => {
    it('reads the token again before every request', async () => {
      const tokenFile = join(dest, '..', `${Date.now()}.token`);
      await writeFile(tokenFile, 'good-token\n');
      proxy.tokens.add('rotated-token');
      proxy.onRequest = (entry) => {
        if (entry.route === 'manifest') writeFileSync(tokenFile, 'rotated-token');
      };
      await fetchRelease(options({ tokens: fileTokenSource(tokenFile), concurrency: 1 }));
      assert.equal(proxy.log[0]?.authorization, 'Bearer good-token');
      const later = proxy.log.slice(1).map((r) => r.authorization);
      assert.equal(later.length, 3);
      assert.ok(later.every((a) => a === 'Bearer rotated-token'));
    });
  });
});
