import { matchesModelGlob } from '../policy/grants.ts';
import { parseBundle } from '../trust/bundle.ts';
import { OmsStatementError, parseOmsStatement } from '../trust/oms.ts';
import { RELEASE_BUNDLE_SUFFIX, verifyReleaseBundle } from '../trust/release-bundle.ts';
import { TrustRefusedError } from '../trust/trust-error.ts';
import { createVerifier, verifyWithAny } from '../trust/verifier.ts';
import type { SignerSpec, TrustRefusalReason, TrustVerifier } from '../trust/verifier.types.ts';
import type { RejectionReason } from './catalog.types.ts';
import type { Release, SignatureIdentity } from './release.types.ts';
import {
  type LoadedSigner,
  loadSigner,
  parseUnsignedRelease,
  ReleaseRejectedError,
  type VerifiedRelease,
  verifyRelease,
} from './signature.ts';

/** A release signer: one key source, and the environments whose releases it may sign. */
export type CatalogSigner = SignerSpec & { environments: readonly string[] };
/** An upstream (OMS) signer: one key source, and the models whose releases must carry its evidence. */
export type UpstreamSigner = SignerSpec & { models: readonly string[] };

/** Trust refusal reasons → the catalog's rejection reasons (the `reason` label). */
const REJECTION_OF: Record<TrustRefusalReason, RejectionReason> = {
  malformed: 'invalid_bundle',
  wrong_envelope: 'wrong_type',
  bad_signature: 'bad_signature',
  untrusted_key: 'unknown_signer',
  identity_mismatch: 'untrusted_identity',
  certificate_invalid: 'certificate_invalid',
  certificate_expired: 'certificate_expired',
  wrong_usage: 'wrong_usage',
  tlog_missing: 'tlog_missing',
  signer_revoked: 'signer_revoked',
};

interface LoadedTrust {
  /** JWKS signers, for `*.jws` releases (kid lookup, pinned algorithms). */
  jws: LoadedSigner[];
  /** Every other kind, for `*.sigstore.json` releases. */
  bundle: Array<{ verifier: TrustVerifier; spec: CatalogSigner }>;
  upstream: Array<{ verifier: TrustVerifier; spec: UpstreamSigner }>;
  specs: readonly CatalogSigner[];
}

/** True once the signer's revocation instant has passed. */
export function revokedAt(spec: SignerSpec, now: Date): boolean {
  return spec.revoked !== undefined && Date.parse(spec.revoked.at) <= now.getTime();
}

function toRelease(
  path: string,
  verified: Omit<VerifiedRelease, 'signer' | 'kid'> & { signerName: string | null },
  signature?: SignatureIdentity,
): Release {
  const { manifest } = verified;
  const release: Release = {
    model: manifest.model,
    version: manifest.version,
    environment: manifest.environment,
    digest: verified.digest,
    payload: verified.payload,
    manifest,
    signer: verified.signerName,
    trust: verified.trust,
    sourceFile: path,
    files: new Map(manifest.files.map((file) => [file.path, file])),
  };
  if (signature !== undefined) release.signature = signature;
  return release;
}

function rejectionOf(error: TrustRefusedError): ReleaseRejectedError {
  return new ReleaseRejectedError(REJECTION_OF[error.reason], error.message, { cause: error });
}

/**
 * Turns a catalog file into a release: `*.jws` against the JWKS signers,
 * `*.sigstore.json` against every other signer kind, `*.json` as unsigned.
 * Then applies revocation (a revoked signer's releases are rejected from its
 * revocation instant on) and, for models an upstream signer covers, re-verifies
 * the OMS evidence that intake recorded (README "Trust").
 */
export function createReleaseVerifier(options: {
  signers: readonly CatalogSigner[];
  upstreamSigners: readonly UpstreamSigner[];
  baseDir: string;
}) {
  let trust: LoadedTrust | undefined;

  async function load(): Promise<LoadedTrust> {
    const jwsSpecs = options.signers.filter(
      (s): s is CatalogSigner & { jwksFile: string } => 'jwksFile' in s,
    );
    const others = options.signers.filter((s) => !('jwksFile' in s));
    return {
      jws: await Promise.all(
        jwsSpecs.map((s) =>
          loadSigner({ name: s.name, jwksFile: s.jwksFile, environments: [...s.environments] }),
        ),
      ),
      bundle: await Promise.all(
        others.map(async (spec) => ({ spec, verifier: await createVerifier(spec, options.baseDir) })),
      ),
      upstream: await Promise.all(
        options.upstreamSigners.map(async (spec) => ({
          spec,
          verifier: await createVerifier(spec, options.baseDir),
        })),
      ),
      specs: options.signers,
    };
  }

  function requireTrust(): LoadedTrust {
    if (trust === undefined) throw new Error('release verifier used before its keys were loaded');
    return trust;
  }

  async function verifyJws(path: string, bytes: Buffer, now: Date): Promise<Release> {
    const verified = await verifyRelease(bytes.toString('utf8'), requireTrust().jws);
    const spec = requireTrust().specs.find((s) => s.name === verified.signer?.name);
    if (spec !== undefined && revokedAt(spec, now)) {
      throw new ReleaseRejectedError(
        'signer_revoked',
        `signer "${spec.name}" was revoked at ${spec.revoked?.at}: ${spec.revoked?.reason}`,
      );
    }
    return toRelease(
      path,
      { ...verified, signerName: verified.signer?.name ?? null },
      { method: 'jwks', identity: verified.kid ?? '' },
    );
  }

  async function verifyBundle(path: string, bytes: Buffer, now: Date): Promise<Release> {
    const loaded = requireTrust();
    let result: Awaited<ReturnType<typeof verifyReleaseBundle>>;
    try {
      result = await verifyReleaseBundle(
        bytes,
        loaded.bundle.map((b) => b.verifier),
        { at: now },
      );
    } catch (error) {
      if (error instanceof TrustRefusedError) throw rejectionOf(error);
      throw error;
    }
    const { manifest } = parseUnsignedRelease(result.payload);
    const spec = loaded.bundle.find((b) => b.spec.name === result.signature.signer)?.spec;
    const trusted = spec?.environments.includes(manifest.environment) ?? false;
    const signature: SignatureIdentity = {
      method: result.signature.method,
      identity: result.signature.identity,
    };
    if (result.signature.issuer !== undefined) signature.issuer = result.signature.issuer;
    return toRelease(
      path,
      {
        payload: result.payload,
        manifest,
        digest: result.digest,
        signerName: spec?.name ?? null,
        trust: trusted ? 'trusted' : 'untrusted_signer',
      },
      signature,
    );
  }

  /** Re-verifies `upstream` evidence for models an upstream signer covers; throws `upstream_unverified`. */
  async function checkUpstream(release: Release, now: Date): Promise<Release> {
    const covering = requireTrust().upstream.filter((u) =>
      u.spec.models.some((glob) => matchesModelGlob(glob, release.model)),
    );
    const evidence = release.manifest.upstream;
    if (covering.length === 0 || evidence === undefined) return release;
    const refuse = (why: string) =>
      new ReleaseRejectedError(
        'upstream_unverified',
        `upstream evidence of ${release.model} does not verify: ${why}`,
      );
    let signature: Awaited<ReturnType<typeof verifyWithAny>>;
    try {
      signature = await verifyWithAny(
        covering.map((u) => u.verifier),
        { kind: 'bundle', bundle: parseBundle(evidence.bundle) },
        { at: now },
      );
    } catch (error) {
      throw refuse(error instanceof Error ? error.message : String(error));
    }
    let statement: ReturnType<typeof parseOmsStatement>;
    try {
      statement = parseOmsStatement(signature);
    } catch (error) {
      throw refuse(error instanceof OmsStatementError ? error.message : String(error));
    }
    // The evidence must vouch for these files: each whole-file resource must match the manifest's digest.
    if (statement.method === 'files') {
      const signed = new Map(statement.resources.map((r) => [r.path, r.digest]));
      for (const file of release.manifest.files) {
        if (signed.get(file.path) !== file.digest.slice('sha256:'.length)) {
          throw refuse(`file ${file.path} is not signed with digest ${file.digest} by the OMS statement`);
        }
      }
    }
    const upstream: Release['upstream'] = {
      method: signature.method,
      identity: signature.identity,
      signer: signature.signer,
    };
    if (signature.issuer !== undefined) upstream.issuer = signature.issuer;
    return { ...release, upstream };
  }

  /** Models that must carry upstream evidence but do not: rejected too (fail closed). */
  function requireEvidence(release: Release): void {
    const covered = requireTrust().upstream.some((u) =>
      u.spec.models.some((glob) => matchesModelGlob(glob, release.model)),
    );
    if (covered && release.manifest.upstream === undefined) {
      throw new ReleaseRejectedError(
        'upstream_unverified',
        `model ${release.model} must carry upstream (OMS) evidence from one of the configured upstreamSigners`,
      );
    }
  }

  return {
    /** Reads every signer's key files; throws naming the file (start-up) — the caller keeps old keys on reload. */
    async loadKeys(): Promise<void> {
      trust = await load();
    },
    /** A fingerprint of the trust in force at `now`: it changes when keys change or a revocation takes effect. */
    fingerprint(now: Date): string {
      const loaded = requireTrust();
      return JSON.stringify([
        loaded.jws.map((s) => [s.name, s.environments, s.jwks]),
        options.signers.map((s) => [s.name, revokedAt(s, now)]),
        options.upstreamSigners.map((s) => [s.name, s.models, revokedAt(s, now)]),
      ]);
    },
    async verify(path: string, bytes: Buffer, now: Date): Promise<Release> {
      let release: Release;
      if (path.endsWith(RELEASE_BUNDLE_SUFFIX)) release = await verifyBundle(path, bytes, now);
      else if (path.endsWith('.jws')) release = await verifyJws(path, bytes, now);
      else release = toRelease(path, { ...parseUnsignedRelease(bytes), signerName: null });
      requireEvidence(release);
      return checkUpstream(release, now);
    },
  };
}

export type ReleaseVerifier = ReturnType<typeof createReleaseVerifier>;
