/**
 * One shape for every kind of trust (docs/trust.md): a signer spec from the
 * configuration is turned, once at load time, into a TrustVerifier; the
 * catalog, intake and `verify` call `verify()` and never a kind directly.
 */
import type { ParsedBundle } from './bundle.ts';

/** A keyless identity: the OIDC issuer and the certificate SAN, exact or by anchored pattern. */
export type SigstoreIdentity =
  | { issuer: string; subject: string }
  | { issuer: string; subjectPattern: string };

/** Exactly one key source per signer (docs/trust.md "Signer kinds"). */
export type KeySource =
  | { jwksFile: string }
  | { publicKeyFile: string }
  | { certificate: { caFile: string } }
  | { sigstore: { trustedRoot: string; identities: SigstoreIdentity[]; tlogThreshold?: number } };

export interface Revocation {
  /** RFC 3339 instant from which nothing this signer signed is trusted. */
  at: string;
  reason: string;
}

/** A signer as configured (`signers`, `upstreamSigners`); paths relative to the config folder. */
export type SignerSpec = KeySource & { name: string; revoked?: Revocation };

export type TrustMethod = 'jwks' | 'key' | 'certificate' | 'sigstore';

/** Why a signature is not trusted. Stable: logs, metrics and exit codes branch on it. */
export const TRUST_REFUSAL_REASONS = [
  'malformed',
  'wrong_envelope',
  'bad_signature',
  'untrusted_key',
  'identity_mismatch',
  'certificate_invalid',
  'certificate_expired',
  'wrong_usage',
  'tlog_missing',
  'signer_revoked',
] as const;
export type TrustRefusalReason = (typeof TRUST_REFUSAL_REASONS)[number];

/** What a verifier is asked to check: a compact JWS (jwks) or a Sigstore bundle (all other kinds). */
export type SignedInput = { kind: 'jws'; jws: string } | { kind: 'bundle'; bundle: ParsedBundle };

export interface VerifyOptions {
  /** The instant the signature must be valid at (certificate validity, revocation). Default: now. */
  at?: Date;
}

/** A signature that verified, and who made it. */
export interface VerifiedSignature {
  /** Configured signer name. */
  signer: string;
  method: TrustMethod;
  /**
   * Who signed: certificate SAN (sigstore), leaf subject (certificate),
   * `sha256:<hex>` of the PEM public key (key), `kid` (jwks).
   */
  identity: string;
  /** OIDC issuer (sigstore) or the root CA subject (certificate). */
  issuer?: string;
  /** Trusted signing time (transparency-log integration time), when there is one. */
  signedAt?: Date;
  payloadType: string;
  /** The signed payload bytes exactly as signed. */
  payload: Buffer;
}

export interface TrustVerifier {
  readonly name: string;
  readonly method: TrustMethod;
  /** Throws TrustRefusedError; never returns an unverified result. */
  verify(input: SignedInput, options?: VerifyOptions): Promise<VerifiedSignature>;
}
