/**
 * Edges of the memory budget and the buffer pool (src/integrity/memory-budget.ts,
 * buffer-pool.ts) a mutation run left unguarded: exact fits, several waiters
 * granted by one release, memory pressure reclaiming before a request waits,
 * an already-aborted caller, no timeout without `timeoutMs`, accounting back
 * to zero after double releases, and the pool's reuse and trimming.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isModelgateError } from '../../src/errors.ts';
import { createBufferPool } from '../../src/integrity/buffer-pool.ts';
import { createMemoryBudget } from '../../src/integrity/memory-budget.ts';

const MiB = 1024 * 1024;
const never = () => new AbortController().signal;
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

describe('the memory budget, at its edges', () => {
  describe('when a request fills the budget exactly', () => {
    it('is granted at once, and the next byte waits', async () => {
      const seen: Array<[number, number]> = [];
      const budget = createMemoryBudget({
        maxBytes: 2 * MiB,
        observe: (inUse, waiting) => seen.push([inUse, waiting]),
      });
      const a = await budget.reserve(MiB, { signal: never() });
      const b = await budget.reserve(MiB, { signal: never() });
      assert.equal(budget.waiting(), 0);
      assert.equal(budget.inUseBytes(), 2 * MiB);
      let granted = false;
      const c = budget.reserve(1, { signal: never() }).then((r) => {
        granted = true;
        return r;
      });
      await tick();
      assert.equal(granted, false);
      assert.deepEqual(budget.stats(), {
        inUseBytes: 2 * MiB,
        waiting: 1,
        limitBytes: 2 * MiB,
        pool: { allocated: 0, reused: 0, freeBytes: 0 },
      });
      a.release();
      (await c).release();
      b.release();
      assert.equal(budget.inUseBytes(), 0);
      assert.deepEqual(seen.slice(0, 3), [
        [MiB, 0],
        [2 * MiB, 0],
        [2 * MiB, 1],
      ]);
      assert.deepEqual(seen.at(-1), [0, 0]);
    });
  });

  describe('when one release frees room for several waiters', () => {
    it('grants all of them that fit, in order, and keeps the rest waiting', async () => {
      const budget = createMemoryBudget({ maxBytes: 4 * MiB });
      const held = await budget.reserve(4 * MiB, { signal: never() });
      const granted: string[] = [];
      const mark = (name: string) => (r: { release(): void }) => {
        granted.push(name);
        return r;
      };
      const one = budget.reserve(MiB, { signal: never() }).then(mark('one'));
      const two = budget.reserve(MiB, { signal: never() }).then(mark('two'));
      const three = budget.reserve(3 * MiB, { signal: never() }).then(mark('three'));
      await tick();
      held.release();
      const [r1, r2] = await Promise.all([one, two]);
      await tick();
      assert.deepEqual(granted, ['one', 'two']);
      assert.equal(budget.waiting(), 1);
      assert.equal(budget.inUseBytes(), 2 * MiB);
      r1.release();
      r2.release();
      (await three).release();
      assert.equal(budget.inUseBytes(), 0);
      assert.equal(budget.waiting(), 0);
    });
  });

  describe('when a reservation is released twice', () => {
    it('returns its bytes once only', async () => {
      const budget = createMemoryBudget({ maxBytes: 4 * MiB });
      const keep = await budget.reserve(MiB, { signal: never() });
      const twice = await budget.reserve(2 * MiB, { signal: never() });
      twice.release();
      twice.release();
      assert.equal(budget.inUseBytes(), MiB);
      {
        using scoped = await budget.reserve(MiB, { signal: never() });
        assert.equal(scoped.bytes, MiB);
        assert.equal(budget.inUseBytes(), 2 * MiB);
      }
      assert.equal(budget.inUseBytes(), MiB);
      keep.release();
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when memory held only for speed can be given up', () => {
    it('asks the reclaimers before queueing, and grants at once when they freed enough', async () => {
      let observed: [number, number] = [-1, -1];
      const budget = createMemoryBudget({
        maxBytes: 2 * MiB,
        observe: (inUse, waiting) => {
          observed = [inUse, waiting];
        },
      });
      let cached: { release(): void } | undefined;
      let calls = 0;
      budget.onPressure(() => {
        calls++;
        cached?.release();
        cached = undefined;
      });
      const fits = await budget.reserve(MiB, { signal: never() });
      assert.equal(calls, 0, 'no pressure while nothing has to wait');
      fits.release();
      cached = await budget.reserve(2 * MiB, { signal: never() });
      assert.equal(calls, 0);
      const r = await budget.reserve(MiB, { signal: never(), timeoutMs: 1000 });
      assert.equal(calls, 1);
      assert.equal(budget.waiting(), 0);
      assert.equal(budget.inUseBytes(), MiB);
      assert.deepEqual(observed, [MiB, 0], 'the grant after reclaiming is observed (metrics)');
      r.release();
    });
  });

  describe('when the caller is already gone', () => {
    it('rejects with its reason even though memory is free', async () => {
      const budget = createMemoryBudget({ maxBytes: MiB });
      const gone = new AbortController();
      gone.abort(new Error('client went away'));
      await assert.rejects(budget.reserve(1, { signal: gone.signal }), /client went away/);
      await assert.rejects(budget.leaseChunk(1, { signal: gone.signal }), /client went away/);
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when no timeout is given', () => {
    it('keeps waiting (no MG_OVERLOADED) until memory is free', async () => {
      const budget = createMemoryBudget({ maxBytes: MiB });
      const held = await budget.reserve(MiB, { signal: never() });
      let settled = false;
      const waiting = budget.reserve(MiB, { signal: never() }).finally(() => {
        settled = true;
      });
      await tick(100);
      assert.equal(settled, false);
      held.release();
      (await waiting).release();
    });
  });

  describe('when the wait times out', () => {
    it('names the wait and the limit, asks for Retry-After 5, and unblocks the requests behind', async () => {
      const budget = createMemoryBudget({ maxBytes: 2 * MiB });
      const held = await budget.reserve(MiB, { signal: never() });
      const big = budget.reserve(2 * MiB, { signal: never(), timeoutMs: 50 });
      const small = budget.reserve(MiB, { signal: never() });
      await assert.rejects(big, (error) => {
        assert.ok(isModelgateError(error, 'MG_OVERLOADED'));
        assert.equal(error.headers['Retry-After'], '5');
        assert.match(error.message, /within 50 ms/);
        assert.match(error.message, new RegExp(`maxBufferedBytes ${2 * MiB}`));
        return true;
      });
      (await small).release();
      held.release();
      assert.equal(budget.inUseBytes(), 0);
    });

    it('does not fire after the request was granted', async () => {
      const budget = createMemoryBudget({ maxBytes: MiB });
      const held = await budget.reserve(MiB, { signal: never() });
      const later = budget.reserve(MiB, { signal: never(), timeoutMs: 80 });
      held.release();
      const r = await later;
      await tick(150);
      assert.equal(budget.inUseBytes(), MiB);
      r.release();
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when a chunk lease is released', () => {
    it('pools the adopted buffer (after a worker round trip), so the next lease reuses it', async () => {
      const budget = createMemoryBudget({ maxBytes: 4 * MiB });
      const lease = await budget.leaseChunk(MiB, { signal: never() });
      assert.equal(lease.bytes, MiB);
      const moved = structuredClone(lease.buffer.buffer, { transfer: [lease.buffer.buffer as ArrayBuffer] });
      new Uint8Array(moved)[7] = 42;
      lease.adopt(moved as ArrayBuffer);
      assert.equal(lease.buffer.byteLength, MiB);
      assert.equal(lease.buffer[7], 42);
      lease.release();
      assert.equal(budget.stats().pool.freeBytes, MiB);
      const again = await budget.leaseChunk(MiB, { signal: never() });
      assert.equal(again.buffer[7], 42, 'the same memory came back');
      assert.equal(budget.stats().pool.reused, 1);
      assert.equal(budget.stats().pool.allocated, 1);
      again.release();
    });

    it('pools the buffer once however often it is released', async () => {
      const budget = createMemoryBudget({ maxBytes: 4 * MiB });
      const lease = await budget.leaseChunk(MiB, { signal: never() });
      lease.release();
      lease.release();
      lease[Symbol.dispose]();
      assert.equal(budget.stats().pool.freeBytes, MiB);
      assert.equal(budget.inUseBytes(), 0);
    });

    it('never keeps a buffer larger than the whole budget free', async () => {
      const budget = createMemoryBudget({ maxBytes: MiB });
      const huge = await budget.leaseChunk(3 * MiB, { signal: never() });
      assert.equal(huge.buffer.byteLength, 3 * MiB);
      huge.release();
      assert.equal(budget.inUseBytes(), 0);
      assert.equal(budget.stats().pool.freeBytes, 0);
    });

    it('discarding returns the reservation but never pools the buffer', async () => {
      const budget = createMemoryBudget({ maxBytes: 4 * MiB });
      const lease = await budget.leaseChunk(MiB, { signal: never() });
      lease.discard();
      lease.release();
      assert.equal(budget.inUseBytes(), 0);
      assert.equal(budget.stats().pool.freeBytes, 0);
      const next = await budget.leaseChunk(MiB, { signal: never() });
      assert.equal(budget.stats().pool.allocated, 2);
      next[Symbol.dispose]();
      assert.equal(budget.inUseBytes(), 0);
      assert.equal(budget.stats().pool.freeBytes, MiB);
    });
  });

  describe('when a lease of a new size needs room beside free buffers', () => {
    it('drops free buffers only down to what fits beside the memory in use', async () => {
      const budget = createMemoryBudget({ maxBytes: 4 * MiB });
      (await budget.leaseChunk(MiB, { signal: never() })).release();
      assert.equal(budget.stats().pool.freeBytes, MiB);
      // 2 MiB in use leaves room for the 1 MiB kept free: nothing is dropped.
      const two = await budget.leaseChunk(2 * MiB, { signal: never() });
      assert.equal(budget.stats().pool.freeBytes, MiB);
      two.release();
      assert.equal(budget.stats().pool.freeBytes, 3 * MiB);
      // 4 MiB in use leaves no room: every free buffer of another size goes.
      const four = await budget.leaseChunk(4 * MiB, { signal: never() });
      assert.equal(budget.stats().pool.freeBytes, 0);
      four.release();
    });

    it('keeps free buffers of the same size (they are reused, not dropped)', async () => {
      const budget = createMemoryBudget({ maxBytes: 2 * MiB });
      (await budget.leaseChunk(2 * MiB, { signal: never() })).release();
      const again = await budget.leaseChunk(2 * MiB, { signal: never() });
      assert.equal(budget.stats().pool.reused, 1);
      again.release();
    });
  });
});

describe('the buffer pool', () => {
  describe('when buffers are given back', () => {
    it('reuses one of exactly the same size and allocates for other sizes', () => {
      const pool = createBufferPool({ maxFreeBytes: 1000 });
      const a = pool.take(100);
      assert.equal(a.byteLength, 100);
      assert.equal(a.buffer.byteLength, 100, 'backed by its own ArrayBuffer');
      pool.give(a.buffer as ArrayBuffer);
      assert.equal(pool.has(100), true);
      assert.equal(pool.has(50), false);
      assert.deepEqual(pool.stats(), { allocated: 1, reused: 0, freeBytes: 100 });
      const b = pool.take(50);
      assert.equal(b.byteLength, 50);
      assert.deepEqual(pool.stats(), { allocated: 2, reused: 0, freeBytes: 100 });
      const c = pool.take(100);
      assert.equal(c.buffer, a.buffer);
      assert.deepEqual(pool.stats(), { allocated: 2, reused: 1, freeBytes: 0 });
      assert.equal(pool.has(100), false);
    });

    it('keeps buffers up to maxFreeBytes exactly, and drops the one beyond', () => {
      const pool = createBufferPool({ maxFreeBytes: 300 });
      for (let i = 0; i < 3; i++) pool.give(new ArrayBuffer(100));
      assert.equal(pool.stats().freeBytes, 300);
      pool.give(new ArrayBuffer(1));
      assert.equal(pool.stats().freeBytes, 300);
      assert.equal(pool.has(1), false);
    });

    it('drops a detached buffer', () => {
      const pool = createBufferPool({ maxFreeBytes: 300 });
      const buffer = new ArrayBuffer(100);
      structuredClone(buffer, { transfer: [buffer] });
      pool.give(buffer);
      assert.deepEqual(pool.stats(), { allocated: 0, reused: 0, freeBytes: 0 });
      assert.equal(pool.has(0), false);
    });
  });

  describe('when trimmed', () => {
    it('drops free buffers until at most the limit is kept, and forgets emptied sizes', () => {
      const pool = createBufferPool({ maxFreeBytes: 1000 });
      pool.give(new ArrayBuffer(100));
      pool.give(new ArrayBuffer(100));
      pool.give(new ArrayBuffer(300));
      pool.trim(250);
      assert.ok(pool.stats().freeBytes <= 250);
      assert.equal(pool.stats().freeBytes, 0 + (pool.has(100) ? 100 : 0) + (pool.has(300) ? 300 : 0));
      pool.trim(1000);
      const kept = pool.stats().freeBytes;
      pool.trim(0);
      assert.ok(kept <= 250);
      assert.equal(pool.stats().freeBytes, 0);
      assert.equal(pool.has(100), false);
      assert.equal(pool.has(300), false);
      // An emptied size allocates afresh, then pools again.
      const fresh = pool.take(100);
      assert.equal(pool.stats().allocated, 1);
      pool.give(fresh.buffer as ArrayBuffer);
      assert.equal(pool.has(100), true);
    });

    it('keeps exactly the limit when the buffers add up to it', () => {
      const pool = createBufferPool({ maxFreeBytes: 1000 });
      pool.give(new ArrayBuffer(100));
      pool.give(new ArrayBuffer(100));
      pool.trim(200);
      assert.equal(pool.stats().freeBytes, 200);
      pool.trim(199);
      assert.equal(pool.stats().freeBytes, 100);
      assert.equal(pool.has(100), true);
    });
  });
});
