/**
 * Edges of the hashers (src/integrity/hasher.ts) a mutation run left
 * unguarded: which buffers go to a worker (by transfer only when the caller
 * owns them, a copy otherwise), views at an offset, small buffers and a
 * closed hasher hashed inline, and a worker that cannot start being retried
 * a bounded number of times before hashing falls back inline.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { createInlineHasher, createWorkerHasher } from '../../src/integrity/hasher.ts';

const KiB = 1024;
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest();

function filled(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

/** A worker that dies while loading, every time (a broken install). */
const BROKEN_WORKER = new URL('data:text/javascript,process.exit(3)');

describe('the hashers, at their edges', () => {
  describe('when the inline hasher hashes a view', () => {
    it('hashes exactly the view and hands the same view back', async () => {
      const hasher = createInlineHasher();
      const backing = filled(1000, 1);
      const view = backing.subarray(100, 900);
      const hashed = await hasher.digest(view, { owned: true });
      assert.equal(hashed.data, view);
      assert.ok(hashed.digest.equals(sha(view)));
      await hasher.close();
    });
  });

  describe('when a buffer the caller owns goes to a worker', () => {
    it('moves it by transfer (the old view is detached) and returns the same bytes at the same offset', async () => {
      const hasher = createWorkerHasher({ size: 1 });
      try {
        const backing = filled(512 * KiB, 2);
        const expected = Buffer.from(backing.subarray(1000, 300 * KiB));
        const view = backing.subarray(1000, 300 * KiB);
        const hashed = await hasher.digest(view, { owned: true });
        assert.equal(backing.byteLength, 0, 'transferred, not copied');
        assert.equal(hashed.data.byteOffset, 1000);
        assert.equal(hashed.data.byteLength, 300 * KiB - 1000);
        assert.ok(Buffer.from(hashed.data).equals(expected));
        assert.ok(hashed.digest.equals(sha(expected)));
      } finally {
        await hasher.close();
      }
    });
  });

  describe('when the caller does not own the buffer', () => {
    it('hashes a copy on the worker and leaves the caller’s memory intact', async () => {
      const hasher = createWorkerHasher({ size: 1 });
      try {
        const data = filled(300 * KiB, 3);
        const hashed = await hasher.digest(data);
        assert.equal(data.byteLength, 300 * KiB, 'not detached');
        assert.notEqual(hashed.data.buffer, data.buffer);
        assert.ok(hashed.digest.equals(sha(data)));
      } finally {
        await hasher.close();
      }
    });
  });

  describe('when a buffer is small', () => {
    it('is hashed inline: the caller keeps its memory even when it owns it', async () => {
      const hasher = createWorkerHasher({ size: 1 });
      try {
        const data = filled(256 * KiB - 1, 4);
        const hashed = await hasher.digest(data, { owned: true });
        assert.equal(hashed.data, data);
        assert.equal(data.byteLength, 256 * KiB - 1);
        assert.ok(hashed.digest.equals(sha(data)));
        const atLimit = filled(256 * KiB, 5);
        const expected = sha(atLimit);
        const sent = await hasher.digest(atLimit, { owned: true });
        assert.equal(atLimit.byteLength, 0, 'a buffer of exactly 256 KiB goes to the worker');
        assert.ok(sent.digest.equals(expected));
      } finally {
        await hasher.close();
      }
    });
  });

  describe('when the hasher is closed', () => {
    it('still hashes, inline', async () => {
      const hasher = createWorkerHasher({ size: 1 });
      await hasher.close();
      const data = filled(300 * KiB, 6);
      const hashed = await hasher.digest(data, { owned: true });
      assert.equal(hashed.data, data);
      assert.ok(hashed.digest.equals(sha(data)));
    });
  });

  describe('when several hashes run at once on two workers', () => {
    it('answers each with its own digest', async () => {
      const hasher = createWorkerHasher({ size: 2 });
      try {
        const inputs = Array.from({ length: 6 }, (_, i) => filled(300 * KiB, 10 + i));
        const expected = inputs.map(sha);
        const results = await Promise.all(inputs.map((data) => hasher.digest(data)));
        results.forEach((r, i) => {
          assert.ok(r.digest.equals(expected[i] as Buffer), `hash ${i}`);
        });
      } finally {
        await hasher.close();
      }
    });
  });

  describe('when the worker cannot even start', () => {
    it('restarts it at most five times, then hashes inline', { timeout: 20_000 }, async () => {
      const exits: string[] = [];
      const hasher = createWorkerHasher({
        size: 1,
        workerUrl: BROKEN_WORKER,
        onWorkerExit: (reason) => exits.push(reason),
      });
      try {
        for (let i = 0; i < 300 && exits.length < 5; i++) await new Promise((r) => setTimeout(r, 20));
        // Give a sixth restart the time to happen, if the bound were missing.
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(exits.length, 5);
        assert.equal(exits[0], 'exit code 3');
        const data = filled(300 * KiB, 7);
        const hashed = await hasher.digest(data, { owned: true });
        assert.equal(hashed.data, data, 'inline: no worker left to send it to');
        assert.ok(hashed.digest.equals(sha(data)));
      } finally {
        await hasher.close();
      }
    });
  });
});
