/**
 * Which failed answers the cloud stores call transient (the engine retries
 * only those), and how `Retry-After` is read.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRetryAfter, transientAnswer, transientTransport } from '../../src/stores/cloud-http.ts';

describe('when a store classifies an error answer', () => {
  it('calls 429, 503 and throttling codes throttled, whatever their status', () => {
    assert.deepEqual(transientAnswer(503, 'SlowDown', undefined), { reason: 'throttled' });
    assert.deepEqual(transientAnswer(429, undefined, undefined), { reason: 'throttled' });
    assert.deepEqual(transientAnswer(503, 'ServerBusy', undefined), { reason: 'throttled' });
    // GCS may send its rate limits as 403.
    assert.deepEqual(transientAnswer(403, 'rateLimitExceeded', undefined), { reason: 'throttled' });
  });

  it('calls 500, 502 and 504 server errors', () => {
    for (const status of [500, 502, 504]) {
      assert.deepEqual(transientAnswer(status, undefined, undefined), { reason: 'server_error' });
    }
  });

  it('calls 400, 403, 404, 412 and 416 final', () => {
    for (const status of [400, 403, 404, 412, 416]) {
      assert.equal(transientAnswer(status, 'AccessDenied', undefined), undefined, String(status));
    }
  });

  it('carries Retry-After in milliseconds', () => {
    assert.deepEqual(transientAnswer(503, 'SlowDown', '2'), { reason: 'throttled', retryAfterMs: 2000 });
  });
});

describe('when Retry-After is read', () => {
  const now = Date.parse('2026-11-29T10:00:00Z');

  it('reads delay-seconds', () => {
    assert.equal(parseRetryAfter('0', now), 0);
    assert.equal(parseRetryAfter(' 7 ', now), 7000);
  });

  it('reads an HTTP date as the time left until it, never negative', () => {
    assert.equal(parseRetryAfter('Sun, 29 Nov 2026 10:00:03 GMT', now), 3000);
    assert.equal(parseRetryAfter('Sun, 29 Nov 2026 09:59:00 GMT', now), 0);
  });

  it('ignores a missing or malformed value', () => {
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter(null, now), undefined);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter('-5', now), undefined);
  });
});

describe('when a request fails before an answer', () => {
  it('calls a reset or refused connection transient, also when wrapped', () => {
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    assert.deepEqual(transientTransport(reset), { reason: 'connection' });
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    assert.deepEqual(transientTransport(new Error('request failed', { cause: refused })), {
      reason: 'connection',
    });
  });

  it('leaves other failures final', () => {
    assert.equal(
      transientTransport(Object.assign(new Error('bad cert'), { code: 'CERT_HAS_EXPIRED' })),
      undefined,
    );
    assert.equal(transientTransport('not an error'), undefined);
  });
});
