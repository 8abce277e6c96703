/**
 * PEM public-key signers (docs/trust.md "publicKeyFile"): ECDSA P-256/384/521
 * with the hash that follows the curve (as OMS and Sigstore do), Ed25519, and
 * RSA (PKCS#1 v1.5, SHA-256) — all through node:crypto, because
 * @sigstore/core hashes with SHA-256 whatever the curve.
 */
import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ParsedBundle } from './bundle.ts';
import { preAuthEncoding } from './dsse.ts';
import { TrustConfigError, TrustRefusedError } from './trust-error.ts';
import type { SignedInput, TrustVerifier, VerifiedSignature } from './verifier.types.ts';

const MAX_PEM_BYTES = 1024 * 1024;
const MIN_RSA_BITS = 2048;

const CURVE_HASHES: Record<string, string> = {
  prime256v1: 'sha256',
  secp384r1: 'sha384',
  secp521r1: 'sha512',
};

/**
 * The hash a key signs with: null for Ed25519 (the algorithm hashes
 * internally). Throws for key types and curves OMS does not use.
 */
export function hashForKey(key: KeyObject): string | null {
  const type = key.asymmetricKeyType;
  if (type === 'ed25519') return null;
  if (type === 'ec') {
    const hash = CURVE_HASHES[key.asymmetricKeyDetails?.namedCurve ?? ''];
    if (hash === undefined) {
      throw new TypeError(
        `expected curve P-256, P-384 or P-521, got ${key.asymmetricKeyDetails?.namedCurve}`,
      );
    }
    return hash;
  }
  if (type === 'rsa') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
      throw new TypeError(`expected an RSA key of at least ${MIN_RSA_BITS} bits`);
    }
    return 'sha256';
  }
  throw new TypeError(`expected an ECDSA, Ed25519 or RSA key, got ${type}`);
}

/** Verifies a raw signature over `data` with the hash that follows the key (ECDSA signatures are DER). */
export function verifyWithKey(key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(hashForKey(key), data, { key, dsaEncoding: 'der' }, signature);
  } catch {
    // A malformed DER signature makes node:crypto throw; it is simply not a valid signature.
    return false;
  }
}

/** Signs `data` with the hash that follows the key (ECDSA signatures DER-encoded, as Sigstore writes them). */
export function signWithKey(key: KeyObject, data: Uint8Array): Buffer {
  return sign(hashForKey(key), data, { key, dsaEncoding: 'der' });
}

/**
 * A public key's identity: `sha256:` + hex SHA-256 of its canonical SPKI PEM
 * text — the `publicKey.hint` the reference OMS tool writes.
 */
export function keyFingerprint(key: KeyObject): string {
  return `sha256:${createHash('sha256')
    .update(key.export({ type: 'spki', format: 'pem' }))
    .digest('hex')}`;
}

/** Reads a PEM public key (surrounding text, e.g. certtool output, is tolerated). */
export async function loadPublicKeyFile(file: string): Promise<KeyObject> {
  let text: string;
  try {
    const bytes = await readFile(file);
    if (bytes.length > MAX_PEM_BYTES) throw new Error(`larger than ${MAX_PEM_BYTES} bytes`);
    text = bytes.toString('utf8');
  } catch (error) {
    throw new TrustConfigError(
      file,
      `cannot read public key: ${(error as NodeJS.ErrnoException).code ?? error}`,
      {
        cause: error,
      },
    );
  }
  const pem = /-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/.exec(text);
  if (pem === null) throw new TrustConfigError(file, 'expected a PEM "BEGIN PUBLIC KEY" block');
  try {
    const key = createPublicKey(pem[0]);
    hashForKey(key);
    return key;
  } catch (error) {
    throw new TrustConfigError(file, `unusable public key: ${(error as Error).message}`, { cause: error });
  }
}

/** True when some signature of the bundle's envelope verifies with `key` over the DSSE PAE. */
export function envelopeVerifies(bundle: ParsedBundle, key: KeyObject): boolean {
  const { envelope } = bundle;
  const pae = preAuthEncoding(envelope.payloadType, envelope.payload);
  return envelope.signatures.some((signature) => verifyWithKey(key, pae, signature.sig));
}

export function requireBundle(input: SignedInput, name: string): ParsedBundle {
  if (input.kind !== 'bundle') {
    throw new TrustRefusedError('wrong_envelope', `signer "${name}" verifies Sigstore bundles, got a JWS`);
  }
  return input.bundle;
}

/** A verifier for one PEM public key, read from `file` now. */
export async function createPublicKeyVerifier(name: string, file: string): Promise<TrustVerifier> {
  const key = await loadPublicKeyFile(file);
  const fingerprint = keyFingerprint(key);
  return {
    name,
    method: 'key',
    async verify(input: SignedInput): Promise<VerifiedSignature> {
      const bundle = requireBundle(input, name);
      if (bundle.material.kind !== 'publicKey') {
        throw new TrustRefusedError(
          'untrusted_key',
          `signer "${name}" expects a key-signed bundle, got certificates`,
        );
      }
      // The hint is unsigned and only a label; a wrong one means "signed with some other key".
      const { hint } = bundle.material;
      if (hint !== '' && `sha256:${hint}` !== fingerprint && hint !== fingerprint) {
        throw new TrustRefusedError(
          'untrusted_key',
          `bundle key hint ${hint} is not the key of signer "${name}"`,
        );
      }
      if (!envelopeVerifies(bundle, key)) {
        throw new TrustRefusedError(
          'bad_signature',
          `signature does not verify with the key of signer "${name}"`,
        );
      }
      return {
        signer: name,
        method: 'key',
        identity: fingerprint,
        payloadType: bundle.envelope.payloadType,
        payload: bundle.envelope.payload,
      };
    },
  };
}
