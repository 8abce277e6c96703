import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FETCH_EXIT } from '../../src/commands/fetch.ts';
import { type FakeProxy, type FakeRelease, seededBytes, startFakeProxy } from './fake-proxy.ts';
import { runCli } from './run-cli.ts';

const MiB = 1024 * 1024;
const release: FakeRelease = {
  model: 'fraud-detector',
  version: '1.0.0',
  files: [
    { path: 'weights/model.bin', bytes: seededBytes(2 * MiB + 3, 7), chunkSize: MiB },
    { path: 'labels.txt', bytes: Buffer.from('fraud\nlegit\n'), chunkSize: null },
  ],
};

describe('modelgate fetch (command line)', () => {
  let proxy: FakeProxy;
  let work: string;
  let dest: string;
  let tokenFile: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'modelgate-fetch-cli-'));
    tokenFile = join(work, 'token');
    await writeFile(tokenFile, 'good-token\n');
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });
  beforeEach(async () => {
    proxy = await startFakeProxy(release);
    dest = await mkdtemp(join(work, 'dest-'));
  });
  afterEach(async () => {
    await proxy.close();
  });

  const args = (...extra: string[]) => [
    'fetch',
    '--proxy',
    proxy.url,
    '--model',
    release.model,
    '--release',
    release.version,
    '--dest',
    dest,
    '--token-file',
    tokenFile,
    ...extra,
  ];

  describe('when the fetch succeeds', () => {
    it('exits 0 and prints one JSON line per file and a summary on stderr', async () => {
      const run = await runCli(args());
      assert.equal(run.code, FETCH_EXIT.ok, run.stderr);
      const files = run.events.filter((e) => e.event === 'file');
      assert.deepEqual(files.map((e) => e.path).sort(), ['labels.txt', 'weights/model.bin']);
      for (const event of files) {
        assert.equal(event.status, 'downloaded');
        assert.equal(typeof event.seconds, 'number');
        assert.match(String(event.digest), /^sha256:[0-9a-f]{64}$/);
      }
      const done = run.events.at(-1)!;
      assert.equal(done.event, 'done');
      assert.equal(done.releaseDigest, proxy.releaseDigest);
      assert.equal(done.downloaded, 2);
      assert.ok((await readFile(join(dest, 'weights/model.bin'))).equals(release.files[0]!.bytes));
    });

    it('takes the token from MODELGATE_TOKEN when no --token-file is given', async () => {
      const withoutTokenFile = args().slice(0, -2);
      const run = await runCli(withoutTokenFile, { env: { MODELGATE_TOKEN: 'good-token' } });
      assert.equal(run.code, FETCH_EXIT.ok, run.stderr);
    });
  });

  describe('when the proxy refuses the token', () => {
    it('exits 10 and names the error code', async () => {
      const bad = join(work, 'bad-token');
      await writeFile(bad, 'not-the-token');
      const run = await runCli([...args().slice(0, -2), '--token-file', bad]);
      assert.equal(run.code, FETCH_EXIT.authRefused);
      assert.match(run.stderr, /MG_TOKEN_SIGNATURE_INVALID/);
      assert.deepEqual(await readdir(dest), []);
    });
  });

  describe('when the release does not exist', () => {
    it('exits 11', async () => {
      const run = await runCli(args().map((a) => (a === release.version ? '2.0.0' : a)));
      assert.equal(run.code, FETCH_EXIT.notFound);
      assert.match(run.stderr, /MG_RELEASE_NOT_FOUND/);
    });
  });

  describe('when the bytes never verify', () => {
    it('exits 12 and leaves no file under its final name', async () => {
      proxy.queue('weights/model.bin', { corruptAt: MiB + 1 }, { corruptAt: MiB + 1 });
      const run = await runCli(args('--concurrency', '1'));
      assert.equal(run.code, FETCH_EXIT.integrity);
      assert.match(run.stderr, /FETCH_CHUNK_MISMATCH/);
      assert.ok(
        !(await readdir(dest)).includes('weights') || (await readdir(join(dest, 'weights'))).length === 0,
      );
    });
  });

  describe('when the proxy stays unavailable', () => {
    it('exits 13 after the retries', async () => {
      proxy.queue(
        'manifest',
        ...Array.from({ length: 3 }, () => ({ status: 503, code: 'MG_OVERLOADED', retryAfter: '0' })),
      );
      const run = await runCli(args('--retries', '2'));
      assert.equal(run.code, FETCH_EXIT.unavailable);
      assert.match(run.stderr, /MG_OVERLOADED/);
      assert.equal(run.events.filter((e) => e.event === 'retry').length, 2);
    });
  });

  describe('when the fetch is stopped with SIGTERM (pod deleted during the init container)', () => {
    it('exits 143 promptly and keeps the verified partial file for the next attempt', async () => {
      proxy.queue('weights/model.bin', { stallAfterBytes: MiB + 1000 });
      const partial = join(dest, '.modelgate-tmp', 'weights/model.bin.partial');
      let child: ChildProcess | undefined;
      const running = runCli(args('--concurrency', '1'), {
        onSpawn: (c) => {
          child = c;
        },
      });
      const deadline = Date.now() + 20_000;
      while (((await stat(partial).catch(() => null))?.size ?? 0) < MiB) {
        assert.ok(Date.now() < deadline, 'the transfer never started');
        await sleep(20);
      }
      child!.kill('SIGTERM');
      const run = await running;
      assert.equal(run.code, 143, run.stderr);
      assert.match(run.stderr, /FETCH_INTERRUPTED/);
      assert.equal((await stat(partial)).size, MiB);
      assert.ok(!(await readdir(dest)).includes('.modelgate-release.json'));
      // Regression: an interrupted fetch did not say that a rerun resumes.
      const resumeLines = run.stderr.split('\n').filter((line) => line.includes('rerun the same command'));
      assert.equal(resumeLines.length, 1, run.stderr);
      assert.match(
        resumeLines[0] ?? '',
        /interrupted; partial files \(1\.0 MiB\) are kept in .*\.modelgate-tmp/,
      );
    });
  });

  describe('when the proxy stays unavailable after part of a file verified', () => {
    it('exits 13 and says that rerunning the same command resumes from the partial file', async () => {
      proxy.queue('weights/model.bin', { cutAfterBytes: MiB + 1000 }, ...Array(5).fill({ status: 503 }));
      const run = await runCli(args('--concurrency', '1', '--retries', '1'));
      assert.equal(run.code, FETCH_EXIT.unavailable, run.stderr);
      assert.match(run.stderr, /partial files \(1\.0 MiB\) are kept in .*; rerun the same command to resume/);
    });
  });

  describe('when the flags are wrong', () => {
    for (const [name, argv] of [
      ['a flag is missing', ['fetch', '--proxy', 'http://127.0.0.1:1', '--model', 'm']],
      ['an unknown flag is given', ['fetch', '--bogus']],
      [
        'the model name is malformed',
        [
          'fetch',
          '--proxy',
          'http://127.0.0.1:1',
          '--model',
          'Bad Name',
          '--release',
          '1',
          '--dest',
          '/tmp/x',
        ],
      ],
      [
        'the release digest is malformed',
        [
          'fetch',
          '--proxy',
          'http://127.0.0.1:1',
          '--model',
          'm',
          '--release',
          'sha256:abc',
          '--dest',
          '/tmp/x',
        ],
      ],
      [
        'the proxy is not an http URL',
        ['fetch', '--proxy', 'ftp://x', '--model', 'm', '--release', '1', '--dest', '/tmp/x'],
      ],
    ] as const) {
      it(`exits 2 when ${name}`, async () => {
        const run = await runCli([...argv]);
        assert.equal(run.code, FETCH_EXIT.usage, run.stderr);
        assert.equal(proxy.log.length, 0);
      });
    }

    it('exits 2 when the token file cannot be read', async () => {
      const run = await runCli([...args().slice(0, -2), '--token-file', join(work, 'missing')]);
      assert.equal(run.code, FETCH_EXIT.usage);
      assert.match(run.stderr, /FETCH_TOKEN_UNREADABLE/);
    });
  });
});
