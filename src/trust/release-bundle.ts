/**
 * Sigstore-bundle releases (`*.sigstore.json`, docs/trust.md): a v0.3 bundle
 * whose DSSE envelope carries the release manifest as payload. The release
 * digest is the SHA-256 of the payload bytes, exactly as for a JWS release.
 */
import { createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import type { Manifest } from '../catalog/release.types.ts';
import { canonicalJson, sha256Digest } from '../catalog/signature.ts';
import { buildBundle, parseBundle } from './bundle.ts';
import { preAuthEncoding } from './dsse.ts';
import { keyFingerprint, signWithKey } from './public-key.ts';
import { TrustRefusedError } from './trust-error.ts';
import { verifyWithAny } from './verifier.ts';
import type { TrustVerifier, VerifiedSignature, VerifyOptions } from './verifier.types.ts';

export const RELEASE_PAYLOAD_TYPE = 'application/vnd.modelgate.release+json';
/** A catalog file with this suffix is always a bundle release, never an unsigned manifest. */
export const RELEASE_BUNDLE_SUFFIX = '.sigstore.json';

/**
 * Signs a manifest into a bundle JSON text. With `chain` (DER, leaf first)
 * the bundle carries the certificates and the leaf must hold the key's
 * public half; without, it carries the key hint (hex SHA-256 of the PEM).
 */
export function signReleaseBundle(manifest: Manifest, key: KeyObject, chain?: Buffer[]): string {
  const payload = Buffer.from(canonicalJson(manifest), 'utf8');
  const sig = signWithKey(key, preAuthEncoding(RELEASE_PAYLOAD_TYPE, payload));
  const publicKey = createPublicKey(key);
  if (chain !== undefined && chain.length > 0) {
    const leaf = new X509Certificate(chain[0] as Buffer);
    if (!leaf.publicKey.equals(publicKey))
      throw new TypeError('the leaf certificate does not hold the signing key');
  }
  const material =
    chain !== undefined && chain.length > 0
      ? { kind: 'certificates' as const, certificates: chain }
      : { kind: 'publicKey' as const, hint: keyFingerprint(publicKey).slice('sha256:'.length) };
  const bundle = buildBundle(
    { payloadType: RELEASE_PAYLOAD_TYPE, payload, signatures: [{ sig, keyid: '' }] },
    material,
  );
  return `${JSON.stringify(bundle, null, 2)}\n`;
}

export interface VerifiedReleaseBundle {
  /** The manifest bytes exactly as signed. */
  payload: Buffer;
  /** `sha256:` + hex SHA-256 of `payload`: the release digest. */
  digest: string;
  signature: VerifiedSignature;
}

/**
 * Verifies a `*.sigstore.json` release against trusted signers. Throws
 * TrustRefusedError (`malformed`, `wrong_envelope` for another payload type,
 * or the verifier's reason). The manifest itself is the caller's to validate.
 */
export async function verifyReleaseBundle(
  bytes: Uint8Array,
  verifiers: readonly TrustVerifier[],
  options: VerifyOptions = {},
): Promise<VerifiedReleaseBundle> {
  const bundle = parseBundle(bytes);
  // Checked before any key: a signed OMS statement or attestation is not a release.
  if (bundle.envelope.payloadType !== RELEASE_PAYLOAD_TYPE) {
    throw new TrustRefusedError(
      'wrong_envelope',
      `expected payloadType ${RELEASE_PAYLOAD_TYPE}, got ${bundle.envelope.payloadType}`,
    );
  }
  const signature = await verifyWithAny(verifiers, { kind: 'bundle', bundle }, options);
  return { payload: signature.payload, digest: sha256Digest(signature.payload), signature };
}
