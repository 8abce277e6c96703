import type { CatalogLookup } from '../catalog/catalog.types.ts';
import type { Clock } from '../clock.ts';
import type { ModelgateConfig } from '../config/config.types.ts';
import type { AdmissionPolicy } from '../policy/admissible.types.ts';
import { buildReleasePolicy } from '../policy/build-policy.ts';
import type { EnvironmentPolicy } from '../policy/policy.types.ts';
import { updateProgramGauges } from '../policy/program-metrics.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';

/**
 * The release policy of a running proxy, with what depends on time and the
 * catalog: the program gauges (after each scan and before each scrape), and
 * a warning, once, for each exception that has expired (it waives nothing).
 */
export function createReleaseGate(deps: {
  config: ModelgateConfig;
  catalog: Pick<CatalogLookup, 'attestations' | 'byDigest' | 'all'>;
  environments: EnvironmentPolicy;
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
}): { policy: AdmissionPolicy; refresh(): void } {
  const { policy, exceptions } = buildReleasePolicy(deps.config, deps.environments, deps.catalog);
  const warned = new Set<string>();
  return {
    policy,
    refresh() {
      const now = deps.clock();
      updateProgramGauges({
        metrics: deps.metrics,
        policy,
        releases: deps.catalog.all(),
        environments: Object.keys(deps.config.environments),
        exceptions,
        now,
      });
      for (const exception of exceptions.expired(now)) {
        if (warned.has(exception.id)) continue;
        warned.add(exception.id);
        deps.logger.warn(
          {
            event: 'exception_expired',
            id: exception.id,
            owner: exception.owner,
            expires: exception.expires,
          },
          `policy exception ${exception.id} expired at ${exception.expires}; it waives nothing now`,
        );
      }
    },
  };
}
