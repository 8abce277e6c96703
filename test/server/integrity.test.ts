import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawGet } from '../helpers/http.ts';
import { type Harness, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';

const MiB = 1024 * 1024;

describe('fail-closed verified streaming', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.stop());

  async function release(
    version: string,
    bytes: Buffer,
    sourceBytes: Buffer,
    chunkSize: number | null = MiB,
  ) {
    const { digest } = await h.addRelease({
      model: 'fraud-detector',
      version,
      files: [{ path: 'model.bin', bytes, chunkSize, sourceBytes }],
    });
    return `/v1/models/fraud-detector/releases/${digest}/files/model.bin`;
  }

  async function get(path: string, headers: Record<string, string> = {}) {
    return rawGet(`${h.url}${path}`, { authorization: `Bearer ${await h.token()}`, ...headers });
  }

  describe('when one byte in the middle of chunk k is flipped', () => {
    it('sends exactly chunks 0..k-1, then breaks the connection, and counts a mismatch', async () => {
      const original = randomBytesSeeded(5 * MiB + 123, 7);
      const tampered = Buffer.from(original);
      const k = 3;
      tampered[k * MiB + MiB / 2]! ^= 0x01;
      const path = await release('flip-1', original, tampered);
      const before = await h.metric('modelgate_digest_mismatches_total');
      const res = await get(path);
      assert.equal(res.status, 200);
      assert.equal(res.complete, false);
      assert.equal(res.body.length, k * MiB);
      assert.ok(res.body.equals(original.subarray(0, k * MiB)));
      assert.equal(await h.metric('modelgate_digest_mismatches_total'), before + 1);
      assert.equal(
        (await h.metric('modelgate_requests_total', { route: 'file', outcome: 'integrity_failure' })) >= 1,
        true,
      );
    });
  });

  describe('when the source is one byte short', () => {
    it('sends every chunk but the last, then breaks the connection', async () => {
      const original = randomBytesSeeded(3 * MiB + 10, 8);
      const path = await release('short-1', original, original.subarray(0, original.length - 1));
      const res = await get(path);
      assert.equal(res.complete, false);
      assert.equal(res.body.length, 3 * MiB);
      assert.ok(res.body.equals(original.subarray(0, 3 * MiB)));
    });
  });

  describe('when the source is one byte long', () => {
    it('sends every chunk but the last, then breaks the connection', async () => {
      const original = randomBytesSeeded(3 * MiB + 10, 9);
      const path = await release('long-1', original, Buffer.concat([original, Buffer.from([0x42])]));
      const res = await get(path);
      assert.equal(res.complete, false);
      assert.equal(res.body.length, 3 * MiB);
      assert.ok(res.body.equals(original.subarray(0, 3 * MiB)));
    });
  });

  describe('when chunk 0 is tampered', () => {
    it('answers 502 MG_DIGEST_MISMATCH before any header or byte of the file', async () => {
      const original = randomBytesSeeded(2 * MiB, 10);
      const tampered = Buffer.from(original);
      tampered[5]! ^= 0xff;
      const path = await release('flip-0', original, tampered);
      const res = await h.request(path);
      assert.equal(res.status, 502);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'MG_DIGEST_MISMATCH');
    });
  });

  describe('when a whole-file-mode file has its last byte flipped', () => {
    it('never delivers the complete body', async () => {
      const original = randomBytesSeeded(3 * MiB, 11);
      const tampered = Buffer.from(original);
      tampered[tampered.length - 1]! ^= 0x01;
      const path = await release('whole-flip', original, tampered, null);
      const res = await get(path);
      assert.ok(res.body.length < original.length, `received ${res.body.length} of ${original.length}`);
      assert.equal(res.complete && res.status === 200, false);
      if (res.status === 200) assert.ok(res.body.equals(original.subarray(0, res.body.length)));
    });

    it('delivers an untampered whole-file-mode file completely, ignoring Range', async () => {
      const original = randomBytesSeeded(2 * MiB + 5, 12);
      const path = await release('whole-ok', original, original, null);
      const res = await get(path, { range: 'bytes=0-9' });
      assert.equal(res.status, 200);
      assert.equal(res.headers['accept-ranges'], 'none');
      assert.ok(res.complete);
      assert.ok(res.body.equals(original));
    });
  });

  describe('when a chunk-mode file is read by ranges', () => {
    it('answers 200 random ranges with exactly the original bytes', async () => {
      const original = randomBytesSeeded(4 * MiB + 777, 13);
      const path = await release('ranges', original, original);
      let seed = 42;
      const next = () => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed;
      };
      const token = await h.token();
      for (let i = 0; i < 200; i++) {
        const a = next() % original.length;
        const form = i % 3;
        let header: string;
        let expected: Buffer;
        if (form === 0) {
          const b = Math.min(original.length - 1, a + (next() % (2 * MiB)));
          header = `bytes=${a}-${b}`;
          expected = original.subarray(a, b + 1);
        } else if (form === 1) {
          header = `bytes=${a}-`;
          expected = original.subarray(a);
        } else {
          const n = 1 + (next() % (2 * MiB));
          header = `bytes=-${n}`;
          expected = original.subarray(Math.max(0, original.length - n));
        }
        const res = await rawGet(`${h.url}${path}`, { authorization: `Bearer ${token}`, range: header });
        assert.equal(res.status, 206, header);
        assert.ok(res.body.equals(expected), `range ${header}`);
      }
    });

    it('fails a range over a tampered chunk with 502 before headers', async () => {
      const original = randomBytesSeeded(4 * MiB, 14);
      const tampered = Buffer.from(original);
      tampered[2 * MiB + 100]! ^= 0x01;
      const path = await release('range-tampered', original, tampered);
      const res = await h.request(path, { headers: { range: `bytes=${2 * MiB + 50}-${2 * MiB + 200}` } });
      assert.equal(res.status, 502);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'MG_DIGEST_MISMATCH');
      const clean = await h.request(path, { headers: { range: `bytes=${MiB}-${MiB + 9}` } });
      assert.equal(clean.status, 206);
      assert.ok(Buffer.from(await clean.arrayBuffer()).equals(original.subarray(MiB, MiB + 10)));
    });

    it('answers 416 for a range outside the file and 400 for several ranges', async () => {
      const original = randomBytesSeeded(MiB + 1, 15);
      const path = await release('range-416', original, original);
      const res = await h.request(path, { headers: { range: `bytes=${MiB + 1}-` } });
      assert.equal(res.status, 416);
      assert.equal(res.headers.get('content-range'), `bytes */${MiB + 1}`);
      const multi = await h.request(path, { headers: { range: 'bytes=0-1,5-6' } });
      assert.equal(multi.status, 400);
      assert.equal(((await multi.json()) as { error: { code: string } }).error.code, 'MG_BAD_RANGE');
    });
  });

  describe('when a file verifies', () => {
    it('sends SPEC headers, honours If-None-Match and HEAD', async () => {
      const original = randomBytesSeeded(MiB + 3, 16);
      const path = await release('headers', original, original);
      const res = await h.request(path);
      assert.equal(res.status, 200);
      const body = Buffer.from(await res.arrayBuffer());
      assert.ok(body.equals(original));
      const etag = res.headers.get('etag')!;
      assert.match(etag, /^"sha256:[0-9a-f]{64}"$/);
      assert.equal(res.headers.get('content-length'), String(original.length));
      assert.equal(res.headers.get('content-type'), 'application/octet-stream');
      assert.equal(res.headers.get('accept-ranges'), 'bytes');
      assert.match(res.headers.get('repr-digest')!, /^sha-256=:[A-Za-z0-9+/]+=*:$/);
      assert.match(res.headers.get('modelgate-release-digest')!, /^sha256:[0-9a-f]{64}$/);
      const cached = await h.request(path, { headers: { 'if-none-match': etag } });
      assert.equal(cached.status, 304);
      const head = await h.request(path, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(original.length));
    });
  });

  describe('when many clients fetch the same file at once', () => {
    it('reads each chunk from the source once and serves every client the full verified file', async () => {
      const original = randomBytesSeeded(6 * MiB + 99, 18);
      const path = await release('fan-out', original, original);
      const reads = () => h.metric('modelgate_source_requests_total', { store: 'file', outcome: 'ok' });
      const before = await reads();
      const token = await h.token();
      const results = await Promise.all(
        Array.from({ length: 8 }, () => rawGet(`${h.url}${path}`, { authorization: `Bearer ${token}` })),
      );
      for (const res of results) {
        assert.equal(res.status, 200);
        assert.ok(res.complete && res.body.equals(original));
      }
      // 7 chunks: one source read each, shared by the 8 transfers (in flight or from the chunk cache).
      assert.equal((await reads()) - before, 7);
    });
  });

  describe('when the client disconnects mid-transfer', () => {
    it('counts client_aborted and the in-flight gauge returns to 0', async () => {
      const original = randomBytesSeeded(8 * MiB, 17);
      const path = await release('abort', original, original);
      const controller = new AbortController();
      const res = await fetch(`${h.url}${path}`, {
        headers: { authorization: `Bearer ${await h.token()}` },
        signal: controller.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      controller.abort();
      for (let i = 0; i < 100 && (await h.metric('modelgate_inflight_requests')) !== 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(await h.metric('modelgate_inflight_requests'), 0);
      assert.ok((await h.metric('modelgate_requests_total', { outcome: 'client_aborted' })) >= 1);
      assert.equal(h.app.activeTransfers(), 0);
    });
  });
});
