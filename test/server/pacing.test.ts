import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type Harness, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';

const MiB = 1024 * 1024;
const KiB = 1024;

interface PacedResult {
  status: number;
  body: Buffer;
  /** True when the connection broke before the client read a whole response. */
  cut: boolean;
}

interface PacedClient {
  done: Promise<PacedResult>;
  /** When the client last took bytes off its socket (ms since the epoch). */
  lastRead(): number;
  taken(): number;
  destroy(): void;
}

/**
 * A real client over TCP that reads the response at `bytesPerSecond` (0 =
 * takes the first 4 KiB, then stops reading), so the proxy's socket backs up
 * exactly as behind a slow link. A client that does not read does not see the
 * connection close either; tests watch the proxy for that.
 */
function pacedGet(url: string, token: string, bytesPerSecond: number): PacedClient {
  const target = new URL(url);
  const socket: Socket = connect(Number(target.port), target.hostname);
  const parts: Buffer[] = [];
  let taken = 0;
  let lastRead = Date.now();
  socket.once('connect', () => {
    socket.write(
      `GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
    );
    socket.pause();
  });
  const TICK_MS = 100;
  const done = new Promise<PacedResult>((resolve) => {
    const timer = setInterval(() => {
      let allowance = bytesPerSecond === 0 ? (taken === 0 ? 4 * KiB : 0) : (bytesPerSecond * TICK_MS) / 1000;
      while (allowance > 0 && socket.readableLength > 0) {
        const part = socket.read(Math.min(allowance, socket.readableLength)) as Buffer | null;
        if (!part) break;
        parts.push(part);
        taken += part.length;
        allowance -= part.length;
        lastRead = Date.now();
      }
      // Pulls more from the kernel (and notices the end) without taking bytes.
      if (socket.readableLength === 0) socket.read(0);
    }, TICK_MS);
    let finished = false;
    const finish = (cut: boolean) => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      const all = Buffer.concat(parts);
      const split = all.indexOf('\r\n\r\n');
      resolve({
        status: split > 0 ? Number(all.subarray(9, 12).toString()) : 0,
        body: split > 0 ? all.subarray(split + 4) : Buffer.alloc(0),
        cut,
      });
    };
    socket.on('end', () => finish(false));
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
  return { done, lastRead: () => lastRead, taken: () => taken, destroy: () => socket.destroy() };
}

async function until(check: () => Promise<boolean> | boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('client pacing', () => {
  describe('with a 2 s idle timeout and a 1 s headers timeout', () => {
    let h: Harness;
    let token: string;
    before(async () => {
      h = await startHarness({
        config: {
          limits: { idleTimeoutSeconds: 2, headersTimeoutSeconds: 1, minClientBytesPerSecond: 0 },
          transfer: { retryBackoffMs: 10, chunkCacheBytes: 0, readAhead: 1 },
        },
      });
      token = await h.token();
    });
    after(() => h.stop());

    async function release(version: string, bytes: Buffer, chunkSize: number) {
      const { digest } = await h.addRelease({
        model: 'fraud-detector',
        version,
        files: [{ path: 'model.bin', bytes, chunkSize }],
      });
      return `${h.url}/v1/models/fraud-detector/releases/${digest}/files/model.bin`;
    }

    describe('when a client reads steadily at 256 KiB/s', () => {
      it('receives the whole 4 MiB file sent as one 4 MiB chunk', async () => {
        // Regression: only completed socket writes counted as activity and a write was a whole chunk, so a steady reader slower than chunk / idle timeout was cut mid-body.
        const bytes = randomBytesSeeded(4 * MiB, 61);
        const url = await release('steady', bytes, 4 * MiB);
        const result = await pacedGet(url, token, 256 * KiB).done;
        assert.equal(result.status, 200);
        assert.equal(result.cut, false);
        assert.equal(result.body.length, bytes.length);
        assert.ok(result.body.equals(bytes));
      });
    });

    describe('when a client takes the headers and stops reading', () => {
      it('is disconnected after about the idle timeout and counted', async () => {
        const bytes = randomBytesSeeded(16 * MiB, 62);
        const url = await release('stalled', bytes, 4 * MiB);
        const before = await h.metric('modelgate_slow_clients_dropped_total', { reason: 'idle' });
        const client = pacedGet(url, token, 0);
        const dropped = () => h.metric('modelgate_slow_clients_dropped_total', { reason: 'idle' });
        await until(async () => (await dropped()) > before, 20_000);
        const idleMs = Date.now() - client.lastRead();
        client.destroy();
        assert.equal(await dropped(), before + 1);
        assert.ok(client.taken() > 0 && client.taken() < bytes.length);
        // The socket still drains into the kernel for a moment after the client stops; then 2 s of no progress.
        assert.ok(idleMs >= 1500, `dropped ${idleMs} ms after the last read`);
        assert.ok(idleMs < 15_000, `dropped ${idleMs} ms after the last read`);
        await until(() => h.logs.some((l) => l.event === 'retrieval' && l.outcome === 'client_aborted'));
        assert.ok(h.logs.some((l) => l.event === 'retrieval' && l.outcome === 'client_aborted'));
      });
    });

    describe('when a client sends its headers one line every 200 ms (slowloris)', () => {
      it('is disconnected at about the configured 1 s headers timeout, not Node’s 30 s check', async () => {
        const target = new URL(h.url);
        const started = Date.now();
        const closedAt = await new Promise<number>((resolve, reject) => {
          const socket = connect(Number(target.port), target.hostname);
          socket.write('GET /v1/models/fraud-detector/releases/1/manifest HTTP/1.1\r\nHost: a\r\n');
          let n = 0;
          const drip = setInterval(() => socket.write(`X-Drip-${n++}: a\r\n`), 200);
          socket.on('data', () => {});
          socket.on('error', () => {});
          socket.on('close', () => {
            clearInterval(drip);
            resolve(Date.now());
          });
          setTimeout(() => {
            clearInterval(drip);
            socket.destroy();
            reject(new Error('the slowloris connection was still open after 10 s'));
          }, 10_000).unref();
        });
        const seconds = (closedAt - started) / 1000;
        assert.ok(seconds >= 0.9, `closed after ${seconds} s`);
        assert.ok(seconds < 5, `closed after ${seconds} s`);
      });
    });
  });

  describe('with a minimum client rate of 64 KiB/s over 2 s', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({
        config: {
          limits: {
            idleTimeoutSeconds: 60,
            minClientBytesPerSecond: 64 * KiB,
            minClientRateWindowSeconds: 2,
          },
          transfer: { retryBackoffMs: 10, chunkCacheBytes: 0, readAhead: 1 },
        },
      });
    });
    after(() => h.stop());

    describe('when a client trickles at 4 KiB/s (enough to dodge the idle timeout)', () => {
      it('is dropped well before the idle timeout, counted, and audited as too slow', async () => {
        const bytes = randomBytesSeeded(16 * MiB, 63);
        const { digest } = await h.addRelease({
          model: 'fraud-detector',
          version: 'trickle',
          files: [{ path: 'model.bin', bytes, chunkSize: 4 * MiB }],
        });
        const url = `${h.url}/v1/models/fraud-detector/releases/${digest}/files/model.bin`;
        const started = Date.now();
        const client = pacedGet(url, await h.token(), 4 * KiB);
        const dropped = () => h.metric('modelgate_slow_clients_dropped_total', { reason: 'rate' });
        await until(async () => (await dropped()) > 0, 40_000);
        const seconds = (Date.now() - started) / 1000;
        client.destroy();
        assert.equal(await dropped(), 1);
        assert.ok(client.taken() > 0 && client.taken() < bytes.length);
        assert.ok(seconds < 30, `dropped after ${seconds} s`);
        await until(() => h.logs.some((l) => l.event === 'retrieval' && l.dropped === 'too_slow'));
        const line = h.logs.find((l) => l.event === 'retrieval' && l.dropped === 'too_slow');
        assert.equal(line?.outcome, 'client_aborted');
      });
    });
  });
});
