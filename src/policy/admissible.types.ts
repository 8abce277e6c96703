import type { Release } from '../catalog/release.types.ts';
import type { ErrorCode } from '../errors.ts';
import type { EnvironmentState } from './policy.types.ts';

/**
 * Why a release may not be used in an environment: the `violation` label of
 * `modelgate_policy_violations_total` for release-level policy (byte-level
 * violations — digest_mismatch, size_mismatch, source_changed — are found
 * while streaming and are not part of admissibility).
 */
export type ReleaseViolation =
  | 'mutable_reference'
  | 'unsigned_release'
  | 'untrusted_signer'
  | 'signer_revoked'
  | 'attestation_missing'
  | 'attestation_condition'
  | 'lineage'
  | 'upstream_unverified';

/** One reason a release is not admissible, possibly waived by an exception. */
export interface PolicyFinding {
  violation: ReleaseViolation;
  /** The error a refusal carries (403). */
  code: ErrorCode;
  /** Says what is missing and what would fix it, e.g. "no attestation scan (predicate … from attestors scanner)". */
  message: string;
  /** The required attestation's name, for attestation findings (exceptions waive by this name). */
  requirement?: string;
  /** The exception id that waives this finding, when one is active at the instant decided. */
  waivedBy?: string;
}

/**
 * Whether a release may be used in an environment at an instant: the one
 * decision shared by serving, admission, `modelgate report` and the catalog
 * metrics, so the gates cannot disagree.
 */
export interface PolicyDecision {
  release: Release;
  environment: EnvironmentState;
  /** Findings not waived by an exception. Empty = admissible. */
  blocking: PolicyFinding[];
  /** Every finding, waived or not (audit lines and metrics count them all). */
  findings: PolicyFinding[];
  /** True when nothing blocks. */
  admissible: boolean;
  /** True when the environment refuses what is not admissible (enforce mode); audit mode serves and counts. */
  enforced: boolean;
  /** Ids of the exceptions that waived something in this decision. */
  exceptions: string[];
  /** Release digests from this release up its parent chain (this release first). */
  lineage: string[];
}

/** What a gate asks: may this release be used here, now, referenced this way? */
export interface DecisionRequest {
  release: Release;
  environment: string;
  /** Epoch milliseconds; exceptions and enforceFrom are evaluated at this instant. */
  now: number;
  /** True when the caller referenced the release by version (mutable) rather than digest. */
  refIsVersion: boolean;
  /** Release digests whose lineage is being decided below this one (cycle detection); absent at the top. */
  visiting?: readonly string[];
}

export interface AdmissionPolicy {
  decide(request: DecisionRequest): PolicyDecision;
}
