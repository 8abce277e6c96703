import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytesSeeded } from '../helpers/proxy.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.ts';

/**
 * SIGHUP reloads the whole configuration (README "Signals"): a revoked
 * signer's releases are refused from the next request on, a transfer already
 * running finishes, and an invalid file changes nothing.
 */

const MiB = 1024 * 1024;

describe('when SIGHUP reloads the configuration of a running serve process', () => {
  let fixture: ServeFixture;
  let serve: ServeProcess;
  let configFile: string;
  let digest: string;
  const bytes = randomBytesSeeded(12 * MiB, 41);

  const fileUrl = () => `${serve.dataUrl}/v1/models/fraud-detector/releases/${digest}/files/model.bin`;
  const status = async () => {
    const response = await fetch(fileUrl(), {
      method: 'HEAD',
      headers: { authorization: `Bearer ${fixture.token}` },
    });
    return response.status;
  };

  before(async () => {
    fixture = await createServeFixture('reload');
    await mkdir(join(fixture.models, 'fraud'), { recursive: true });
    await writeFile(join(fixture.models, 'fraud', 'model.bin'), bytes);
    const manifest = buildManifest({
      model: 'fraud-detector',
      version: '1',
      environment: 'prod',
      files: [{ path: 'model.bin', bytes, sources: ['file:fraud/model.bin'] }],
    });
    const jws = await signRelease(manifest, fixture.signer);
    await writeRelease(fixture.releases, 'fraud-detector-1.jws', jws);
    digest = releaseDigest(jws);
    configFile = await fixture.writeConfig('modelgate.yaml');
    serve = await startServeProcess(['--config', configFile]);
  });

  after(async () => {
    await serve?.stop();
    await fixture?.remove();
  });

  it('serves the release before any reload', async () => {
    assert.equal(await status(), 200);
  });

  it('keeps serving, and logs every problem, when the new file is invalid', async () => {
    await writeFile(configFile, 'listen: { adress: 127.0.0.1 }\nissuers: []\n');
    serve.child.kill('SIGHUP');
    const refused = await waitFor(() => serve.logs.find((l) => l.event === 'config_reload_refused'));
    assert.ok(Array.isArray(refused.problems) && refused.problems.length >= 2, JSON.stringify(refused));
    assert.equal(await status(), 200);
  });

  it('refuses the revoked signer’s release from the next request on, while a running transfer finishes', async () => {
    // A reader that takes its time: the transfer is still running when the revocation lands.
    const slow = slowDownload(fileUrl(), fixture.token);
    await sleep(300);
    await fixture.writeConfig('modelgate.yaml', {
      signers: [
        {
          name: 'release',
          jwksFile: fixture.signer.jwksFile,
          environments: ['prod'],
          revoked: { at: '2026-01-01T00:00:00Z', reason: 'key leaked in INC-7' },
        },
      ],
    });
    const sent = Date.now();
    serve.child.kill('SIGHUP');
    let refusedAfterMs = -1;
    for (let i = 0; i < 200; i++) {
      if ((await status()) === 404) {
        refusedAfterMs = Date.now() - sent;
        break;
      }
      await sleep(25);
    }
    assert.ok(refusedAfterMs >= 0, 'the revoked release was still served 5 s after SIGHUP');
    const received = await slow;
    assert.equal(received.length, bytes.length, 'the transfer that started before the reload was cut');
    assert.ok(received.equals(bytes));
    const reloaded = serve.logs.find((l) => l.event === 'config_reloaded');
    assert.ok(reloaded, 'no config_reloaded line');
    const metrics = await (await fetch(`${serve.adminUrl}/metrics`)).text();
    assert.match(metrics, /modelgate_signer_revoked\{signer="release"\} 1/);
    assert.match(metrics, /modelgate_catalog_rejected_total\{reason="signer_revoked"\} 1/);
    // Reported for docs/trust.md ("how fast a revocation takes effect").
    process.stdout.write(`# SIGHUP to first refusal: ${refusedAfterMs} ms\n`);
  });
});

async function waitFor<T>(find: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(25);
  }
}

/** GETs the file reading about 2 MiB/s, so a 12 MiB body takes several seconds. */
function slowDownload(url: string, token: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`status ${res.statusCode}`));
        res.resume();
        return;
      }
      const parts: Buffer[] = [];
      res.on('data', (part: Buffer) => {
        parts.push(part);
        res.pause();
        setTimeout(() => res.resume(), Math.ceil(part.length / (2 * 1024)));
      });
      res.on('end', () => resolve(Buffer.concat(parts)));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
