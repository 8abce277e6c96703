import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open, truncate } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Manifest } from '../../src/catalog/release.types.ts';
import { releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { startServeProcess } from '../helpers/serve-process.ts';

const MiB = 1024 * 1024;
const SIZE = 2 * 1024 * MiB;
const CHUNK = 8 * MiB;

describe('memory while streaming a large file', () => {
  let fixture: ServeFixture;

  before(async () => {
    fixture = await createServeFixture('mem');
  });
  after(() => fixture.remove());

  describe('when a 2 GiB chunk-mode file streams to a client', () => {
    it('keeps the proxy resident memory growth under 64 MiB and delivers every byte', async (t) => {
      // A sparse file: 2 GiB of zeros that take no disk. Every chunk has the same digest.
      const path = join(fixture.models, 'big.bin');
      await (await open(path, 'w')).close();
      await truncate(path, SIZE);
      const zeroChunk = createHash('sha256').update(Buffer.alloc(CHUNK)).digest('hex');
      const whole = createHash('sha256');
      const zeros = Buffer.alloc(64 * MiB);
      for (let i = 0; i < SIZE / zeros.length; i++) whole.update(zeros);
      const manifest: Manifest = {
        schema: 'modelgate/release/v1',
        model: 'big-model',
        version: '1.0',
        environment: 'prod',
        created: '2026-11-25T00:00:00Z',
        files: [
          {
            path: 'big.bin',
            size: SIZE,
            digest: `sha256:${whole.digest('hex')}`,
            chunkSize: CHUNK,
            chunks: Array.from({ length: SIZE / CHUNK }, () => zeroChunk),
            sources: ['file:big.bin'],
          },
        ],
      };
      const jws = await signRelease(manifest, fixture.signer);
      await writeRelease(fixture.releases, 'big', jws);
      const config = await fixture.writeConfig('modelgate.yaml');
      const token = fixture.token;
      const proxy = await startServeProcess(['--config', config]);
      try {
        // Warm up: one small request so lazy start-up allocations are in the baseline.
        await fetch(`${proxy.adminUrl}/metrics`).then((r) => r.text());
        const baseline = await proxy.rss();
        let peak = baseline;
        const sampler = setInterval(() => {
          proxy.rss().then(
            (rss) => {
              peak = Math.max(peak, rss);
            },
            () => {},
          );
        }, 50);
        const received = await new Promise<{ bytes: number; complete: boolean; nonZero: boolean }>(
          (resolve, reject) => {
            const url = `${proxy.dataUrl}/v1/models/big-model/releases/${releaseDigest(jws)}/files/big.bin`;
            const req = request(
              url,
              { headers: { authorization: `Bearer ${token}` }, agent: false },
              (res) => {
                let bytes = 0;
                let nonZero = false;
                res.on('data', (d: Buffer) => {
                  bytes += d.length;
                  // The file is all zeros: checking one byte per data event keeps the client cheap.
                  if (d[d.length - 1] !== 0 || d[0] !== 0) nonZero = true;
                });
                res.on('end', () => resolve({ bytes, complete: res.complete, nonZero }));
                res.on('error', reject);
              },
            );
            req.on('error', reject);
            req.end();
          },
        );
        clearInterval(sampler);
        assert.equal(received.bytes, SIZE);
        assert.equal(received.complete, true);
        assert.equal(received.nonZero, false);
        const growth = peak - baseline;
        t.diagnostic(
          `proxy RSS baseline ${(baseline / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB`,
        );
        assert.ok(
          growth < 64 * MiB,
          `RSS grew by ${(growth / MiB).toFixed(1)} MiB (baseline ${(baseline / MiB).toFixed(1)} MiB)`,
        );
      } finally {
        assert.equal(await proxy.stop(), 0);
      }
    });
  });
});
