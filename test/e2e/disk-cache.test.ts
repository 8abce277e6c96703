/**
 * The verified disk cache through real `modelgate serve` processes (SPEC §11):
 * files live in S3 (s3rver) behind a recording HTTP proxy, so every source
 * read is counted at the origin, not by the proxy under test.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { entryPath } from '../../src/cache/layout.ts';
import { runCli } from '../fetch/run-cli.ts';
import type { S3rverEmulator } from '../helpers/emulators.ts';
import { startS3rver } from '../helpers/emulators.ts';
import { type HttpFaultProxy, startHttpFaultProxy } from '../helpers/http-fault-proxy.ts';
import { sampleSum } from '../helpers/metric-values.ts';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.ts';

const MiB = 1024 * 1024;
const BUCKET = 'models';

async function metric(proxy: ServeProcess, name: string, labels: Record<string, string> = {}) {
  return sampleSum(await (await fetch(`${proxy.adminUrl}/metrics`)).text(), name, labels);
}

/** Bytes of every entry file under the cache's `sha256/` folder. */
async function entryBytes(dir: string): Promise<number> {
  let total = 0;
  const files = await readdir(join(dir, 'sha256'), { recursive: true, withFileTypes: true }).catch(() => []);
  for (const file of files) {
    if (file.isFile() && /^[0-9a-f]{64}$/.test(file.name)) {
      // An entry evicted between the listing and this stat no longer counts.
      total += (await stat(join(file.parentPath, file.name)).catch(() => undefined))?.size ?? 0;
    }
  }
  return total;
}

/** The entry at `path` once it exists (a whole file is committed after its response ended). */
async function waitForEntry(path: string): Promise<Buffer> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const bytes = await readFile(path).catch(() => undefined);
    if (bytes !== undefined || Date.now() > deadline) return bytes ?? readFile(path);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Published {
  key: string;
  bytes: Buffer;
  url: string;
  prefetchUrl: string;
  chunks: string[];
}

describe('the verified disk cache behind serve', { timeout: 180_000 }, () => {
  let s3: S3rverEmulator;
  let origin: HttpFaultProxy;
  let fixture: ServeFixture;
  let cacheDir: string;
  let seed = 100;
  let stores: Record<string, unknown> = {};

  /** Source GETs of one object seen at the origin. */
  const originGets = (key: string) =>
    origin.requests().filter((r) => r.method === 'GET' && r.url.includes(`/${BUCKET}/${key}`)).length;

  async function publish(name: string, size: number, chunkSize?: number | null): Promise<Published> {
    const bytes = randomBytesSeeded(size, seed++);
    const key = `${name}.bin`;
    await s3.putObject(BUCKET, key, bytes);
    const manifest = buildManifest({
      model: name,
      version: '1',
      environment: 'prod',
      files: [
        {
          path: 'm.bin',
          bytes,
          sources: [`s3://${BUCKET}/${key}`],
          ...(chunkSize === undefined ? {} : { chunkSize }),
        },
      ],
    });
    const jws = await signRelease(manifest, fixture.signer);
    await writeRelease(fixture.releases, name, jws);
    const base = `/v1/models/${name}/releases/${releaseDigest(jws)}`;
    const file = manifest.files[0];
    const chunks = file && 'chunks' in file && file.chunks ? file.chunks : [];
    return { key, bytes, url: `${base}/files/m.bin`, prefetchUrl: `${base}/prefetch`, chunks };
  }

  async function download(proxy: ServeProcess, file: Published): Promise<void> {
    const res = await fetch(`${proxy.dataUrl}${file.url}`, {
      headers: { authorization: `Bearer ${fixture.token}` },
    });
    if (res.status !== 200) {
      const errors = proxy.logs.filter((line) => line.level !== 'info' && line.level !== 30).slice(-3);
      assert.fail(`status ${res.status}: ${await res.text()} ${JSON.stringify(errors)}`);
    }
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(body.length, file.bytes.length);
    assert.ok(body.equals(file.bytes), 'the body is the published bytes');
  }

  function prefetch(proxy: ServeProcess, file: Published, method: 'GET' | 'POST') {
    return fetch(`${proxy.dataUrl}${file.prefetchUrl}`, {
      method,
      headers: { authorization: `Bearer ${fixture.token}` },
    });
  }

  function prefetchArgs(proxy: ServeProcess, model: string, file: Published): string[] {
    const ref = file.prefetchUrl.split('/releases/')[1]?.split('/')[0] ?? '';
    return ['fetch', '--prefetch-only', '--proxy', proxy.dataUrl, '--model', model, '--release', ref];
  }

  function serveWithCache(extra: Record<string, unknown> = {}, args: string[] = []) {
    return fixture
      .writeConfig('cache.yaml', { stores, cache: { dir: 'cache', maxBytes: 16 * MiB }, ...extra })
      .then((config) => startServeProcess(['--config', config, ...args]));
  }

  before(async () => {
    s3 = await startS3rver();
    origin = await startHttpFaultProxy({ port: s3.port });
    fixture = await createServeFixture('disk-cache');
    cacheDir = join(fixture.dir, 'cache');
    const s3Store = {
      region: 'us-east-1',
      endpoint: origin.url,
      forcePathStyle: true,
      credentials: { ...s3.credentials },
    };
    stores = { s3: s3Store };
  });
  after(async () => {
    await origin?.close();
    await s3?.stop();
    await fixture?.remove();
  });

  describe('when one process reads, a byte on disk flips, and the process restarts', () => {
    it('reads each chunk from the source once, re-reads only the corrupted one, and serves a restart from disk', async () => {
      const file = await publish('corrupt', 4 * MiB);
      let proxy = await serveWithCache();
      try {
        await download(proxy, file);
        assert.equal(originGets(file.key), 4, 'cold: one source read per chunk');
        await download(proxy, file);
        assert.equal(originGets(file.key), 4, 'warm: no source read');
        assert.equal(await metric(proxy, 'modelgate_cache_requests_total', { result: 'hit' }), 4);

        const victim = entryPath(cacheDir, file.chunks[2] ?? '');
        const entry = await readFile(victim);
        entry[1000] = (entry[1000] ?? 0) ^ 0xff;
        await writeFile(victim, entry);

        await download(proxy, file);
        assert.equal(originGets(file.key), 5, 'only the corrupted chunk is read from the source again');
        assert.equal(await metric(proxy, 'modelgate_cache_requests_total', { result: 'corrupt' }), 1);
        const rewritten = await readFile(victim);
        assert.equal(createHash('sha256').update(rewritten).digest('hex'), file.chunks[2]);
      } finally {
        await proxy.stop();
      }
      proxy = await serveWithCache();
      try {
        await download(proxy, file);
        assert.equal(originGets(file.key), 5, 'the restarted process serves every chunk from the cache');
        assert.equal(await metric(proxy, 'modelgate_source_bytes_total'), 0);
      } finally {
        await proxy.stop();
      }
    });
  });

  describe('when a whole-file-mode file is read twice, then its cached copy is corrupted', () => {
    it('serves the second read from the cache, and detects, deletes, counts and replaces the corrupt copy', async () => {
      const file = await publish('whole', 3 * MiB + 123, null);
      assert.equal(file.chunks.length, 0, 'the manifest has no chunks');
      const digest = createHash('sha256').update(file.bytes).digest('hex');
      const proxy = await serveWithCache();
      try {
        await download(proxy, file);
        assert.equal(originGets(file.key), 1, 'cold: one source read of the whole file');
        // The copy is committed (fsync, rename) after the response ended.
        const cached = await waitForEntry(entryPath(cacheDir, digest));
        assert.ok(cached.equals(file.bytes), 'the verified file is cached whole under its digest');

        await download(proxy, file);
        assert.equal(originGets(file.key), 1, 'warm: zero source reads');
        assert.equal(await metric(proxy, 'modelgate_cache_requests_total', { result: 'hit' }), 1);
        assert.equal(
          await metric(proxy, 'modelgate_bytes_served_total', { store: 'cache' }),
          file.bytes.length,
        );

        cached[2 * MiB] = (cached[2 * MiB] ?? 0) ^ 0xff;
        await writeFile(entryPath(cacheDir, digest), cached);
        await download(proxy, file);
        assert.equal(originGets(file.key), 2, 'the corrupt copy is not served: the source is read again');
        assert.equal(await metric(proxy, 'modelgate_cache_requests_total', { result: 'corrupt' }), 1);
        assert.equal(await metric(proxy, 'modelgate_digest_mismatches_total'), 0, 'no response failed');
        const rewritten = await waitForEntry(entryPath(cacheDir, digest));
        assert.ok(rewritten.equals(file.bytes), 'the corrupt copy was replaced by the verified bytes');

        await download(proxy, file);
        assert.equal(originGets(file.key), 2, 'served from the replaced copy');
      } finally {
        await proxy.stop();
      }
    });
  });

  describe('when a release is prefetched before it is downloaded', () => {
    it('answers 202 once per release, reports done, and the download reads nothing from the source', async () => {
      const file = await publish('prefetched', 3 * MiB);
      const proxy = await serveWithCache();
      try {
        const started = await prefetch(proxy, file, 'POST');
        assert.equal(started.status, 202);
        const again = await prefetch(proxy, file, 'POST');
        assert.equal(again.status, 202, 'a second POST is accepted and starts nothing new');
        let status = { state: 'running', bytes: 0, totalBytes: 0 };
        const deadline = Date.now() + 60_000;
        while (status.state === 'running' && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          const res = await prefetch(proxy, file, 'GET');
          assert.equal(res.status, 200);
          status = (await res.json()) as typeof status;
        }
        assert.deepEqual(status, { state: 'done', bytes: 3 * MiB, totalBytes: 3 * MiB });
        assert.equal(originGets(file.key), 3, 'prefetch read each chunk once');
        assert.equal(await metric(proxy, 'modelgate_prefetch_bytes_total'), 3 * MiB);
        await download(proxy, file);
        assert.equal(
          originGets(file.key),
          3,
          'the download after the prefetch reads nothing from the source',
        );
        const after = await prefetch(proxy, file, 'POST');
        assert.equal(
          ((await after.json()) as { state: string }).state,
          'done',
          'a POST after done starts nothing',
        );
        assert.equal(originGets(file.key), 3);
      } finally {
        await proxy.stop();
      }
    });

    it('modelgate fetch --prefetch-only waits for done, exits 0, and the download then reads nothing from the source', async () => {
      const file = await publish('cli', 2 * MiB);
      const proxy = await serveWithCache();
      try {
        const run = await runCli(prefetchArgs(proxy, 'cli', file), {
          env: { MODELGATE_TOKEN: fixture.token },
        });
        assert.equal(run.code, 0, run.stderr);
        const last = run.events.at(-1);
        assert.deepEqual(last, { event: 'prefetch', state: 'done', bytes: 2 * MiB, totalBytes: 2 * MiB });
        assert.equal(originGets(file.key), 2);
        await download(proxy, file);
        assert.equal(originGets(file.key), 2, 'zero source reads after the prefetch');
      } finally {
        await proxy.stop();
      }
    });

    it('refuses prefetch with MG_CACHE_NOT_CONFIGURED when the proxy has no cache (fetch exits 11)', async () => {
      const file = await publish('nocache', MiB);
      const config = await fixture.writeConfig('plain.yaml', { stores });
      const proxy = await startServeProcess(['--config', config]);
      try {
        const res = await prefetch(proxy, file, 'POST');
        assert.equal(res.status, 409);
        assert.equal(
          ((await res.json()) as { error: { code: string } }).error.code,
          'MG_CACHE_NOT_CONFIGURED',
        );
        const run = await runCli(prefetchArgs(proxy, 'nocache', file), {
          env: { MODELGATE_TOKEN: fixture.token },
        });
        assert.equal(run.code, 11);
        assert.match(run.stderr, /MG_CACHE_NOT_CONFIGURED/);
      } finally {
        await proxy.stop();
      }
    });
  });

  describe('when two workers get eight concurrent requests for one file', () => {
    it('reads each chunk from the source exactly once', async () => {
      const file = await publish('fanout', 4 * MiB);
      const proxy = await serveWithCache({}, ['--workers', '2']);
      try {
        // A new connection per request, so both workers take some.
        await Promise.all(Array.from({ length: 8 }, () => download(proxy, file)));
        assert.equal(originGets(file.key), 4, 'one source read per chunk across both workers');
      } finally {
        await proxy.stop();
      }
    });
  });

  describe('when the proxy is killed with SIGKILL while it fills the cache', () => {
    it('leaves only complete entries: the next process serves the file and every entry matches its name', async () => {
      const file = await publish('killed', 16 * MiB);
      const config = await fixture.writeConfig('killed.yaml', {
        stores,
        cache: { dir: 'killed-cache', maxBytes: 64 * MiB },
      });
      const dir = join(fixture.dir, 'killed-cache');
      let proxy = await startServeProcess(['--config', config]);
      const reading = fetch(`${proxy.dataUrl}${file.url}`, {
        headers: { authorization: `Bearer ${fixture.token}` },
      }).then((res) => res.arrayBuffer());
      reading.catch(() => undefined);
      // Kill as soon as the first entry is on disk: later chunks are being read and written.
      const deadline = Date.now() + 30_000;
      while ((await entryBytes(dir)) === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      await proxy.stop('SIGKILL');
      proxy = await startServeProcess(['--config', config]);
      try {
        await download(proxy, file);
        const names = await readdir(join(dir, 'sha256'), { recursive: true, withFileTypes: true });
        const files = names.filter((entry) => entry.isFile());
        assert.ok(files.length > 0);
        for (const entry of files) {
          assert.match(entry.name, /^[0-9a-f]{64}$/, `only entries remain, not ${entry.name}`);
          const bytes = await readFile(join(entry.parentPath, entry.name));
          assert.equal(createHash('sha256').update(bytes).digest('hex'), entry.name);
        }
        assert.equal(await metric(proxy, 'modelgate_cache_requests_total', { result: 'corrupt' }), 0);
      } finally {
        await proxy.stop();
      }
    });
  });

  describe('when a stream of distinct releases passes through a small cache', () => {
    it('keeps the entries within maxBytes', async () => {
      const maxBytes = 3 * MiB;
      const config = await fixture.writeConfig('small.yaml', {
        stores,
        cache: { dir: 'small-cache', maxBytes },
      });
      const files: Published[] = [];
      for (let i = 0; i < 6; i++) files.push(await publish(`stream-${i}`, MiB + 4096));
      const proxy = await startServeProcess(['--config', config]);
      const dir = join(fixture.dir, 'small-cache');
      try {
        for (const [i, file] of files.entries()) {
          await download(proxy, file);
          const held = await entryBytes(dir);
          assert.ok(held <= maxBytes, `after release ${i}: ${held} bytes cached, limit ${maxBytes}`);
        }
        assert.ok((await entryBytes(dir)) > MiB, 'the cache is used, not just empty');
      } finally {
        await proxy.stop();
      }
    });
  });
});
