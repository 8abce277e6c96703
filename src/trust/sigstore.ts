/**
 * Sigstore keyless signers (docs/trust.md "sigstore"): a Fulcio-style
 * certificate chaining to a certificate authority of the trusted root, a
 * transparency-log entry signed by one of its logs, and an identity policy
 * (OIDC issuer + exact or anchored SAN). Verification is @sigstore/verify's,
 * fed from a trusted-root FILE: nothing is fetched at run time.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { type Signer, toSignedEntity, toTrustMaterial, VerificationError, Verifier } from '@sigstore/verify';
import { requireBundle } from './public-key.ts';
import { TrustConfigError, TrustRefusedError } from './trust-error.ts';
import type {
  SignedInput,
  SigstoreIdentity,
  TrustRefusalReason,
  TrustVerifier,
  VerifiedSignature,
} from './verifier.types.ts';

export interface SigstoreSpec {
  trustedRoot: string;
  identities: SigstoreIdentity[];
  tlogThreshold?: number;
}

type IdentityMatcher = { issuer: string; matches: (subject: string) => boolean; text: string };

function compileIdentities(identities: SigstoreIdentity[], file: string): IdentityMatcher[] {
  if (identities.length === 0)
    throw new TrustConfigError(file, 'a sigstore signer needs at least one identity');
  return identities.map((identity) => {
    if ('subject' in identity) {
      const { subject } = identity;
      return { issuer: identity.issuer, matches: (san) => san === subject, text: subject };
    }
    let pattern: RegExp;
    try {
      // Anchored whatever the operator wrote: a pattern matching a substring would trust too much.
      pattern = new RegExp(`^(?:${identity.subjectPattern})$`, 'u');
    } catch (error) {
      throw new TrustConfigError(file, `subjectPattern: ${(error as Error).message}`, { cause: error });
    }
    return {
      issuer: identity.issuer,
      matches: (san) => pattern.test(san),
      text: `/${identity.subjectPattern}/`,
    };
  });
}

async function loadTrustedRoot(file: string): Promise<TrustedRoot> {
  try {
    return TrustedRoot.fromJSON(JSON.parse(await readFile(file, 'utf8')));
  } catch (error) {
    throw new TrustConfigError(file, `cannot load trusted root: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

const REASONS: Record<string, TrustRefusalReason> = {
  SIGNATURE_ERROR: 'bad_signature',
  CERTIFICATE_ERROR: 'certificate_invalid',
  PUBLIC_KEY_ERROR: 'untrusted_key',
  TIMESTAMP_ERROR: 'tlog_missing',
  TLOG_ERROR: 'tlog_missing',
  TLOG_MISSING_INCLUSION_ERROR: 'tlog_missing',
  TLOG_INCLUSION_PROMISE_ERROR: 'tlog_missing',
  TLOG_INCLUSION_PROOF_ERROR: 'tlog_missing',
  TLOG_BODY_ERROR: 'bad_signature',
};

function toRefusal(error: unknown): TrustRefusedError {
  if (error instanceof TrustRefusedError) return error;
  const reason =
    error instanceof VerificationError ? (REASONS[error.code] ?? 'bad_signature') : 'bad_signature';
  return new TrustRefusedError(reason, `keyless verification failed: ${(error as Error).message}`, {
    cause: error,
  });
}

/** Earliest transparency-log integration time backed by a signed promise: the trusted signing time. */
function signingTime(json: Record<string, unknown>): Date | undefined {
  const material = json.verificationMaterial as { tlogEntries?: Array<Record<string, unknown>> } | undefined;
  const times = (material?.tlogEntries ?? [])
    .filter((entry) => entry.inclusionPromise !== undefined)
    .map((entry) => Number(entry.integratedTime) * 1000)
    .filter((ms) => Number.isFinite(ms));
  return times.length === 0 ? undefined : new Date(Math.min(...times));
}

const CODE_SIGNING_EKU = '1.3.6.1.5.5.7.3.3';

function checkCodeSigning(der: Buffer | undefined): void {
  let usages: string[] | undefined;
  try {
    usages = der === undefined ? undefined : (new X509Certificate(der).keyUsage as string[] | undefined);
  } catch (error) {
    throw new TrustRefusedError(
      'certificate_invalid',
      `unparsable certificate: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  if (usages === undefined || !usages.includes(CODE_SIGNING_EKU)) {
    throw new TrustRefusedError(
      'wrong_usage',
      'the keyless certificate lacks extended key usage codeSigning',
    );
  }
}

/** A keyless verifier over the trusted root in `spec.trustedRoot`, read now. */
export async function createSigstoreVerifier(name: string, spec: SigstoreSpec): Promise<TrustVerifier> {
  const matchers = compileIdentities(spec.identities, spec.trustedRoot);
  const root = await loadTrustedRoot(spec.trustedRoot);
  const tlogThreshold = spec.tlogThreshold ?? 1;
  // A root without CT logs (a private Fulcio) cannot require SCTs; the public-good root has them.
  const verifier = new Verifier(toTrustMaterial(root), {
    tlogThreshold,
    ctlogThreshold: root.ctlogs.length > 0 ? 1 : 0,
  });
  return {
    name,
    method: 'sigstore',
    async verify(input: SignedInput): Promise<VerifiedSignature> {
      const bundle = requireBundle(input, name);
      if (bundle.material.kind !== 'certificates') {
        throw new TrustRefusedError(
          'untrusted_key',
          `signer "${name}" expects a keyless certificate, got a bare key`,
        );
      }
      if (bundle.tlogEntryCount < tlogThreshold) {
        throw new TrustRefusedError(
          'tlog_missing',
          `expected at least ${tlogThreshold} transparency-log entries, got ${bundle.tlogEntryCount}`,
        );
      }
      // @sigstore/verify does not look at key usage; a Fulcio certificate always allows code signing.
      checkCodeSigning(bundle.material.certificates[0]);
      let signer: Signer;
      try {
        signer = verifier.verify(toSignedEntity(bundleFromJSON(bundle.json)));
      } catch (error) {
        throw toRefusal(error);
      }
      const subject = signer.identity?.subjectAlternativeName ?? '';
      const issuer = signer.identity?.extensions?.issuer ?? '';
      if (!matchers.some((matcher) => matcher.issuer === issuer && matcher.matches(subject))) {
        throw new TrustRefusedError(
          'identity_mismatch',
          `keyless identity ${JSON.stringify(subject)} from issuer ${JSON.stringify(issuer)} matches no identity of signer "${name}"`,
        );
      }
      const signedAt = signingTime(bundle.json);
      return {
        signer: name,
        method: 'sigstore',
        identity: subject,
        issuer,
        ...(signedAt === undefined ? {} : { signedAt }),
        payloadType: bundle.envelope.payloadType,
        payload: bundle.envelope.payload,
      };
    },
  };
}
