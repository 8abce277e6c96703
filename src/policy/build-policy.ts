import type { CatalogLookup } from '../catalog/catalog.types.ts';
import type { ModelgateConfig } from '../config/config.types.ts';
import type { AdmissionPolicy } from './admissible.types.ts';
import type { AttestationRequirement } from './attestations.ts';
import { type ConditionConfig, ConditionError, compileCondition } from './conditions.ts';
import {
  createExceptionRegister,
  type ExceptionConfig,
  type ExceptionRegister,
  exceptionProblems,
} from './exceptions.ts';
import type { EnvironmentPolicy } from './policy.types.ts';
import { createReleasePolicy, type EnvironmentGates } from './release-policy.ts';

type PolicyConfig = Pick<ModelgateConfig, 'environments' | 'exceptions' | 'exceptionMaxDays' | 'attestors'>;

/** One problem with the policy part of a configuration, at a field path. */
export interface PolicyProblem {
  path: string;
  message: string;
}

/** Compiles every environment's required attestations; problems name the field. */
export function compileGates(config: PolicyConfig): {
  gates: Map<string, EnvironmentGates>;
  problems: PolicyProblem[];
} {
  const gates = new Map<string, EnvironmentGates>();
  const problems: PolicyProblem[] = [];
  const attestorNames = new Set(config.attestors.map((a) => a.name));
  for (const [name, environment] of Object.entries(config.environments)) {
    const requirements: AttestationRequirement[] = [];
    const seen = new Set<string>();
    environment.requiredAttestations.forEach((required, i) => {
      const field = `environments.${name}.requiredAttestations[${i}]`;
      if (seen.has(required.name))
        problems.push({ path: `${field}.name`, message: `duplicate attestation name ${required.name}` });
      seen.add(required.name);
      required.attestors.forEach((attestor, j) => {
        if (!attestorNames.has(attestor)) {
          problems.push({
            path: `${field}.attestors[${j}]`,
            message: `no attestor named ${attestor} (configured: ${[...attestorNames].join(', ') || 'none'})`,
          });
        }
      });
      const conditions = required.conditions.flatMap((condition, j) => {
        try {
          return [compileCondition(condition as ConditionConfig, `${field}.conditions[${j}]`)];
        } catch (error) {
          if (!(error instanceof ConditionError)) throw error;
          problems.push({ path: error.field, message: error.message.slice(error.field.length + 2) });
          return [];
        }
      });
      requirements.push({
        name: required.name,
        predicateType: required.predicateType,
        attestors: required.attestors,
        conditions,
      });
    });
    const gate: EnvironmentGates = { requiredAttestations: requirements };
    if (environment.lineage !== undefined) {
      gate.lineage = {
        requireParentFor: environment.lineage.requireParentFor,
        parentEnvironments: environment.lineage.parentEnvironments ?? [name],
      };
    }
    gates.set(name, gate);
  }
  return { gates, problems };
}

/** Problems of the exception register (owner, justification, expiry, scope, waiver names). */
export function exceptionConfigProblems(config: PolicyConfig): PolicyProblem[] {
  const names = (environment: string) =>
    config.environments[environment]?.requiredAttestations.map((r) => r.name) ?? [];
  return exceptionProblems(config.exceptions as ExceptionConfig[], config.exceptionMaxDays, names).map(
    (problem) => {
      const at = problem.indexOf(': ');
      return { path: problem.slice(0, at), message: problem.slice(at + 2) };
    },
  );
}

/**
 * The release policy of a configuration: the one decision serving,
 * admission, `modelgate report` and the catalog metrics share.
 */
export function buildReleasePolicy(
  config: PolicyConfig,
  environments: EnvironmentPolicy,
  catalog: Pick<CatalogLookup, 'attestations' | 'byDigest'>,
): {
  policy: AdmissionPolicy;
  exceptions: ExceptionRegister;
  gatesOf(environment: string): EnvironmentGates;
} {
  const { gates } = compileGates(config);
  const exceptions = createExceptionRegister(config.exceptions as ExceptionConfig[]);
  const gatesOf = (environment: string): EnvironmentGates =>
    gates.get(environment) ?? { requiredAttestations: [] };
  const policy = createReleasePolicy({
    environments,
    gatesOf,
    attestations: { forRelease: (digest) => catalog.attestations().forRelease(digest) },
    releaseByDigest: (digest) => catalog.byDigest(digest),
    exceptions,
  });
  return { policy, exceptions, gatesOf };
}
