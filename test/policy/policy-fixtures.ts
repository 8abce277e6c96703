/** Hand-built releases and findings for the focused policy unit tests (no catalog, no signing). */
import type { Manifest, Release, ReleaseTrust } from '../../src/catalog/release.types.ts';
import type { ErrorCode } from '../../src/errors.ts';
import type { PolicyFinding, ReleaseViolation } from '../../src/policy/admissible.types.ts';

let counter = 0;

/** A distinct 64-hex release digest on every call. */
export function nextDigest(): string {
  return `sha256:${(++counter).toString(16).padStart(64, '0')}`;
}

export function buildRelease(
  model: string,
  options: {
    parent?: string;
    trust?: ReleaseTrust;
    environment?: string;
    digest?: string;
    signer?: string;
  } = {},
): Release {
  const manifest: Manifest = {
    schema: 'modelgate/release/v1',
    model,
    version: 'v1',
    environment: options.environment ?? 'prod',
    created: '2026-11-25T10:00:00Z',
    files: [],
  };
  if (options.parent !== undefined) manifest.parent = options.parent;
  return {
    model,
    version: manifest.version,
    environment: manifest.environment,
    digest: options.digest ?? nextDigest(),
    payload: Buffer.from('{}'),
    manifest,
    signer: options.signer ?? 'ci',
    trust: options.trust ?? 'trusted',
    sourceFile: `/catalog/${model}.jws`,
    files: new Map(),
  };
}

export function buildFinding(
  violation: ReleaseViolation,
  options: { requirement?: string; code?: ErrorCode } = {},
): PolicyFinding {
  const finding: PolicyFinding = {
    violation,
    code: options.code ?? 'MG_ATTESTATION_MISSING',
    message: `${violation} found`,
  };
  if (options.requirement !== undefined) finding.requirement = options.requirement;
  return finding;
}
