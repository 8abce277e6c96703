import type { GrantConfig } from '../config/config.types.ts';

/** The verified caller, handed to the rest of the request and to the audit log. */
export interface Principal {
  /** Configured issuer name. */
  issuerName: string;
  /** The token's `iss`. */
  issuer: string;
  /** The token's `sub`. */
  subject: string;
  /** Mapped service account name. */
  serviceAccount: string;
  grants: readonly GrantConfig[];
  /** Kubernetes pod identity when the token carries it (`kubernetes.io.pod`). */
  pod?: { name?: string; uid?: string };
  namespace?: string;
  /** Token `exp`, seconds since the epoch. */
  expiresAt: number;
}
