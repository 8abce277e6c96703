import type { Release } from '../catalog/release.types.ts';
import { checkReference, checkSigner, createAdmissionPolicy } from './admissible.ts';
import type { AdmissionPolicy, DecisionRequest, PolicyDecision } from './admissible.types.ts';
import { type AttestationLookup, type AttestationRequirement, checkAttestations } from './attestations.ts';
import type { ExceptionRegister } from './exceptions.ts';
import { checkLineage, type LineageConfig, lineageChain } from './lineage.ts';
import type { EnvironmentPolicy } from './policy.types.ts';

/** What an environment requires of a release beyond a trusted signature. */
export interface EnvironmentGates {
  requiredAttestations: readonly AttestationRequirement[];
  lineage?: LineageConfig;
}

export interface ReleasePolicyDeps {
  environments: EnvironmentPolicy;
  gatesOf(environment: string): EnvironmentGates;
  /** Late-bound: the catalog's current attestations and releases (they change on every scan). */
  attestations: AttestationLookup;
  releaseByDigest(digest: string): Release | undefined;
  exceptions: ExceptionRegister;
}

/**
 * The one policy every gate asks (serving, admission, `modelgate report`,
 * catalog metrics): reference → signer → attestations → lineage, then
 * exceptions waive what they name. DESIGN: "One policy, many gates".
 */
export function createReleasePolicy(deps: ReleasePolicyDeps): AdmissionPolicy {
  let policy: AdmissionPolicy | undefined;
  const decide = (request: DecisionRequest): PolicyDecision => {
    if (policy === undefined) throw new Error('release policy used before construction');
    return policy.decide(request);
  };
  policy = createAdmissionPolicy({
    environments: deps.environments,
    checks: [
      checkReference(deps.environments),
      checkSigner,
      checkAttestations((environment) => deps.gatesOf(environment).requiredAttestations, deps.attestations),
      checkLineage({
        lineageOf: (environment) => deps.gatesOf(environment).lineage,
        attestations: deps.attestations,
        releaseByDigest: deps.releaseByDigest,
        decide,
      }),
    ],
    waive: (request, findings) => deps.exceptions.waive(request, findings),
    lineageOf: (request) => lineageChain(request.release, deps.releaseByDigest),
  });
  return policy;
}
