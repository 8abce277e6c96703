import { createHash } from 'node:crypto';
import {
  CompactSign,
  compactVerify,
  createLocalJWKSet,
  decodeProtectedHeader,
  errors,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type LocalJWKSet,
} from 'jose';
import { KeyFileError, loadJwksFile } from '../keys.ts';
import type { RejectionReason } from './catalog.types.ts';
import { ManifestError, validateManifest } from './manifest.ts';
import type { Manifest, ReleaseTrust } from './release.types.ts';

/** The JWS `typ` of a signed release (docs/releases.md); anything else is some other signed document. */
export const RELEASE_JWS_TYPE = 'modelgate-release+jws';

/** Signature algorithms a release may use (docs/releases.md). Pinned on every verification. */
export const RELEASE_ALGORITHMS = ['ES256', 'EdDSA', 'RS256', 'PS256'] as const;
export type ReleaseAlgorithm = (typeof RELEASE_ALGORITHMS)[number];

export function isReleaseAlgorithm(value: unknown): value is ReleaseAlgorithm {
  return typeof value === 'string' && (RELEASE_ALGORITHMS as readonly string[]).includes(value);
}

/** A signer whose key source is a JWKS file (modelgate's own JWS releases). */
export interface JwksSignerConfig {
  name: string;
  jwksFile: string;
  environments: readonly string[];
}

/** A configured signer with its public keys loaded. */
export interface LoadedSigner {
  name: string;
  /** Environments whose releases this signer may sign. */
  environments: readonly string[];
  /** Where the keys came from (for messages). */
  jwksFile: string;
  jwks: JSONWebKeySet;
  /** Key ids in `jwks`, for a quick "is this our signer" check. */
  kids: ReadonlySet<string>;
  /** jose key resolver over `jwks` (picks the key by `kid` and `alg`). */
  keySet: LocalJWKSet;
}

/** A release file the catalog refuses, with the `reason` it is counted under. */
export class ReleaseRejectedError extends Error {
  readonly reason: RejectionReason;

  constructor(reason: RejectionReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ReleaseRejectedError';
    this.reason = reason;
  }
}

/** A release whose payload parsed and validated (and whose signature verified, when signed). */
export interface VerifiedRelease {
  /** The payload bytes exactly as signed (or the `.json` file bytes). */
  payload: Buffer;
  manifest: Manifest;
  /** `sha256:` + hex SHA-256 of `payload`. */
  digest: string;
  /** The signer whose key verified the signature; null when unsigned. */
  signer: LoadedSigner | null;
  /** The `kid` of the protected header; null when unsigned. */
  kid: string | null;
  trust: ReleaseTrust;
}

/**
 * Canonical JSON of a manifest: RFC 8785 (JCS) for the value shapes a
 * manifest holds — object keys sorted by UTF-16 code units, no whitespace,
 * strings and integers as ECMAScript JSON.stringify writes them. The same
 * manifest always gives the same bytes, so the same release digest.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('non-finite number');
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`cannot encode ${typeof value} as JSON`);
    return text;
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
}

/** `sha256:` + lowercase hex SHA-256 of `bytes`. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * Signs a manifest into a JWS in compact serialization (docs/releases.md): protected
 * header `{alg, kid, typ: "modelgate-release+jws"}`, payload the canonical
 * JSON bytes of the manifest. The manifest is validated first, so nothing
 * the catalog would refuse is ever signed.
 */
export async function signManifest(
  manifest: Manifest,
  privateJwk: JWK,
  kid: string,
  alg: ReleaseAlgorithm,
): Promise<string> {
  validateManifest(manifest);
  const key = await importJWK(privateJwk, alg);
  const payload = Buffer.from(canonicalJson(manifest), 'utf8');
  return new CompactSign(payload).setProtectedHeader({ alg, kid, typ: RELEASE_JWS_TYPE }).sign(key);
}

/** Loads every signer's JWKS file. Throws KeyFileError naming the first bad file. */
export async function loadSigners(configs: readonly JwksSignerConfig[]): Promise<LoadedSigner[]> {
  return Promise.all(configs.map((config) => loadSigner(config)));
}

/**
 * Loads one signer's public keys. Every key needs a `kid`: releases name
 * their key by `kid`, so a key without one could never be chosen.
 */
export async function loadSigner(config: JwksSignerConfig): Promise<LoadedSigner> {
  const jwks = await loadJwksFile(config.jwksFile);
  const kids = new Set<string>();
  jwks.keys.forEach((key, i) => {
    if (typeof key.kid !== 'string' || key.kid === '') {
      throw new KeyFileError(config.jwksFile, `keys[${i}]: a release signer key needs a "kid"`);
    }
    kids.add(key.kid);
  });
  let keySet: LocalJWKSet;
  try {
    keySet = createLocalJWKSet(jwks);
  } catch (error) {
    throw new KeyFileError(config.jwksFile, `invalid JWKS: ${(error as Error).message}`, { cause: error });
  }
  return {
    name: config.name,
    environments: [...config.environments],
    jwksFile: config.jwksFile,
    jwks,
    kids,
    keySet,
  };
}

const BASE64URL_RE = /^[A-Za-z0-9_-]*$/;

/**
 * Verifies a signed release (the text of a `.jws` file; surrounding
 * whitespace is ignored) against the configured signers. Throws
 * ReleaseRejectedError with the catalog reason:
 * `invalid_jws` (not a compact JWS, or a header we do not accept),
 * `wrong_type` (`typ` is not `modelgate-release+jws`), `unknown_signer` (no
 * signer has the `kid`), `bad_signature`, `invalid_json`, `invalid_manifest`.
 * A signature that verifies with a signer not allowed for the manifest's
 * environment is returned with trust `untrusted_signer`: policy decides.
 */
export async function verifyRelease(jws: string, signers: readonly LoadedSigner[]): Promise<VerifiedRelease> {
  const token = jws.trim();
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((part) => BASE64URL_RE.test(part)) || parts[0] === '') {
    throw new ReleaseRejectedError(
      'invalid_jws',
      'expected a JWS in compact serialization (three base64url parts)',
    );
  }
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(token) as Record<string, unknown>;
  } catch (error) {
    throw new ReleaseRejectedError('invalid_jws', `malformed protected header: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (header.typ !== RELEASE_JWS_TYPE) {
    throw new ReleaseRejectedError(
      'wrong_type',
      `expected typ "${RELEASE_JWS_TYPE}", got ${JSON.stringify(header.typ ?? null)}`,
    );
  }
  if (!isReleaseAlgorithm(header.alg)) {
    throw new ReleaseRejectedError(
      'invalid_jws',
      `expected alg one of ${RELEASE_ALGORITHMS.join(', ')}, got ${JSON.stringify(header.alg ?? null)}`,
    );
  }
  // The release digest is the hash of the base64url-decoded payload; an unencoded (b64: false)
  // payload or critical extensions we do not implement would change what was signed.
  if ('crit' in header || 'b64' in header) {
    throw new ReleaseRejectedError('invalid_jws', 'expected no "crit" or "b64" header parameter');
  }
  const kid = header.kid;
  if (typeof kid !== 'string' || kid === '') {
    throw new ReleaseRejectedError('invalid_jws', 'expected a "kid" in the protected header');
  }
  const candidates = signers.filter((signer) => signer.kids.has(kid));
  if (candidates.length === 0) {
    throw new ReleaseRejectedError('unknown_signer', `no configured signer has key "${kid}"`);
  }

  // The same key may be configured for several signers; prefer one trusted for the environment,
  // which is only known after the payload verified and parsed.
  let verified: { payload: Uint8Array; signer: LoadedSigner } | undefined;
  const verifiedBy: LoadedSigner[] = [];
  let failure: unknown;
  for (const signer of candidates) {
    try {
      const result = await compactVerify(token, signer.keySet, { algorithms: [...RELEASE_ALGORITHMS] });
      verified ??= { payload: result.payload, signer };
      verifiedBy.push(signer);
    } catch (error) {
      failure ??= error;
    }
  }
  if (verified === undefined) throw toRejection(failure, kid);

  const payload = Buffer.from(
    verified.payload.buffer,
    verified.payload.byteOffset,
    verified.payload.byteLength,
  );
  const manifest = parseManifest(payload);
  const trusted = verifiedBy.find((signer) => signer.environments.includes(manifest.environment));
  return {
    payload,
    manifest,
    digest: sha256Digest(payload),
    signer: trusted ?? verified.signer,
    kid,
    trust: trusted ? 'trusted' : 'untrusted_signer',
  };
}

/**
 * Loads an unsigned manifest (the bytes of a `.json` file). Its release
 * digest is the hash of the file bytes. Throws ReleaseRejectedError
 * `invalid_json` or `invalid_manifest`.
 */
export function parseUnsignedRelease(bytes: Buffer): VerifiedRelease {
  const manifest = parseManifest(bytes);
  return {
    payload: bytes,
    manifest,
    digest: sha256Digest(bytes),
    signer: null,
    kid: null,
    trust: 'unsigned',
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseManifest(bytes: Uint8Array): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch (error) {
    throw new ReleaseRejectedError('invalid_json', `payload is not UTF-8 JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    return validateManifest(value);
  } catch (error) {
    if (error instanceof ManifestError) {
      throw new ReleaseRejectedError('invalid_manifest', error.message, { cause: error });
    }
    throw error;
  }
}

/** Maps a jose verification failure to a rejection, keeping the original as `cause`. */
function toRejection(error: unknown, kid: string): ReleaseRejectedError {
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return new ReleaseRejectedError('bad_signature', `signature does not verify with key "${kid}"`, {
      cause: error,
    });
  }
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return new ReleaseRejectedError(
      'bad_signature',
      `key "${kid}" cannot verify this signature: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JOSEAlgNotAllowed) {
    return new ReleaseRejectedError('invalid_jws', `malformed JWS: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return new ReleaseRejectedError(
    'bad_signature',
    `cannot verify: ${(error as Error)?.message ?? String(error)}`,
    {
      cause: error,
    },
  );
}
