import { type Clock, systemClock } from '../clock.ts';
import type { EnvironmentConfig } from '../config/config.types.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { EnvironmentPolicy, EnvironmentState } from './policy.types.ts';

export interface CreateEnvironmentPolicyOptions {
  environments: Record<string, Pick<EnvironmentConfig, 'mode' | 'digestRefsOnly'> & { enforceFrom?: string }>;
  clock?: Clock;
  metrics?: Metrics;
}

interface ConfiguredEnvironment {
  config: CreateEnvironmentPolicyOptions['environments'][string];
  /** `enforceFrom` parsed once, in milliseconds since the epoch. */
  enforceFromMs: number | undefined;
}

/**
 * The audit/enforce state of every environment (docs/break-glass.md). An audit
 * environment with an `enforceFrom` instant flips to enforce by itself once the
 * injected clock passes it: the state is computed on every call, so no restart
 * or configuration change is needed. An environment that is not configured
 * gets the safe default: enforce, digest references only.
 */
export function createEnvironmentPolicy(options: CreateEnvironmentPolicyOptions): EnvironmentPolicy {
  const clock = options.clock ?? systemClock;
  // A Map, not the config object: environment names also come from manifests,
  // and `__proto__` or `constructor` must not resolve to Object.prototype members.
  const configured = new Map<string, ConfiguredEnvironment>();
  for (const [name, config] of Object.entries(options.environments)) {
    let enforceFromMs: number | undefined;
    if (config.enforceFrom !== undefined) {
      enforceFromMs = Date.parse(config.enforceFrom);
      if (Number.isNaN(enforceFromMs)) {
        throw new Error(
          `environments.${name}.enforceFrom: expected an RFC 3339 instant, got ${JSON.stringify(config.enforceFrom)}`,
        );
      }
    }
    configured.set(name, { config, enforceFromMs });
  }

  function stateOf(name: string): EnvironmentState {
    const entry = configured.get(name);
    if (entry === undefined) return { name, mode: 'enforce', digestRefsOnly: true, configured: false };
    const { config, enforceFromMs } = entry;
    const mode =
      config.mode === 'audit' && enforceFromMs !== undefined && enforceFromMs <= clock()
        ? 'enforce'
        : config.mode;
    const state: EnvironmentState = { name, mode, digestRefsOnly: config.digestRefsOnly, configured: true };
    if (config.enforceFrom !== undefined) state.enforceFrom = config.enforceFrom;
    return state;
  }

  return {
    stateOf,
    auditing() {
      return [...configured.keys()].map(stateOf).filter((state) => state.mode === 'audit');
    },
    updateGauge(extra = []) {
      if (options.metrics === undefined) return;
      const names = new Set([...configured.keys(), ...extra]);
      for (const name of names) {
        options.metrics.environmentEnforcing.set(
          { environment: name },
          stateOf(name).mode === 'enforce' ? 1 : 0,
        );
      }
    },
  };
}

/** `2027-01-15T00:00:00.000Z` → `2027-01-15T00:00:00Z`; any offset is shown in UTC. */
function formatInstant(value: string): string {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) return value;
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

/**
 * One human line per environment still in audit mode, for the start-up log and
 * the /readyz body, e.g. `staging: audit until 2027-01-15T00:00:00Z (then enforce)`.
 */
export function describeAuditEnvironments(policy: EnvironmentPolicy): string[] {
  return policy
    .auditing()
    .map((state) =>
      state.enforceFrom === undefined
        ? `${state.name}: audit (no enforcement date)`
        : `${state.name}: audit until ${formatInstant(state.enforceFrom)} (then enforce)`,
    );
}
