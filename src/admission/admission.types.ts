import type { ReleaseRef } from '../catalog/release.types.ts';
import type { ErrorCode } from '../errors.ts';
import type { ReleaseViolation } from '../policy/admissible.types.ts';

/**
 * Why a review was denied or warned about: the `reason` label of
 * `modelgate_admission_reviews_total` (a fixed set, never request input).
 */
export type AdmissionReason =
  | 'none'
  | 'malformed'
  | 'bad_reference'
  | 'release_not_found'
  | 'environment_mismatch'
  | 'identity_unmapped'
  | 'not_granted'
  | 'no_models'
  | 'internal'
  | ReleaseViolation;

/** `result` label values of `modelgate_admission_reviews_total`. */
export type AdmissionResult = 'allowed' | 'denied' | 'warned';

/** Where in the Pod a reference was found, for messages: `annotation modelgate.dev/models`, `initContainers[fetch]`. */
export type ReferenceSource = string;

/** One model reference read from a Pod. */
export type PodReference =
  | { ok: true; source: ReferenceSource; text: string; model: string; ref: ReleaseRef }
  | { ok: false; source: ReferenceSource; text: string; problem: string };

/** The Pod fields admission reads, taken from `request.object` and `request.namespace`. */
export interface PodUnderReview {
  namespace: string;
  /** `spec.serviceAccountName`, `default` when absent. */
  serviceAccount: string;
  annotations: Record<string, unknown>;
  containers: ContainerUnderReview[];
}

export interface ContainerUnderReview {
  /** `containers` or `initContainers`. */
  kind: 'containers' | 'initContainers';
  name: string;
  image: string;
  /** `command` then `args`, as the container runtime joins them. */
  argv: string[];
}

/** One reason a Pod may not run (or, in audit mode, a warning). */
export interface AdmissionFinding {
  reason: AdmissionReason;
  code: ErrorCode;
  /** Names the reference and says what would fix it. */
  message: string;
  /** False for policy findings in an environment that does not enforce: they become warnings. */
  blocks: boolean;
}

/** The webhook's answer for one Pod. */
export interface AdmissionVerdict {
  allowed: boolean;
  /** Blocking findings (denial) — empty when allowed. */
  denials: AdmissionFinding[];
  /** Findings that do not block (audit mode, waived by exceptions). */
  warnings: string[];
  result: AdmissionResult;
  reason: AdmissionReason;
}
