/** Defaulted configuration pieces and a movable clock for identity tests. */
import type { GrantConfig, IssuerConfig, ServiceAccountConfig } from '../../src/config/config.types.ts';

/** An issuer with the schema defaults, overridden by `fields`. */
export function issuerConfig(fields: Partial<IssuerConfig> & { name: string; issuer: string }): IssuerConfig {
  return {
    discovery: false,
    audiences: ['modelgate'],
    algorithms: ['RS256'],
    clockToleranceSeconds: 30,
    cacheSeconds: 600,
    cooldownSeconds: 30,
    timeoutSeconds: 5,
    kubernetes: false,
    ...fields,
  };
}

export const FRAUD_GRANTS: GrantConfig[] = [{ models: ['fraud-*'], environments: ['prod'] }];

/** A service account with no claim constraints and the fraud grants, unless overridden. */
export function serviceAccount(
  fields: Partial<ServiceAccountConfig> & { name: string; issuer: string; subject: string },
): ServiceAccountConfig {
  return { claims: {}, grants: FRAUD_GRANTS, ...fields };
}

/** A clock frozen at a whole second; tests move it with `advance`. */
export interface TestClock {
  (): number;
  advance(seconds: number): void;
  set(ms: number): void;
}

export function frozenClock(start = Math.floor(Date.now() / 1000) * 1000): TestClock {
  let now = start;
  const clock = (() => now) as TestClock;
  clock.advance = (seconds) => {
    now += seconds * 1000;
  };
  clock.set = (ms) => {
    now = ms;
  };
  return clock;
}
