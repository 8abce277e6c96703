import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isModelgateError } from '../../src/errors.ts';
import { createMemoryBudget } from '../../src/integrity/memory-budget.ts';

const MiB = 1024 * 1024;
const never = () => new AbortController().signal;

describe('the transfer memory budget', () => {
  describe('when requests do not fit', () => {
    it('grants them in FIFO order as memory is released, never above the limit', async () => {
      let peak = 0;
      const budget = createMemoryBudget({
        maxBytes: 3 * MiB,
        observe: (inUse) => {
          peak = Math.max(peak, inUse);
        },
      });
      const first = await budget.reserve(2 * MiB, { signal: never() });
      const order: string[] = [];
      const track =
        (name: string) =>
        <T>(value: T) => {
          order.push(name);
          return value;
        };
      const big = budget.reserve(2 * MiB, { signal: never() }).then(track('big'));
      // A small request behind a large one waits its turn, so the large one is never starved.
      const small = budget.reserve(MiB / 2, { signal: never() }).then(track('small'));
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(order, []);
      assert.equal(budget.waiting(), 2);
      first.release();
      const [b, s] = await Promise.all([big, small]);
      assert.deepEqual(order, ['big', 'small']);
      assert.ok(peak <= 3 * MiB, `peak ${peak}`);
      b.release();
      s.release();
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when the wait for memory times out', () => {
    it('refuses with MG_OVERLOADED and a Retry-After header, and leaves the queue', async () => {
      const budget = createMemoryBudget({ maxBytes: MiB });
      using held = await budget.reserve(MiB, { signal: never() });
      await assert.rejects(budget.reserve(MiB, { signal: never(), timeoutMs: 30 }), (error) => {
        assert.ok(isModelgateError(error, 'MG_OVERLOADED'));
        assert.ok(Number(error.headers['Retry-After']) >= 1);
        return true;
      });
      assert.equal(budget.waiting(), 0);
      assert.equal(held.bytes, MiB);
    });
  });

  describe('when a waiting client goes away', () => {
    it('leaves the queue and the requests behind it are served', async () => {
      const budget = createMemoryBudget({ maxBytes: 2 * MiB });
      const held = await budget.reserve(MiB, { signal: never() });
      const gone = new AbortController();
      const abandoned = budget.reserve(2 * MiB, { signal: gone.signal });
      const behind = budget.reserve(MiB, { signal: never() });
      gone.abort(new Error('client went away'));
      await assert.rejects(abandoned, /client went away/);
      const next = await behind;
      assert.equal(budget.inUseBytes(), 2 * MiB);
      next.release();
      held.release();
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when one request is larger than the whole budget', () => {
    it('grants it only while nothing else is held', async () => {
      const budget = createMemoryBudget({ maxBytes: MiB });
      const small = await budget.reserve(MiB / 4, { signal: never() });
      let granted = false;
      const huge = budget.reserve(4 * MiB, { signal: never() }).then((reservation) => {
        granted = true;
        return reservation;
      });
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(granted, false);
      small.release();
      (await huge).release();
      assert.equal(budget.inUseBytes(), 0);
    });
  });

  describe('when a leased chunk buffer was transferred away and never came back', () => {
    it('still returns its full reservation to the budget', async () => {
      // Regression: the pool subtracted the released buffer's byteLength, which is 0 once transferred to a worker that died, so in-use memory never went down.
      const budget = createMemoryBudget({ maxBytes: 4 * MiB });
      const lease = await budget.leaseChunk(MiB, { signal: never() });
      structuredClone(lease.buffer.buffer, { transfer: [lease.buffer.buffer as ArrayBuffer] });
      assert.equal(lease.buffer.byteLength, 0);
      lease.release();
      lease.release();
      assert.equal(budget.inUseBytes(), 0);
      assert.equal(budget.stats().pool.freeBytes, 0);
    });

    it('pools a buffer released normally and reuses it', async () => {
      const budget = createMemoryBudget({ maxBytes: 4 * MiB });
      {
        using lease = await budget.leaseChunk(MiB, { signal: never() });
        lease.buffer[0] = 1;
      }
      assert.equal(budget.inUseBytes(), 0);
      using again = await budget.leaseChunk(MiB, { signal: never() });
      assert.equal(budget.stats().pool.reused, 1);
      assert.equal(again.buffer.byteLength, MiB);
    });
  });
});
