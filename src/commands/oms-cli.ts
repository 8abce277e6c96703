/**
 * What `verify --oms` and `intake` share: the trust flags, and the check of
 * a model folder against its OMS signature with the documented exit codes
 * (docs/trust.md "Exit codes").
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { KeyFileError } from '../keys.ts';
import {
  OmsMismatchError,
  OmsStatementError,
  type VerifiedModelFile,
  type VerifiedOms,
  verifyModelTree,
  verifyOmsBundle,
} from '../trust/oms.ts';
import { TrustConfigError, TrustRefusedError } from '../trust/trust-error.ts';
import { createVerifier } from '../trust/verifier.ts';
import type { SignerSpec } from '../trust/verifier.types.ts';
import { EXIT } from './command.types.ts';

/** Exit codes of `verify --oms` and `intake` beyond 0/1/2. */
export const OMS_EXIT = {
  /** The OMS signature does not verify against the given trust (identity, key, chain, statement). */
  untrusted: 3,
  /** The files do not match the signed digests (changed, missing or unlisted). */
  mismatch: 4,
} as const;

export const TRUST_OPTIONS = {
  oms: { type: 'string' },
  identity: { type: 'string' },
  'oidc-issuer': { type: 'string' },
  'trusted-root': { type: 'string' },
  'public-key': { type: 'string' },
  'ca-file': { type: 'string' },
  'ignore-path': { type: 'string', multiple: true },
} as const;

export const TRUST_HELP = `Trust (exactly one):
  --identity ID --oidc-issuer URL --trusted-root FILE
                          Sigstore keyless: the certificate's subject (SAN) and OIDC
                          issuer, and a trusted root JSON file (used offline)
  --public-key PEM        a PEM public key (ECDSA P-256/384/521, Ed25519, RSA)
  --ca-file PEM           root CA certificate(s) the bundle's chain must lead to
  --ignore-path P         a file or folder not to check (a path as given, relative to
                          the current folder); repeatable. The signature file is
                          always ignored, and so are .git, .github, .gitattributes
                          and .gitignore at the top of DIR, as the reference tool does.`;

interface TrustFlags {
  identity?: string | undefined;
  'oidc-issuer'?: string | undefined;
  'trusted-root'?: string | undefined;
  'public-key'?: string | undefined;
  'ca-file'?: string | undefined;
}

/** The signer spec the trust flags describe, or a one-line usage error. */
export function trustSpecFromFlags(flags: TrustFlags): SignerSpec | string {
  const keyless = [flags.identity, flags['oidc-issuer'], flags['trusted-root']];
  const kinds = [
    keyless.some((value) => value !== undefined),
    flags['public-key'] !== undefined,
    flags['ca-file'] !== undefined,
  ].filter(Boolean).length;
  if (kinds !== 1) {
    return 'give exactly one trust: --identity/--oidc-issuer/--trusted-root, --public-key or --ca-file';
  }
  if (flags['public-key'] !== undefined) return { name: 'public-key', publicKeyFile: flags['public-key'] };
  if (flags['ca-file'] !== undefined) return { name: 'ca-file', certificate: { caFile: flags['ca-file'] } };
  const [identity, issuer, trustedRoot] = keyless;
  if (identity === undefined || issuer === undefined || trustedRoot === undefined) {
    return '--identity, --oidc-issuer and --trusted-root go together';
  }
  return { name: 'sigstore', sigstore: { trustedRoot, identities: [{ issuer, subject: identity }] } };
}

export interface OmsCheck {
  oms: VerifiedOms;
  files: VerifiedModelFile[];
}

/** A failed check: its exit code and one line for stderr. */
export class OmsCheckFailure extends Error {
  readonly exitCode: number;

  constructor(exitCode: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OmsCheckFailure';
    this.exitCode = exitCode;
  }
}

/**
 * Verifies the OMS signature `sig` with the trust `spec`, then `target`
 * against its statement. Throws OmsCheckFailure with the exit code.
 */
export async function checkOms(
  sig: string,
  target: string,
  spec: SignerSpec,
  ignorePaths: readonly string[],
  chunkSize: number | null,
): Promise<OmsCheck> {
  try {
    const verifier = await createVerifier(spec, process.cwd());
    const bytes = await readFile(sig).catch((error: NodeJS.ErrnoException) => {
      throw new OmsCheckFailure(EXIT.failure, `cannot read ${sig}: ${error.code ?? error}`);
    });
    const oms = await verifyOmsBundle(bytes, [verifier]);
    const ignore = [resolve(sig), ...ignorePaths.map((path) => resolve(path))];
    const files = await verifyModelTree(oms.statement, target, { ignore, chunkSize });
    return { oms, files };
  } catch (error) {
    throw toFailure(error);
  }
}

function toFailure(error: unknown): OmsCheckFailure {
  if (error instanceof OmsCheckFailure) return error;
  if (error instanceof TrustRefusedError) {
    return new OmsCheckFailure(OMS_EXIT.untrusted, `${error.reason}: ${error.message}`, { cause: error });
  }
  if (error instanceof OmsStatementError) {
    const code = error.kind === 'unsupported' ? EXIT.failure : OMS_EXIT.untrusted;
    return new OmsCheckFailure(
      code,
      `${error.kind === 'unsupported' ? 'unsupported' : 'invalid_statement'}: ${error.message}`,
      {
        cause: error,
      },
    );
  }
  if (error instanceof OmsMismatchError) {
    return new OmsCheckFailure(OMS_EXIT.mismatch, error.message, { cause: error });
  }
  if (error instanceof TrustConfigError || error instanceof KeyFileError) {
    return new OmsCheckFailure(EXIT.failure, error.message, { cause: error });
  }
  return new OmsCheckFailure(EXIT.failure, (error as Error)?.message ?? String(error), { cause: error });
}

/** One line per verified fact, for stdout. */
export function describeOms(check: OmsCheck): string {
  const { signature } = check.oms;
  return [
    `signature valid (oms/v1.0, ${signature.method})`,
    `identity     ${signature.identity}`,
    ...(signature.issuer === undefined ? [] : [`issuer       ${signature.issuer}`]),
    ...(signature.signedAt === undefined ? [] : [`signed       ${signature.signedAt.toISOString()}`]),
    `files        ${check.files.length} match`,
    ...check.files.map((file) => `  ${file.path}  ${file.digests.size}  ${file.digests.digest}`),
    '',
  ].join('\n');
}
