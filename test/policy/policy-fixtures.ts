/** Hand-built releases and findings for the focused policy unit tests (no catalog, no signing). */
import type { Release, ReleaseTrust } from '../../src/catalog/release.types.ts';
import type { ErrorCode } from '../../src/errors.ts';
import type { PolicyFinding, ReleaseViolation } from '../../src/policy/admissible.types.ts';
import { testRelease } from './policy-world.ts';

export { nextDigest } from './policy-world.ts';

/** A release at version v1 (the focused tests name releases by model and digest). */
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
  return testRelease(model, { ...options, version: 'v1' });
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
