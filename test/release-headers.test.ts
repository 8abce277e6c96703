import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatIdentityHeader, parseIdentityHeader } from '../src/release-headers.ts';

describe('release identity headers', () => {
  it('round-trips an identity with quotes, commas and non-ASCII characters', () => {
    const fields = { method: 'certificate', identity: 'CN=Ünïcode, O="NGC" \\ Corp', issuer: 'CN=root' };
    const header = formatIdentityHeader(fields);
    assert.match(header, /^[\x20-\x7e]+$/);
    assert.deepEqual(parseIdentityHeader(header), fields);
  });

  it('leaves out undefined fields', () => {
    assert.equal(
      formatIdentityHeader({ method: 'key', identity: 'sha256:ab', issuer: undefined }),
      'method="key", identity="sha256:ab"',
    );
  });

  it('refuses malformed values instead of guessing', () => {
    for (const bad of ['', 'method=key', 'method="key" identity="x"', 'method="unterminated', '"x"="y"']) {
      assert.equal(parseIdentityHeader(bad), undefined, bad);
    }
  });
});
