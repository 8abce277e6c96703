/**
 * The `Repr-Digest` header value (src/integrity/digest.ts): a mutation run
 * showed nothing checked that a malformed digest is refused.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { reprDigestHeader } from '../../src/integrity/digest.ts';

describe('the Repr-Digest header', () => {
  describe('when given a sha256 digest', () => {
    it('carries the digest bytes in base64 as RFC 9530 sha-256', () => {
      const bytes = createHash('sha256').update('model').digest();
      assert.equal(
        reprDigestHeader(`sha256:${bytes.toString('hex')}`),
        `sha-256=:${bytes.toString('base64')}:`,
      );
    });
  });

  describe('when given something that is not a sha256 digest', () => {
    it('throws, naming the value, instead of sending a wrong header', () => {
      assert.throws(() => reprDigestHeader('md5:abcd'), /not a sha256 digest: md5:abcd/);
      assert.throws(() => reprDigestHeader(`sha256:${'0'.repeat(63)}`), /not a sha256 digest/);
    });
  });
});
