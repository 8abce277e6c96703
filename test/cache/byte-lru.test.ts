import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteLru } from '../../src/cache/byte-lru.ts';

describe('ByteLru', () => {
  it('when over the limit, names the least recently used entries first, just enough of them', () => {
    const lru = new ByteLru();
    lru.set('a', 10, 1);
    lru.set('b', 10, 2);
    lru.set('c', 10, 3);
    lru.touch('a', 4);
    assert.equal(lru.total, 30);
    assert.deepEqual(
      lru.victims(15).map(([key]) => key),
      ['b', 'c'],
    );
    assert.deepEqual(lru.victims(30), []);
  });

  it('when an entry is replaced or deleted, keeps the byte total exact', () => {
    const lru = new ByteLru();
    lru.set('a', 10, 1);
    lru.set('a', 7, 2);
    assert.equal(lru.total, 7);
    assert.equal(lru.delete('a'), true);
    assert.equal(lru.delete('a'), false);
    assert.equal(lru.total, 0);
  });

  it('when reset from a scan, takes the given order as oldest first', () => {
    const lru = new ByteLru();
    lru.reset([
      ['old', { size: 5, usedAt: 1 }],
      ['new', { size: 5, usedAt: 9 }],
    ]);
    assert.deepEqual(
      lru.victims(5).map(([key]) => key),
      ['old'],
    );
  });
});
