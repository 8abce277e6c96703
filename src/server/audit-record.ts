import type { ManifestFile, Release } from '../catalog/release.types.ts';
import type { ModelgateError, Outcome } from '../errors.ts';
import type { Principal } from '../identity/principal.types.ts';
import type { ChunkOrigin } from '../integrity/chunk-fetcher.ts';
import type { BreakGlassGrant, EnvironmentState, Violation } from '../policy/policy.types.ts';
import type { Logger } from '../telemetry/logger.ts';
import { type ApiRoute, routeLabel } from './route.ts';

/**
 * What one request's audit line says. Only the audit line reads it: request
 * steps pass what the next step needs as return values, and note here what
 * the log line should show.
 */
export interface AuditFields {
  route?: ApiRoute;
  principal?: Principal;
  release?: Release | undefined;
  file?: ManifestFile;
  environment?: EnvironmentState | undefined;
  breakGlass?: BreakGlassGrant;
  status?: number;
  error?: ModelgateError;
  /** Why the proxy cut a client off (a slow reader); absent when the client left by itself. */
  dropped?: 'too_slow';
  /** Ids of the policy exceptions that waived something for this request. */
  exceptions?: string[];
  /** Release digests from the release up its parent chain. */
  lineage?: string[];
}

export interface AuditRecord {
  readonly requestId: string;
  note(fields: AuditFields): void;
  violation(violation: Violation): void;
  /** True once a violation was noted (audit mode served it, or a byte check failed). */
  hasViolations(): boolean;
  /** Verified body bytes handed to the socket, and the store they came from. */
  sent(store: ChunkOrigin, bytes: number): void;
  /** Writes the one `retrieval` line for the request. */
  write(logger: Logger, outcome: Outcome, durationSeconds: number, method: string | undefined): void;
}

export function createAuditRecord(requestId: string): AuditRecord {
  const fields: AuditFields = {};
  const violations: Violation[] = [];
  let store: ChunkOrigin | 'none' = 'none';
  let bytes = 0;
  return {
    requestId,
    note(more) {
      Object.assign(fields, more);
    },
    violation(violation) {
      violations.push(violation);
    },
    hasViolations: () => violations.length > 0,
    sent(from, count) {
      store = from;
      bytes += count;
    },
    write(logger, outcome, durationSeconds, method) {
      const { release, principal, error, environment } = fields;
      const line = {
        event: 'retrieval',
        requestId,
        method,
        route: routeLabel(fields.route),
        status: fields.status,
        outcome,
        code: error?.code,
        issuer: principal?.issuer,
        subject: principal?.subject,
        serviceAccount: principal?.serviceAccount,
        pod: principal?.pod,
        namespace: principal?.namespace,
        model: release?.model ?? fields.route?.model,
        version: release?.version,
        release: release?.digest,
        file: fields.file?.path,
        fileDigest: fields.file?.digest,
        signer: release?.signer,
        signerIdentity: release?.signature,
        upstream: release?.upstream,
        trust: release?.trust,
        provenance: release?.manifest.provenance,
        environment: environment?.name,
        mode: environment?.mode,
        store,
        bytes,
        durationMs: Math.round(durationSeconds * 1000),
        violations: violations.length > 0 ? violations : undefined,
        exceptions: fields.exceptions,
        lineage: fields.lineage !== undefined && fields.lineage.length > 1 ? fields.lineage : undefined,
        breakGlassIncident: fields.breakGlass?.incident,
        breakGlassJti: fields.breakGlass?.jti,
        dropped: fields.dropped,
        ...(error?.details ?? {}),
      };
      if (outcome === 'integrity_failure') logger.error(line, error?.message ?? 'integrity failure');
      else if (error && error.status >= 500) logger.warn(line, error.message);
      else logger.info(line, 'retrieval');
    },
  };
}
