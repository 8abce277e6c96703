/**
 * X.509 certificate signers (docs/trust.md "certificate"): the bundle's chain
 * (leaf first) must lead to one of the configured roots, each link checked
 * with node:crypto X509Certificate (issuer name and signature), every
 * certificate valid at the signing instant, each issuer a CA, and the leaf
 * allowed to sign code (extended key usage codeSigning).
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { envelopeVerifies, hashForKey, requireBundle } from './public-key.ts';
import { TrustConfigError, TrustRefusedError } from './trust-error.ts';
import type { SignedInput, TrustVerifier, VerifiedSignature, VerifyOptions } from './verifier.types.ts';

const CODE_SIGNING_EKU = '1.3.6.1.5.5.7.3.3';
/** A longer chain is not a PKI we know; it bounds the work an attacker can ask for. */
const MAX_CHAIN_LENGTH = 8;

/** Reads every certificate of a PEM file (a CA bundle may hold several roots). */
export async function loadCertificatesFile(file: string): Promise<X509Certificate[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new TrustConfigError(
      file,
      `cannot read CA file: ${(error as NodeJS.ErrnoException).code ?? error}`,
      {
        cause: error,
      },
    );
  }
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0)
    throw new TrustConfigError(file, 'expected at least one PEM "BEGIN CERTIFICATE" block');
  return blocks.map((block, i) => {
    try {
      const certificate = new X509Certificate(block);
      if (!certificate.ca) throw new Error('not a CA certificate (basicConstraints CA:FALSE or absent)');
      return certificate;
    } catch (error) {
      throw new TrustConfigError(file, `certificate ${i + 1}: ${(error as Error).message}`, { cause: error });
    }
  });
}

function checkValidAt(certificate: X509Certificate, at: Date, role: string): void {
  const from = new Date(certificate.validFrom);
  const to = new Date(certificate.validTo);
  if (!(at >= from && at <= to)) {
    throw new TrustRefusedError(
      'certificate_expired',
      `${role} certificate "${certificate.subject}" is valid from ${from.toISOString()} to ${to.toISOString()}, not at ${at.toISOString()}`,
    );
  }
}

/** True when `child` names `parent` as issuer and `parent`'s key verifies its signature. */
function isIssuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  return child.checkIssued(parent) && child.verify(parent.publicKey);
}

/**
 * Checks a chain (leaf first) against `roots` at instant `at`; returns the
 * root it ends at. A root may be included at the end of the chain or not.
 */
export function verifyChain(chain: X509Certificate[], roots: X509Certificate[], at: Date): X509Certificate {
  if (chain.length === 0 || chain.length > MAX_CHAIN_LENGTH) {
    throw new TrustRefusedError(
      'certificate_invalid',
      `expected 1 to ${MAX_CHAIN_LENGTH} certificates, got ${chain.length}`,
    );
  }
  chain.forEach((certificate, i) => {
    checkValidAt(certificate, at, i === 0 ? 'leaf' : 'intermediate');
  });
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i] as X509Certificate;
    const parent = chain[i + 1] as X509Certificate;
    if (roots.some((root) => isIssuedBy(child, root))) break;
    if (!parent.ca || !isIssuedBy(child, parent)) {
      throw new TrustRefusedError(
        'certificate_invalid',
        `certificate "${child.subject}" is not issued by the next one in the chain ("${parent.subject}")`,
      );
    }
  }
  // The first certificate that one of the roots issued (or that is a root) ends the path.
  for (const certificate of chain) {
    const root = roots.find(
      (candidate) => candidate.raw.equals(certificate.raw) || isIssuedBy(certificate, candidate),
    );
    if (root !== undefined) {
      checkValidAt(root, at, 'root');
      return root;
    }
  }
  throw new TrustRefusedError(
    'certificate_invalid',
    `the chain of "${chain[0]?.subject}" leads to none of the configured roots`,
  );
}

function checkLeafUsage(leaf: X509Certificate): void {
  const usages = leaf.keyUsage as string[] | undefined;
  if (usages === undefined || !usages.includes(CODE_SIGNING_EKU)) {
    throw new TrustRefusedError(
      'wrong_usage',
      `leaf certificate "${leaf.subject}" lacks extended key usage codeSigning (${CODE_SIGNING_EKU})`,
    );
  }
}

function parseChain(certificates: Buffer[]): X509Certificate[] {
  try {
    return certificates.map((der) => new X509Certificate(der));
  } catch (error) {
    throw new TrustRefusedError(
      'certificate_invalid',
      `unparsable certificate: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

/** A verifier for certificate chains leading to the roots in `caFile`, read now. */
export async function createCertificateVerifier(name: string, caFile: string): Promise<TrustVerifier> {
  const roots = await loadCertificatesFile(caFile);
  return {
    name,
    method: 'certificate',
    async verify(input: SignedInput, options: VerifyOptions = {}): Promise<VerifiedSignature> {
      const bundle = requireBundle(input, name);
      if (bundle.material.kind !== 'certificates') {
        throw new TrustRefusedError(
          'untrusted_key',
          `signer "${name}" expects a certificate, got a bare key`,
        );
      }
      const chain = parseChain(bundle.material.certificates);
      const leaf = chain[0] as X509Certificate;
      // Without a trusted timestamp the signing instant is unknown: the chain must be valid now.
      const root = verifyChain(chain, roots, options.at ?? new Date());
      checkLeafUsage(leaf);
      try {
        hashForKey(leaf.publicKey);
      } catch (error) {
        throw new TrustRefusedError('certificate_invalid', `leaf key: ${(error as Error).message}`, {
          cause: error,
        });
      }
      if (!envelopeVerifies(bundle, leaf.publicKey)) {
        throw new TrustRefusedError(
          'bad_signature',
          `signature does not verify with the key of "${leaf.subject}"`,
        );
      }
      return {
        signer: name,
        method: 'certificate',
        identity: leaf.subject,
        issuer: root.subject,
        payloadType: bundle.envelope.payloadType,
        payload: bundle.envelope.payload,
      };
    },
  };
}
