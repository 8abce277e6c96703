import type { ReleaseViolation } from './admissible.types.ts';

/** The live state of one environment (docs/break-glass.md), as of a given instant. */
export interface EnvironmentState {
  name: string;
  mode: 'enforce' | 'audit';
  digestRefsOnly: boolean;
  /** When an audit environment flips to enforce by itself (ISO 8601), if configured. */
  enforceFrom?: string;
  /** False when the environment is not in the configuration (defaults apply: enforce, digest refs only). */
  configured: boolean;
}

export interface EnvironmentPolicy {
  /** The state of an environment now (by the injected clock): audit becomes enforce once enforceFrom has passed. */
  stateOf(environment: string): EnvironmentState;
  /** Configured environments still in audit mode now. */
  auditing(): EnvironmentState[];
  /** Sets `modelgate_environment_enforcing` for every configured environment (and any extra names given). */
  updateGauge(extra?: Iterable<string>): void;
}

/**
 * Policy violations, the `violation` label of modelgate_policy_violations_total:
 * the release-level ones the admissibility decision finds, and the byte-level
 * ones found while streaming.
 */
export type Violation = ReleaseViolation | 'digest_mismatch' | 'size_mismatch' | 'source_changed';

/** A verified break-glass token, bound to one service account, model and release. */
export interface BreakGlassGrant {
  incident: string;
  reason: string;
  jti: string;
  serviceAccount: string;
  model: string;
  release: string;
  issuedAt: number;
  expiresAt: number;
}

export interface BreakGlassRequest {
  serviceAccount: string;
  model: string;
  /** The resolved release digest (`sha256:…`). */
  release: string;
}

export interface BreakGlassVerifier {
  /**
   * Verifies a `Modelgate-Break-Glass` token for this request. Throws
   * ModelgateError 403 MG_BREAK_GLASS_* naming the reason; never returns a
   * grant for a token that fails any check.
   */
  verify(token: string, request: BreakGlassRequest): Promise<BreakGlassGrant>;
}
