import type { Release } from '../catalog/release.types.ts';
import type { AdmissionPolicy } from './admissible.types.ts';
import type { ExceptionConfig } from './exceptions.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

export interface ReportInput {
  policy: AdmissionPolicy;
  /** Configured environment names, in the order to print them. */
  environments: readonly string[];
  releases: readonly Release[];
  exceptions: readonly ExceptionConfig[];
  now: number;
}

function shortDigest(digest: string): string {
  return `${digest.slice(0, 'sha256:'.length + 12)}…`;
}

function label(release: Release): string {
  return `${release.model}@${shortDigest(release.digest)} (${release.version})`;
}

function daysLeft(expires: string, now: number): string {
  const days = (Date.parse(expires) - now) / DAY_MS;
  // At the expiry instant the register already treats the exception as expired (`expires` is exclusive).
  return days <= 0 ? `expired ${(-days).toFixed(1)} days ago` : `${days.toFixed(1)} days left`;
}

/** The lines for one environment: counts, each inadmissible release with what it lacks, exceptions. */
function environmentLines(input: ReportInput, environment: string): string[] {
  const releases = input.releases
    .filter((r) => r.environment === environment)
    .sort((a, b) => a.model.localeCompare(b.model) || a.version.localeCompare(b.version));
  const decisions = releases.map((release) =>
    input.policy.decide({ release, environment, now: input.now, refIsVersion: false }),
  );
  const admissible = decisions.filter((d) => d.admissible).length;
  const mode = decisions[0]?.environment.mode ?? '';
  const lines = [
    `environment ${environment}${mode ? ` (${mode})` : ''}: ${releases.length} releases, ${admissible} admissible`,
  ];
  for (const decision of decisions) {
    if (decision.admissible) {
      if (decision.exceptions.length > 0) {
        lines.push(`  ${label(decision.release)}: admissible under ${decision.exceptions.join(', ')}`);
      }
      continue;
    }
    lines.push(`  ${label(decision.release)}: not admissible`);
    for (const finding of decision.blocking) lines.push(`    - ${finding.violation}: ${finding.message}`);
  }
  const exceptions = input.exceptions.filter((e) => e.environment === environment);
  for (const exception of exceptions) {
    const scope = exception.release ?? (exception.models ?? []).join(', ');
    const active = Date.parse(exception.created) <= input.now && input.now < Date.parse(exception.expires);
    lines.push(
      `  exception ${exception.id} (owner ${exception.owner}) waives ${exception.waive.join(', ')} for ${scope}: ${active ? daysLeft(exception.expires, input.now) : Date.parse(exception.created) > input.now ? 'not yet active' : daysLeft(exception.expires, input.now)}`,
    );
  }
  return lines;
}

/**
 * `modelgate report`: per environment, from the catalog and the config
 * alone, how many releases are admissible now, what each inadmissible one
 * lacks, and the exceptions with their time left. Uses the same decision as
 * serving and admission.
 */
export function formatPolicyReport(input: ReportInput): string[] {
  const known = new Set(input.environments);
  const extra = [...new Set(input.releases.map((r) => r.environment))].filter((e) => !known.has(e)).sort();
  return [...input.environments, ...extra].flatMap((environment) => environmentLines(input, environment));
}
