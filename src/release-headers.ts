/**
 * The headers that tell a client who signed a release, as the proxy verified
 * it (README "HTTP API"): `Modelgate-Release-Signer-Identity` and
 * `Modelgate-Release-Upstream`, each a list of `key="value"` pairs in the
 * style of RFC 8941 dictionaries. Written by the server, read by `fetch`,
 * which records them in `.modelgate-release.json`.
 */

export const SIGNER_IDENTITY_HEADER = 'Modelgate-Release-Signer-Identity';
export const UPSTREAM_HEADER = 'Modelgate-Release-Upstream';

/** `method` (jwks, key, certificate, sigstore), `identity`, `issuer`, and for upstream evidence `signer`. */
export type IdentityFields = Record<string, string>;

/** Header values are ASCII: anything else (a certificate subject in UTF-8) is percent-encoded. */
function quote(value: string): string {
  const ascii = value.replace(/[^\x20-\x7e]/gu, (ch) => encodeURIComponent(ch));
  return `"${ascii.replace(/[\\"]/g, (ch) => `\\${ch}`)}"`;
}

/** `{method: 'key', identity: 'sha256:…'}` → `method="key", identity="sha256:…"`; undefined values are left out. */
export function formatIdentityHeader(fields: Record<string, string | undefined>): string {
  return Object.entries(fields)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([key, value]) => `${key}=${quote(value)}`)
    .join(', ');
}

const PAIR = /\s*([a-z][a-z0-9_-]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/gy;

/** Parses what formatIdentityHeader wrote; undefined for a malformed value (a client records nothing then). */
export function parseIdentityHeader(value: string | undefined): IdentityFields | undefined {
  if (value === undefined || value.length === 0 || value.length > 8192) return undefined;
  const fields: IdentityFields = {};
  PAIR.lastIndex = 0;
  let consumed = 0;
  for (let match = PAIR.exec(value); match !== null; match = PAIR.exec(value)) {
    const [whole, key, raw] = match;
    if (key === undefined || raw === undefined) return undefined;
    try {
      fields[key] = decodeURIComponent(raw.replace(/\\(.)/g, '$1'));
    } catch {
      return undefined;
    }
    consumed += whole.length;
    if (PAIR.lastIndex >= value.length) break;
  }
  return consumed === value.length && Object.keys(fields).length > 0 ? fields : undefined;
}
