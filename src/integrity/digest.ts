import { parseSha256 } from '../rules.ts';

export { digestEquals, isSha256Hex, parseSha256 } from '../rules.ts';

/** RFC 9530 `Repr-Digest` value for a `sha256:<hex>` digest. */
export function reprDigestHeader(digest: string): string {
  const bytes = parseSha256(digest);
  if (!bytes) throw new Error(`not a sha256 digest: ${digest}`);
  return `sha-256=:${bytes.toString('base64')}:`;
}
