/**
 * `modelgate fetch` into a DEST where another container planted symlinks:
 * the CLI runs as a child process against a small real HTTP proxy, and every
 * test checks that a file outside DEST is unchanged byte for byte, that
 * nothing new appeared outside DEST, and that the fetch exits 14.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { FETCH_EXIT } from '../../src/commands/fetch.ts';
import { type FakeProxy, type FakeRelease, seededBytes, startFakeProxy } from './fake-proxy.ts';
import { runCli } from './run-cli.ts';

const MiB = 1024 * 1024;
const release: FakeRelease = {
  model: 'fraud-detector',
  version: '1.0.0',
  files: [
    { path: 'weights/model.bin', bytes: seededBytes(2 * MiB + 3, 21), chunkSize: MiB },
    { path: 'labels.txt', bytes: Buffer.from('fraud\nlegit\n'), chunkSize: null },
  ],
};
const PRECIOUS = Buffer.from('a file outside DEST that fetch must never write\n');

/** Every file under `folder` with its bytes, so "unchanged" covers new files as well as changed ones. */
async function snapshot(folder: string): Promise<Record<string, string>> {
  const entries = await readdir(folder, { recursive: true, withFileTypes: true });
  const files: Record<string, string> = {};
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    files[path] = (await readFile(path)).toString('base64');
  }
  return files;
}

describe('modelgate fetch into a destination with planted symlinks', { timeout: 120_000 }, () => {
  let proxy: FakeProxy;
  let work: string;
  let dest: string;
  let outside: string;
  let tokenFile: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'modelgate-fetch-unsafe-'));
    tokenFile = join(work, 'token');
    await writeFile(tokenFile, 'good-token\n');
    proxy = await startFakeProxy(release);
  });
  after(async () => {
    await proxy.close();
    await rm(work, { recursive: true, force: true });
  });
  beforeEach(async () => {
    dest = await mkdtemp(join(work, 'dest-'));
    outside = await mkdtemp(join(work, 'outside-'));
    // Files an attacker would like overwritten: one under every name fetch might write.
    await writeFile(join(outside, 'precious.txt'), PRECIOUS);
    await writeFile(join(outside, 'model.bin'), PRECIOUS);
    await writeFile(join(outside, 'labels.txt.partial'), PRECIOUS);
    await mkdir(join(outside, 'weights'));
    await writeFile(join(outside, 'weights', 'model.bin.partial'), PRECIOUS);
  });
  afterEach(async () => {
    await rm(dest, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  async function expectRefused(planted: string): Promise<void> {
    const before = await snapshot(outside);
    const run = await runCli([
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
    ]);
    assert.equal(run.code, FETCH_EXIT.unsafeDestination, run.stderr);
    assert.match(run.stderr, /FETCH_UNSAFE_DESTINATION/);
    assert.ok(run.stderr.includes(planted), `stderr names ${planted}: ${run.stderr}`);
    assert.deepEqual(await snapshot(outside), before);
    assert.ok((await readFile(join(outside, 'precious.txt'))).equals(PRECIOUS));
  }

  describe('when DEST/.modelgate-tmp is a symlink to a folder outside DEST', () => {
    // Regression: partial files were written into the folder the link pointed to, and fetch exited 0.
    it('exits 14 naming it and writes nothing outside DEST', async () => {
      await symlink(outside, join(dest, '.modelgate-tmp'));
      await expectRefused(join(dest, '.modelgate-tmp'));
    });
  });

  describe("when a partial file's path is a symlink to a file outside DEST", () => {
    // Regression: the partial was opened through the link and the outside file truncated and overwritten.
    it('exits 14 naming it and leaves the outside file unchanged', async () => {
      await mkdir(join(dest, '.modelgate-tmp'));
      const partial = join(dest, '.modelgate-tmp', 'labels.txt.partial');
      await symlink(join(outside, 'precious.txt'), partial);
      await expectRefused(partial);
    });
  });

  describe("when a final file's path is a symlink to a file outside DEST", () => {
    it('exits 14 naming it and leaves the outside file unchanged', async () => {
      const final = join(dest, 'labels.txt');
      await symlink(join(outside, 'precious.txt'), final);
      await expectRefused(final);
    });
  });

  describe('when a parent folder of a nested file is a symlink to a folder outside DEST', () => {
    it('exits 14 naming it and writes nothing into that folder', async () => {
      const parent = join(dest, 'weights');
      await symlink(outside, parent);
      await expectRefused(parent);
    });
  });

  describe("when the release record's path is a symlink to a file outside DEST", () => {
    it('exits 14 naming it and leaves the outside file unchanged', async () => {
      const record = join(dest, '.modelgate-release.json');
      await symlink(join(outside, 'precious.txt'), record);
      await expectRefused(record);
    });
  });

  describe("when the release record's temporary path is a symlink to a file outside DEST", () => {
    // Regression: the record was written with O_TRUNC through the link, overwriting the outside file.
    it('exits 14 naming it and leaves the outside file unchanged', async () => {
      await mkdir(join(dest, '.modelgate-tmp'));
      const temporary = join(dest, '.modelgate-tmp', '.modelgate-release.json.partial');
      await symlink(join(outside, 'precious.txt'), temporary);
      await expectRefused(temporary);
    });
  });

  describe('when DEST itself is a symlink to a real folder (the operator chose it)', () => {
    it('follows it and fetches into the folder it names', async () => {
      const real = await mkdtemp(join(work, 'real-'));
      const linked = join(work, `linked-${Date.now()}`);
      await symlink(real, linked);
      const run = await runCli([
        'fetch',
        '--proxy',
        proxy.url,
        '--model',
        release.model,
        '--release',
        release.version,
        '--dest',
        linked,
        '--token-file',
        tokenFile,
      ]);
      assert.equal(run.code, FETCH_EXIT.ok, run.stderr);
      assert.ok(
        (await readFile(join(real, 'labels.txt'))).equals(release.files[1]?.bytes ?? Buffer.alloc(0)),
      );
    });
  });
});
