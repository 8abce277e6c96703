import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { createWorkerHasher } from '../../src/integrity/hasher.ts';

const MiB = 1024 * 1024;
const CRASHING_WORKER = new URL('./crashing-hash-worker.js', import.meta.url);

function chunk(marker: string, fill: number): Uint8Array {
  const bytes = new Uint8Array(MiB).fill(fill);
  bytes.set(Buffer.from(marker, 'latin1'));
  return bytes;
}

describe('the worker hasher', () => {
  describe('when its only hash worker thread dies mid-hash', () => {
    it('fails that hash, replaces the worker, and hashes the next chunk', { timeout: 15_000 }, async () => {
      // Regression: a dead worker stayed in the pool, so every later chunk sent to it waited forever.
      const exits: string[] = [];
      const hasher = createWorkerHasher({
        size: 1,
        workerUrl: CRASHING_WORKER,
        onWorkerExit: (reason) => exits.push(reason),
      });
      try {
        await assert.rejects(hasher.digest(chunk('CRASH', 1), { owned: true }));
        const next = chunk('fine.', 2);
        const expected = createHash('sha256').update(next).digest();
        const hashed = await hasher.digest(next, { owned: true });
        assert.ok(hashed.digest.equals(expected));
        assert.equal(hashed.data.byteLength, MiB);
        assert.equal(exits.length, 1);
      } finally {
        await hasher.close();
      }
    });
  });

  describe('when a hash fails inside the worker', () => {
    it('rejects that hash and keeps the worker', async () => {
      const exits: string[] = [];
      const hasher = createWorkerHasher({
        size: 1,
        workerUrl: CRASHING_WORKER,
        onWorkerExit: (reason) => exits.push(reason),
      });
      try {
        await assert.rejects(hasher.digest(chunk('FAIL!', 3), { owned: true }), /hash worker failed/);
        const next = chunk('fine.', 4);
        const expected = createHash('sha256').update(next).digest();
        assert.ok((await hasher.digest(next, { owned: true })).digest.equals(expected));
        assert.equal(exits.length, 0);
      } finally {
        await hasher.close();
      }
    });
  });
});
