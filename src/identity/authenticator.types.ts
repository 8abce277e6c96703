import type { IncomingHttpHeaders } from 'node:http';
import type { Principal } from './principal.types.ts';

/**
 * Verifies the caller's workload-identity token (docs/identity.md) and maps it to a
 * service account. Throws ModelgateError: 401 MG_TOKEN_* for bad tokens,
 * 403 MG_IDENTITY_UNMAPPED, 503 MG_ISSUER_KEYS_UNAVAILABLE.
 */
export interface Authenticator {
  authenticate(headers: IncomingHttpHeaders): Promise<Principal>;
  /** Loads every issuer's keys once; resolves when each has been tried (readiness is `isReady`). */
  start(): Promise<void>;
  /** True once every issuer's keys loaded at least once. */
  isReady(): boolean;
  /** Issuers whose keys have not loaded yet (for /readyz). */
  pendingIssuers(): string[];
  /** Why each pending issuer's keys did not load (issuer name → reason), for /readyz and start-up logs. */
  issuerKeyProblems(): Record<string, string>;
  /** Count of signature verifications performed (cache misses); for tests and benchmarks. */
  signatureVerifications(): number;
  close(): void;
}
