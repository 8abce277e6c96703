/**
 * Promises of a running `modelgate serve` process that only a real process
 * shows: SIGHUP re-scans the catalog (a release written after start becomes
 * servable without a restart), and the configured `limits.maxHeaderBytes`
 * decides which request headers are too large — not Node's own 16 KiB default.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.ts';

const KiB = 1024;

describe('a serve process', () => {
  let fixture: ServeFixture;
  let proxy: ServeProcess;
  const bytes = randomBytesSeeded(64 * KiB, 33);

  async function signedRelease(version: string): Promise<{ jws: string; path: string }> {
    const manifest = buildManifest({
      model: 'fraud-detector',
      version,
      environment: 'prod',
      files: [{ path: 'model.bin', bytes, chunkSize: null, sources: ['file:model.bin'] }],
    });
    const jws = await signRelease(manifest, fixture.signer);
    return { jws, path: `/v1/models/fraud-detector/releases/${releaseDigest(jws)}/files/model.bin` };
  }

  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${proxy.dataUrl}${path}`, { headers: { authorization: `Bearer ${fixture.token}`, ...headers } });

  before(async () => {
    fixture = await createServeFixture('signals');
    await writeFile(join(fixture.models, 'model.bin'), bytes);
    const first = await signedRelease('1.0');
    await writeRelease(fixture.releases, 'first', first.jws);
    // pollSeconds 0 (the fixture's default): only SIGHUP can make the catalog see a new release.
    const config = await fixture.writeConfig('modelgate.yaml', {
      limits: { maxHeaderBytes: 32 * KiB },
    });
    proxy = await startServeProcess(['--config', config]);
  });
  after(async () => {
    await proxy?.stop();
    await fixture?.remove();
  });

  describe('when a release is written after start and SIGHUP arrives', () => {
    it('serves the new release without a restart', async () => {
      const second = await signedRelease('2.0');
      await writeRelease(fixture.releases, 'second', second.jws);
      // Without the signal the catalog does not poll: the new release is unknown.
      const before = await get(second.path);
      assert.equal(before.status, 404);
      assert.equal(((await before.json()) as { error: { code: string } }).error.code, 'MG_RELEASE_NOT_FOUND');

      proxy.child.kill('SIGHUP');
      let status = 0;
      for (let i = 0; i < 80 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const res = await get(second.path);
        status = res.status;
        if (status === 200) assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));
        else await res.body?.cancel();
      }
      assert.equal(status, 200, 'the release written after start is served after SIGHUP');
      assert.ok(proxy.logs.some((l) => l.event === 'reload'));
      // The process is still the same one: SIGHUP did not stop it.
      assert.equal(proxy.child.exitCode, null);
    });
  });

  describe('when request headers lie between Node’s 16 KiB default and the configured 32 KiB', () => {
    it('accepts a 24 KiB header', async () => {
      const { path } = await signedRelease('1.0');
      const res = await get(path, { 'x-padding': 'a'.repeat(24 * KiB) });
      assert.equal(res.status, 200);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));
    });

    it('answers 431 for a 40 KiB header, above the configured limit', async () => {
      const { path } = await signedRelease('1.0');
      const res = await get(path, { 'x-padding': 'a'.repeat(40 * KiB) });
      assert.equal(res.status, 431);
      await res.body?.cancel();
    });
  });
});
