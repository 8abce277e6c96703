import type { Release } from '../catalog/release.types.ts';
import { isValidDigest, isValidModelName } from '../rules.ts';
import type { DecisionRequest, PolicyFinding, ReleaseViolation } from './admissible.types.ts';
import { matchesModelGlob } from './grants.ts';

/** One entry of the `exceptions` register (README "Exceptions"). */
export interface ExceptionConfig {
  id: string;
  owner: string;
  justification: string;
  environment: string;
  /** One release, `<model>@sha256:<hex>`; or `models` globs. Exactly one of the two. */
  release?: string;
  models?: string[];
  /** Attestation names, or violation names: unsigned, untrusted_signer, lineage, upstream_unverified. */
  waive: string[];
  created: string;
  expires: string;
}

/** Violations an exception may name directly (the rest — references, revocations, bytes — are never waived). */
const WAIVABLE: Record<string, ReleaseViolation> = {
  unsigned: 'unsigned_release',
  untrusted_signer: 'untrusted_signer',
  lineage: 'lineage',
  upstream_unverified: 'upstream_unverified',
};

export const WAIVABLE_VIOLATIONS = Object.keys(WAIVABLE);

const DAY_MS = 24 * 60 * 60 * 1000;

/** `<model>@sha256:<hex>`, with the model and digest rules every other reference obeys. */
function isReleaseReference(value: string): boolean {
  const at = value.lastIndexOf('@');
  return at > 0 && isValidModelName(value.slice(0, at)) && isValidDigest(value.slice(at + 1));
}

interface CompiledException {
  config: ExceptionConfig;
  createdMs: number;
  expiresMs: number;
  releaseModel?: string;
  releaseDigest?: string;
}

/**
 * Problems with the register, each naming its field (`exceptions[2].expires`):
 * a missing owner or justification, instants that do not parse, an expiry
 * before creation or more than `maxDays` after it, a scope that is not
 * exactly one of release/models, an unknown waiver name, a duplicate id.
 */
export function exceptionProblems(
  exceptions: readonly ExceptionConfig[],
  maxDays: number,
  attestationNames: (environment: string) => readonly string[],
): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  exceptions.forEach((exception, i) => {
    const at = `exceptions[${i}]`;
    if (seen.has(exception.id)) problems.push(`${at}.id: duplicate exception id ${exception.id}`);
    seen.add(exception.id);
    if (!exception.owner?.trim()) problems.push(`${at}.owner: every exception needs an owner`);
    if (!exception.justification?.trim())
      problems.push(`${at}.justification: every exception needs a justification`);
    const created = Date.parse(exception.created);
    const expires = Date.parse(exception.expires);
    if (Number.isNaN(created))
      problems.push(`${at}.created: expected an RFC 3339 instant, got ${JSON.stringify(exception.created)}`);
    if (Number.isNaN(expires))
      problems.push(`${at}.expires: expected an RFC 3339 instant, got ${JSON.stringify(exception.expires)}`);
    if (!Number.isNaN(created) && !Number.isNaN(expires)) {
      if (expires <= created) problems.push(`${at}.expires: must be after created (${exception.created})`);
      else if (expires - created > maxDays * DAY_MS) {
        const days = ((expires - created) / DAY_MS).toFixed(1);
        problems.push(
          `${at}.expires: expected at most exceptionMaxDays (${maxDays}) after created, got ${days} days`,
        );
      }
    }
    if ((exception.release === undefined) === (exception.models === undefined)) {
      problems.push(`${at}: expected exactly one of release or models`);
    } else if (exception.release !== undefined && !isReleaseReference(exception.release)) {
      problems.push(
        `${at}.release: expected <model>@sha256:<64 hex>, got ${JSON.stringify(exception.release)}`,
      );
    }
    const names = attestationNames(exception.environment);
    exception.waive.forEach((name, j) => {
      if (!(name in WAIVABLE) && !names.includes(name)) {
        problems.push(
          `${at}.waive[${j}]: ${JSON.stringify(name)} is neither a required attestation of ${exception.environment} (${names.join(', ') || 'none'}) nor one of ${WAIVABLE_VIOLATIONS.join(', ')}`,
        );
      }
    });
  });
  return problems;
}

function compile(config: ExceptionConfig): CompiledException {
  const compiled: CompiledException = {
    config,
    createdMs: Date.parse(config.created),
    expiresMs: Date.parse(config.expires),
  };
  if (config.release !== undefined) {
    const at = config.release.lastIndexOf('@');
    compiled.releaseModel = config.release.slice(0, at);
    compiled.releaseDigest = config.release.slice(at + 1);
  }
  return compiled;
}

function covers(exception: CompiledException, release: Release): boolean {
  if (exception.releaseDigest !== undefined) {
    return exception.releaseModel === release.model && exception.releaseDigest === release.digest;
  }
  return (exception.config.models ?? []).some((glob) => matchesModelGlob(glob, release.model));
}

function waives(exception: CompiledException, finding: PolicyFinding): boolean {
  return exception.config.waive.some(
    (name) =>
      WAIVABLE[name] === finding.violation ||
      (finding.requirement !== undefined && name === finding.requirement),
  );
}

/**
 * The exception register: the only standing waiver. An exception is active
 * from `created` until `expires` (exclusive); an expired one waives nothing.
 */
export function createExceptionRegister(exceptions: readonly ExceptionConfig[]) {
  const compiled = exceptions.map(compile);
  const isActive = (exception: CompiledException, now: number) =>
    exception.createdMs <= now && now < exception.expiresMs;
  return {
    /** Marks the findings an active exception waives (sets `waivedBy`); returns the ids that waived something. */
    waive(request: DecisionRequest, findings: PolicyFinding[]): string[] {
      const used = new Set<string>();
      for (const finding of findings) {
        const exception = compiled.find(
          (e) =>
            e.config.environment === request.environment &&
            isActive(e, request.now) &&
            covers(e, request.release) &&
            waives(e, finding),
        );
        if (exception === undefined) continue;
        finding.waivedBy = exception.config.id;
        used.add(exception.config.id);
      }
      return [...used];
    },
    /** Exceptions active at `now`. */
    active(now: number): ExceptionConfig[] {
      return compiled.filter((e) => isActive(e, now)).map((e) => e.config);
    },
    /** Exceptions whose expiry has passed at `now`. */
    expired(now: number): ExceptionConfig[] {
      return compiled.filter((e) => now >= e.expiresMs).map((e) => e.config);
    },
    all: (): readonly ExceptionConfig[] => exceptions,
  };
}

export type ExceptionRegister = ReturnType<typeof createExceptionRegister>;
