import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createCoalescer, createSingleFlight } from '../../src/util/single-flight.ts';

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('single flight', () => {
  it('shares one running call between concurrent callers of a key, not across keys', async () => {
    const flight = createSingleFlight<string, number>();
    let calls = 0;
    const gate = deferred<number>();
    const fn = () => {
      calls++;
      return gate.promise;
    };
    const first = flight.run('a', fn);
    const second = flight.run('a', fn);
    const other = flight.run('b', async () => 7);
    assert.equal(first, second);
    assert.equal(flight.size, 2);
    gate.resolve(42);
    assert.deepEqual(await Promise.all([first, second, other]), [42, 42, 7]);
    assert.equal(calls, 1);
    assert.equal(flight.size, 0);
  });

  it('never remembers a failure: the next call runs again', async () => {
    const flight = createSingleFlight<string, number>();
    let calls = 0;
    await assert.rejects(
      flight.run('a', async () => {
        calls++;
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(await flight.run('a', async () => ++calls), 2);
  });

  it('turns a synchronous throw into a rejection', async () => {
    const flight = createSingleFlight<string, number>();
    await assert.rejects(
      flight.run('a', () => {
        throw new Error('sync');
      }),
      /sync/,
    );
    assert.equal(flight.current('a'), undefined);
  });
});

describe('coalescer (single flight with one trailing call)', () => {
  it('runs once for callers during a run, after that run, and never more than one at a time', async () => {
    const gates = [deferred<number>(), deferred<number>()];
    let calls = 0;
    let running = 0;
    let maxRunning = 0;
    const run = createCoalescer(async () => {
      const gate = gates[calls++];
      running++;
      maxRunning = Math.max(maxRunning, running);
      try {
        return await (gate ? gate.promise : Promise.resolve(-1));
      } finally {
        running--;
      }
    });
    const first = run();
    const second = run();
    const third = run();
    assert.equal(second, third);
    assert.equal(calls, 1);
    gates[0]?.resolve(1);
    assert.equal(await first, 1);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(calls, 2, 'the follow-up starts after the first run');
    gates[1]?.resolve(2);
    assert.deepEqual(await Promise.all([second, third]), [2, 2]);
    assert.equal(maxRunning, 1);
  });

  it('runs the follow-up even when the running call failed', async () => {
    let calls = 0;
    const gate = deferred<number>();
    const run = createCoalescer(async () => (++calls === 1 ? gate.promise : calls));
    const first = run();
    const second = run();
    gate.reject(new Error('first failed'));
    await assert.rejects(first, /first failed/);
    assert.equal(await second, 2);
  });
});
