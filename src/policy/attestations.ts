import type { ReleaseCheck } from './admissible.ts';
import type { PolicyFinding } from './admissible.types.ts';
import type { CompiledCondition } from './conditions.ts';

/** A verified attestation about one release (README "Attestations"). */
export interface Attestation {
  /** The release digest (`sha256:<hex>`) its in-toto subject names. */
  release: string;
  predicateType: string;
  /** The whole in-toto Statement v1; condition paths start at its top (`predicate.…`). */
  statement: Readonly<Record<string, unknown>>;
  /** Name of the configured attestor whose key or identity verified it. */
  attestor: string;
  /** Who signed, as the attestor's verifier reports it (key name, certificate subject, keyless identity). */
  identity: string;
  /** Catalog file it was loaded from. */
  file: string;
}

/** One entry of an environment's `requiredAttestations`, compiled. */
export interface AttestationRequirement {
  name: string;
  predicateType: string;
  attestors: readonly string[];
  conditions: readonly CompiledCondition[];
}

export interface AttestationLookup {
  /** Verified attestations whose subject is this release digest. */
  forRelease(digest: string): readonly Attestation[];
}

/** Why one requirement is not met by the release's attestations, or undefined when it is. */
export function unmetRequirement(
  requirement: AttestationRequirement,
  attestations: readonly Attestation[],
): PolicyFinding | undefined {
  const ofType = attestations.filter((a) => a.predicateType === requirement.predicateType);
  const from = requirement.attestors.join(', ');
  if (ofType.length === 0) {
    return {
      violation: 'attestation_missing',
      code: 'MG_ATTESTATION_MISSING',
      requirement: requirement.name,
      message: `no ${requirement.name} attestation (${requirement.predicateType}) from ${from}`,
    };
  }
  const trusted = ofType.filter((a) => requirement.attestors.includes(a.attestor));
  if (trusted.length === 0) {
    const signers = [...new Set(ofType.map((a) => a.attestor))].join(', ');
    return {
      violation: 'attestation_missing',
      code: 'MG_ATTESTATION_MISSING',
      requirement: requirement.name,
      message: `the ${requirement.name} attestation is signed by ${signers}, not by a required attestor (${from})`,
    };
  }
  // One attestation from a listed attestor meeting every condition satisfies the requirement.
  if (trusted.some((a) => requirement.conditions.every((c) => c.test(a.statement)))) return undefined;
  const failed = requirement.conditions.filter((c) => !trusted.some((a) => c.test(a.statement)));
  const failedText = (failed.length > 0 ? failed : requirement.conditions).map((c) => c.text).join('; ');
  return {
    violation: 'attestation_condition',
    code: 'MG_ATTESTATION_CONDITION',
    requirement: requirement.name,
    message: `the ${requirement.name} attestation does not meet: ${failedText}`,
  };
}

/** The attestation gate: every required attestation of the environment must be met. */
export function checkAttestations(
  requirementsOf: (environment: string) => readonly AttestationRequirement[],
  attestations: AttestationLookup,
): ReleaseCheck {
  return ({ release, environment }) => {
    const present = attestations.forRelease(release.digest);
    return requirementsOf(environment).flatMap((requirement) => unmetRequirement(requirement, present) ?? []);
  };
}
