import type { Release } from '../catalog/release.types.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AdmissionPolicy } from './admissible.types.ts';
import type { ExceptionRegister } from './exceptions.ts';

/**
 * Sets the program gauges (docs/attestations.md "Program metrics") from the
 * catalog and the policy: releases per environment with every required
 * attestation satisfied (waivers do not count as satisfied), exceptions in
 * force, and each exception's creation and expiry. Called after each catalog
 * scan and before each scrape, so expiries show without a rescan.
 */
export function updateProgramGauges(input: {
  metrics: Pick<Metrics, 'attestationComplete' | 'exceptionsActive' | 'exceptionExpiry' | 'exceptionCreated'>;
  policy: AdmissionPolicy;
  releases: readonly Release[];
  environments: readonly string[];
  exceptions: ExceptionRegister;
  now: number;
}): void {
  const { metrics, now } = input;
  const complete = new Map<string, number>(input.environments.map((name) => [name, 0]));
  for (const release of input.releases) {
    const decision = input.policy.decide({
      release,
      environment: release.environment,
      now,
      refIsVersion: false,
    });
    const attested = !decision.findings.some(
      (f) => f.violation === 'attestation_missing' || f.violation === 'attestation_condition',
    );
    if (attested) complete.set(release.environment, (complete.get(release.environment) ?? 0) + 1);
  }
  metrics.attestationComplete.reset();
  for (const [environment, count] of complete) metrics.attestationComplete.set({ environment }, count);

  const active = new Map<string, number>(input.environments.map((name) => [name, 0]));
  for (const exception of input.exceptions.active(now)) {
    active.set(exception.environment, (active.get(exception.environment) ?? 0) + 1);
  }
  metrics.exceptionsActive.reset();
  for (const [environment, count] of active) metrics.exceptionsActive.set({ environment }, count);

  metrics.exceptionExpiry.reset();
  metrics.exceptionCreated.reset();
  for (const exception of input.exceptions.all()) {
    const labels = { id: exception.id, environment: exception.environment };
    metrics.exceptionExpiry.set(labels, Date.parse(exception.expires) / 1000);
    metrics.exceptionCreated.set(labels, Date.parse(exception.created) / 1000);
  }
}
