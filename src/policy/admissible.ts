import type { AdmissionPolicy, DecisionRequest, PolicyDecision, PolicyFinding } from './admissible.types.ts';
import type { EnvironmentPolicy } from './policy.types.ts';

/** A check that may find something wrong with a release (signer, attestations, lineage…). */
export type ReleaseCheck = (request: DecisionRequest) => PolicyFinding[];

/** Finds a version reference in an environment that requires digests. */
export const checkReference: (policy: EnvironmentPolicy) => ReleaseCheck = (policy) => (request) => {
  const environment = policy.stateOf(request.environment);
  if (!request.refIsVersion || !environment.digestRefsOnly) return [];
  return [
    {
      violation: 'mutable_reference',
      code: 'MG_DIGEST_REF_REQUIRED',
      message: `environment ${environment.name} requires a sha256: release reference (${request.release.model}@${request.release.digest})`,
    },
  ];
};

/** Finds an unsigned release or one signed by a signer not trusted for its environment. */
export const checkSigner: ReleaseCheck = ({ release }) => {
  if (release.trust === 'unsigned') {
    return [
      {
        violation: 'unsigned_release',
        code: 'MG_RELEASE_UNSIGNED',
        message: 'the release manifest is not signed',
      },
    ];
  }
  if (release.trust === 'untrusted_signer') {
    return [
      {
        violation: 'untrusted_signer',
        code: 'MG_SIGNER_UNTRUSTED',
        message: `signer ${release.signer} is not trusted for environment ${release.environment}`,
      },
    ];
  }
  return [];
};

/**
 * The admissibility decision (README "Policy"): runs every check, lets
 * `waive` mark findings an active exception covers, and says whether the
 * environment enforces. Pure over its inputs: the same request at the same
 * instant always gets the same answer, whichever gate asks.
 */
export function createAdmissionPolicy(options: {
  environments: EnvironmentPolicy;
  checks: readonly ReleaseCheck[];
  /** Marks findings waived by an active exception; returns the ids used. Default: no exceptions. */
  waive?: (request: DecisionRequest, findings: PolicyFinding[]) => string[];
  /** Release digests up the parent chain, this release first. Default: the release alone. */
  lineageOf?: (request: DecisionRequest) => string[];
}): AdmissionPolicy {
  return {
    decide(request: DecisionRequest): PolicyDecision {
      const environment = options.environments.stateOf(request.environment);
      const findings = options.checks.flatMap((check) => check(request));
      const exceptions = options.waive?.(request, findings) ?? [];
      const blocking = findings.filter((finding) => finding.waivedBy === undefined);
      return {
        release: request.release,
        environment,
        findings,
        blocking,
        admissible: blocking.length === 0,
        enforced: environment.mode === 'enforce',
        exceptions,
        lineage: options.lineageOf?.(request) ?? [request.release.digest],
      };
    },
  };
}
