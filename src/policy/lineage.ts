import type { Release } from '../catalog/release.types.ts';
import type { ReleaseCheck } from './admissible.ts';
import type { DecisionRequest, PolicyDecision, PolicyFinding } from './admissible.types.ts';
import type { AttestationLookup } from './attestations.ts';
import { valuesAt } from './conditions.ts';
import { matchesModelGlob } from './grants.ts';

/** SLSA provenance v1: the predicate whose resolvedDependencies names the parent release. */
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';

/** An environment's `lineage` settings. */
export interface LineageConfig {
  /** Model globs whose releases must name a parent (quantized, converted, fine-tuned variants). */
  requireParentFor: readonly string[];
  /** Environments a parent must be admissible in (its own environment must be one of them). */
  parentEnvironments: readonly string[];
}

export interface LineageDeps {
  lineageOf(environment: string): LineageConfig | undefined;
  attestations: AttestationLookup;
  /** A release by its digest, or undefined when the catalog does not have it. */
  releaseByDigest(digest: string): Release | undefined;
  /** The policy itself, late-bound: a parent must itself be admissible. */
  decide(request: DecisionRequest): PolicyDecision;
}

function finding(message: string): PolicyFinding {
  return { violation: 'lineage', code: 'MG_LINEAGE_BROKEN', message };
}

/** True when some provenance attestation of `release` lists `parent` among its resolved dependencies. */
export function provenanceNamesParent(
  attestations: AttestationLookup,
  release: Release,
  parent: string,
): boolean {
  const hex = parent.slice('sha256:'.length);
  return attestations
    .forRelease(release.digest)
    .filter((a) => a.predicateType === SLSA_PROVENANCE_V1)
    .some((a) =>
      valuesAt(a.statement, 'predicate.buildDefinition.resolvedDependencies[*].digest.sha256').includes(hex),
    );
}

/** The parent a release names, when its manifest has one. */
export function parentOf(release: Release): string | undefined {
  return release.manifest.parent;
}

/**
 * The lineage gate (README "Lineage"): a release that names a parent, or
 * whose model must have one, carries provenance listing that parent, and the
 * parent is in the catalog and itself admissible — recursively, so the chain
 * reaches an approved original. A cycle is a broken chain, never a loop.
 */
export function checkLineage(deps: LineageDeps): ReleaseCheck {
  return (request) => {
    const { release, environment } = request;
    const config = deps.lineageOf(environment);
    const parent = parentOf(release);
    const required = config?.requireParentFor.some((glob) => matchesModelGlob(glob, release.model)) ?? false;
    if (parent === undefined) {
      return required ? [finding(`${release.model} must name the release it was derived from (parent)`)] : [];
    }
    if (!provenanceNamesParent(deps.attestations, release, parent)) {
      return [
        finding(`no ${SLSA_PROVENANCE_V1} attestation lists the parent ${parent} in resolvedDependencies`),
      ];
    }
    const visiting = [...(request.visiting ?? []), release.digest];
    if (visiting.includes(parent)) return [finding(`the parent chain loops back to ${parent}`)];
    const parentRelease = deps.releaseByDigest(parent);
    if (parentRelease === undefined) return [finding(`the parent ${parent} is not in the catalog`)];
    const allowed = config?.parentEnvironments ?? [environment];
    if (!allowed.includes(parentRelease.environment)) {
      return [
        finding(
          `the parent ${parent} belongs to environment ${parentRelease.environment}, not one of ${allowed.join(', ')}`,
        ),
      ];
    }
    const decision = deps.decide({
      release: parentRelease,
      environment: parentRelease.environment,
      now: request.now,
      refIsVersion: false,
      visiting,
    });
    if (decision.admissible) return [];
    const why = decision.blocking.map((f) => f.message).join('; ');
    return [
      finding(
        `the parent ${parentRelease.model}@${parent} is not admissible in ${parentRelease.environment}: ${why}`,
      ),
    ];
  };
}

/** The chain from a release up through its parents (this release first), stopping at a loop or a gap. */
export function lineageChain(
  release: Release,
  releaseByDigest: (digest: string) => Release | undefined,
): string[] {
  const chain = [release.digest];
  let current: Release | undefined = release;
  while (current !== undefined) {
    const parent = parentOf(current);
    if (parent === undefined || chain.includes(parent)) break;
    chain.push(parent);
    current = releaseByDigest(parent);
  }
  return chain;
}
