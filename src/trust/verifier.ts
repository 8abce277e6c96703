/**
 * The factory that turns a configured signer into a TrustVerifier (docs/trust.md).
 * Files are read here, at configuration load, so a bad key or trusted root
 * fails start-up (or a SIGHUP reload) instead of a request.
 */
import { isAbsolute, resolve } from 'node:path';
import { isRfc3339 } from '../catalog/manifest.ts';
import { createJwksVerifier } from './jwks.ts';
import { createPublicKeyVerifier } from './public-key.ts';
import { createSigstoreVerifier } from './sigstore.ts';
import { TrustConfigError, TrustRefusedError } from './trust-error.ts';
import type {
  SignedInput,
  SignerSpec,
  TrustVerifier,
  VerifiedSignature,
  VerifyOptions,
} from './verifier.types.ts';
import { createCertificateVerifier } from './x509.ts';

function resolveFrom(baseDir: string, file: string): string {
  return isAbsolute(file) ? file : resolve(baseDir, file);
}

async function createKindVerifier(spec: SignerSpec, baseDir: string): Promise<TrustVerifier> {
  if ('jwksFile' in spec) return createJwksVerifier(spec.name, resolveFrom(baseDir, spec.jwksFile));
  if ('publicKeyFile' in spec)
    return createPublicKeyVerifier(spec.name, resolveFrom(baseDir, spec.publicKeyFile));
  if ('certificate' in spec)
    return createCertificateVerifier(spec.name, resolveFrom(baseDir, spec.certificate.caFile));
  const { trustedRoot, identities, tlogThreshold } = spec.sigstore;
  return createSigstoreVerifier(spec.name, {
    trustedRoot: resolveFrom(baseDir, trustedRoot),
    identities,
    ...(tlogThreshold === undefined ? {} : { tlogThreshold }),
  });
}

/**
 * Builds the verifier for one signer, reading its key files (relative paths
 * against `baseDir`, the configuration's folder). Throws TrustConfigError
 * (or KeyFileError for a JWKS) naming the file. A `revoked` signer refuses
 * everything from its revocation instant on, with reason `signer_revoked`.
 */
export async function createVerifier(spec: SignerSpec, baseDir: string): Promise<TrustVerifier> {
  const inner = await createKindVerifier(spec, baseDir);
  const { revoked } = spec;
  if (revoked === undefined) return inner;
  if (!isRfc3339(revoked.at)) {
    throw new TrustConfigError(
      `signer "${spec.name}"`,
      `revoked.at must be an RFC 3339 date-time, got "${revoked.at}"`,
    );
  }
  const revokedAt = new Date(revoked.at);
  return {
    name: inner.name,
    method: inner.method,
    async verify(input: SignedInput, options: VerifyOptions = {}): Promise<VerifiedSignature> {
      // Checked before the signature: a revoked signer's output is refused whatever it claims.
      const at = options.at ?? new Date();
      if (at >= revokedAt) {
        throw new TrustRefusedError(
          'signer_revoked',
          `signer "${spec.name}" was revoked at ${revoked.at}: ${revoked.reason}`,
        );
      }
      return inner.verify(input, options);
    },
  };
}

/** Refusals that say "not this signer's signature" rather than "a bad signature of this signer". */
const GENERIC_REASONS = new Set(['untrusted_key', 'wrong_envelope']);

/**
 * Tries each verifier; returns the first success. When all refuse, throws the
 * most telling refusal (e.g. `identity_mismatch` rather than the
 * `untrusted_key` of an unrelated signer). No verifiers: `untrusted_key`.
 */
export async function verifyWithAny(
  verifiers: readonly TrustVerifier[],
  input: SignedInput,
  options: VerifyOptions = {},
): Promise<VerifiedSignature> {
  const refusals: TrustRefusedError[] = [];
  for (const verifier of verifiers) {
    try {
      return await verifier.verify(input, options);
    } catch (error) {
      if (!(error instanceof TrustRefusedError)) throw error;
      refusals.push(error);
    }
  }
  const telling = refusals.find((refusal) => !GENERIC_REASONS.has(refusal.reason)) ?? refusals[0];
  throw telling ?? new TrustRefusedError('untrusted_key', 'no signer is configured to verify this signature');
}
