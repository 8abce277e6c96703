import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ChunkedFile, Manifest } from '../../src/catalog/release.types.ts';
import { releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { startServeProcess } from '../helpers/serve-process.ts';

const MiB = 1024 * 1024;
const CLIENTS = 200;
const CHUNK = MiB;
/** 12 chunks: the first 11 a sparse hole of zeros (no disk), the last one unique per file. */
const SIZE = 12 * MiB;
const BUDGET = 64 * MiB;
const PAUSE_MS = 8000;

/** Writes `count` distinct sparse files and returns their manifest entries (hashing the zeros once). */
async function writeFiles(dir: string, count: number): Promise<ChunkedFile[]> {
  const zeros = Buffer.alloc(CHUNK);
  const zeroChunk = createHash('sha256').update(zeros).digest('hex');
  const prefix = createHash('sha256');
  for (let at = 0; at < SIZE - CHUNK; at += CHUNK) prefix.update(zeros);
  const files: ChunkedFile[] = [];
  for (let i = 0; i < count; i++) {
    const path = `f${String(i).padStart(3, '0')}.bin`;
    const last = Buffer.alloc(CHUNK);
    last.write(`distinct file ${i}`);
    const handle = await open(join(dir, path), 'w');
    await handle.truncate(SIZE - CHUNK);
    await handle.write(last, 0, CHUNK, SIZE - CHUNK);
    await handle.close();
    files.push({
      path,
      size: SIZE,
      digest: `sha256:${prefix.copy().update(last).digest('hex')}`,
      chunkSize: CHUNK,
      chunks: [
        ...Array.from({ length: SIZE / CHUNK - 1 }, () => zeroChunk),
        createHash('sha256').update(last).digest('hex'),
      ],
      sources: [`file:${path}`],
    });
  }
  return files;
}

interface PausedClient {
  resume(): void;
  result: Promise<{
    status: number;
    code?: string;
    retryAfter?: string;
    bodyDigest: string;
    bodyBytes: number;
  }>;
}

/** A real TCP client that sends its request and then reads nothing until `resume`. */
function pausedClient(url: URL, token: string): PausedClient {
  const socket = connect(Number(url.port), url.hostname);
  socket.pause();
  socket.write(
    `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
  );
  const result = new Promise<Awaited<PausedClient['result']>>((resolve, reject) => {
    let head = Buffer.alloc(0);
    let status = 0;
    let headers = '';
    const body = createHash('sha256');
    const errorBody: Buffer[] = [];
    let bodyBytes = 0;
    socket.on('data', (data: Buffer) => {
      if (status === 0) {
        head = Buffer.concat([head, data]);
        const split = head.indexOf('\r\n\r\n');
        if (split < 0) return;
        headers = head.subarray(0, split).toString('latin1');
        status = Number(headers.slice(9, 12));
        data = head.subarray(split + 4);
      }
      bodyBytes += data.length;
      if (status === 200) body.update(data);
      else errorBody.push(data);
    });
    socket.on('error', reject);
    socket.on('end', () => {
      const retryAfter = /\r\nretry-after: *(\S+)/i.exec(headers)?.[1];
      const code =
        status === 200
          ? undefined
          : // Refusals answer `{ "error": { "code", "message" } }` (src/errors.ts errorBody).
            (JSON.parse(Buffer.concat(errorBody).toString()) as { error?: { code?: string } }).error?.code;
      resolve({
        status,
        bodyDigest: `sha256:${body.digest('hex')}`,
        bodyBytes,
        ...(code ? { code } : {}),
        ...(retryAfter ? { retryAfter } : {}),
      });
    });
  });
  result.catch(() => {});
  return { resume: () => socket.resume(), result };
}

describe('many paused clients on distinct files', () => {
  let fixture: ServeFixture;
  before(async () => {
    fixture = await createServeFixture('paused');
  });
  after(() => fixture.remove());

  describe(`when ${CLIENTS} clients stop reading, each on its own file (1 MiB chunks)`, () => {
    it('keeps RSS under baseline + maxBufferedBytes + 64 MiB, then completes every body (or refused it up front)', async (t) => {
      // Regression: maxBufferedBytes was a soft limit; 200 paused clients on 200 distinct files took RSS from 219 to 1822 MiB.
      const files = await writeFiles(fixture.models, CLIENTS);
      const manifest: Manifest = {
        schema: 'modelgate/release/v1',
        model: 'many-files',
        version: '1.0',
        environment: 'prod',
        created: '2026-11-25T00:00:00Z',
        files,
      };
      const jws = await signRelease(manifest, fixture.signer);
      await writeRelease(fixture.releases, 'many', jws);
      const config = await fixture.writeConfig('modelgate.yaml', {
        transfer: { readAhead: 4, maxBufferedBytes: BUDGET, memoryWaitSeconds: 5, hashWorkers: 2 },
      });
      const proxy = await startServeProcess(['--config', config]);
      try {
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
        const base = `${proxy.dataUrl}/v1/models/many-files/releases/${releaseDigest(jws)}/files/`;
        const clients = files.map((f) => pausedClient(new URL(base + f.path), fixture.token));
        await new Promise((r) => setTimeout(r, PAUSE_MS));
        const pausedPeak = peak;
        for (const client of clients) client.resume();
        const results = await Promise.all(clients.map((c) => c.result));
        clearInterval(sampler);
        const served = results.filter((r) => r.status === 200).length;
        t.diagnostic(
          `RSS baseline ${(baseline / MiB).toFixed(1)} MiB, peak while paused ${(pausedPeak / MiB).toFixed(1)} MiB, ` +
            `peak overall ${(peak / MiB).toFixed(1)} MiB; ${served} served, ${CLIENTS - served} refused up front`,
        );
        results.forEach((result, i) => {
          if (result.status === 200) {
            assert.equal(result.bodyBytes, SIZE, `client ${i}`);
            assert.equal(result.bodyDigest, files[i]?.digest, `client ${i}`);
          } else {
            assert.equal(result.status, 503, `client ${i}`);
            assert.equal(result.code, 'MG_OVERLOADED');
            assert.ok(Number(result.retryAfter) >= 1);
          }
        });
        assert.ok(served >= 10, `only ${served} clients were served`);
        assert.ok(
          peak - baseline < BUDGET + 64 * MiB,
          `RSS grew by ${((peak - baseline) / MiB).toFixed(1)} MiB (baseline ${(baseline / MiB).toFixed(1)} MiB)`,
        );
      } finally {
        assert.equal(await proxy.stop(), 0);
      }
    });
  });
});
