import { timingSafeEqual } from 'node:crypto';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** `sha256:<hex>` → the 32 digest bytes, or undefined when malformed. */
export function parseSha256(digest: string): Buffer | undefined {
  if (!digest.startsWith('sha256:')) return undefined;
  const hex = digest.slice(7);
  return SHA256_HEX.test(hex) ? Buffer.from(hex, 'hex') : undefined;
}

export function isSha256Hex(hex: string): boolean {
  return SHA256_HEX.test(hex);
}

/**
 * Compares a computed digest with an expected lowercase hex digest in
 * constant time, so response timing never tells an attacker how many leading
 * bytes of a forged chunk matched.
 */
export function digestEquals(actual: Buffer, expectedHex: string): boolean {
  if (!SHA256_HEX.test(expectedHex)) return false;
  const expected = Buffer.from(expectedHex, 'hex');
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** RFC 9530 `Repr-Digest` value for a `sha256:<hex>` digest. */
export function reprDigestHeader(digest: string): string {
  const bytes = parseSha256(digest);
  if (!bytes) throw new Error(`not a sha256 digest: ${digest}`);
  return `sha-256=:${bytes.toString('base64')}:`;
}
