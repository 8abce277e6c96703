import type { IncomingMessage } from 'node:http';
import type { CatalogLookup } from '../catalog/catalog.types.ts';
import type { ManifestFile, Release } from '../catalog/release.types.ts';
import type { Clock } from '../clock.ts';
import { isModelgateError, ModelgateError } from '../errors.ts';
import type { RequestHeaders } from '../identity/authenticator.ts';
import type { Principal } from '../identity/principal.types.ts';
import type { AdmissionPolicy } from '../policy/admissible.types.ts';
import { isGranted, mayReadModel } from '../policy/grants.ts';
import type {
  BreakGlassGrant,
  BreakGlassVerifier,
  EnvironmentPolicy,
  EnvironmentState,
  Violation,
} from '../policy/policy.types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditRecord } from './audit-record.ts';
import type { ApiRoute } from './route.ts';

const MAX_BREAK_GLASS_HEADER = 16 * 1024;

/**
 * What authorization decided for one release: its environment, the
 * break-glass grant if one was used, the exceptions that waived something,
 * and whether the release was admissible with nothing waived or tolerated
 * (the `verified` label of modelgate_retrievals_total, with the bytes).
 */
export interface Access {
  environment: EnvironmentState;
  breakGlass: BreakGlassGrant | undefined;
  exceptions: string[];
  clean: boolean;
  /** Release digests from this release up its parent chain (this release first). */
  lineage: string[];
}

/** Who asked for what: the context a violation is reported with. */
export interface ViolationContext {
  audit: AuditRecord;
  principal: Principal;
  release: Release;
  environment: EnvironmentState;
}

export type ReportViolation = (
  context: ViolationContext,
  violation: Violation,
  error: ModelgateError,
) => void;

/** Counts and logs a policy violation, and notes it on the request's audit line. */
export function createViolationReporter(metrics: Metrics, logger: Logger): ReportViolation {
  return ({ audit, principal, release, environment }, violation, error) => {
    audit.violation(violation);
    metrics.policyViolations.inc({ environment: environment.name, violation, mode: environment.mode });
    logger.warn(
      {
        event: 'policy_violation',
        requestId: audit.requestId,
        violation,
        code: error.code,
        environment: environment.name,
        mode: environment.mode,
        model: release.model,
        release: release.digest,
        serviceAccount: principal.serviceAccount,
        ...error.details,
      },
      environment.mode === 'audit' ? 'policy violation (audit mode: served)' : 'policy violation (refused)',
    );
  };
}

/**
 * Node keeps only the first of duplicate Authorization headers in
 * `req.headers`; the authenticator must see duplicates to refuse them.
 */
export function authHeaders(req: IncomingMessage): RequestHeaders {
  const all = req.headersDistinct.authorization;
  return all && all.length > 1 ? { ...req.headers, authorization: all } : req.headers;
}

function breakGlassHeader(req: IncomingMessage): string | undefined {
  const all = req.headersDistinct['modelgate-break-glass'];
  if (!all) return undefined;
  const [only] = all;
  if (all.length !== 1 || only === undefined || only.length > MAX_BREAK_GLASS_HEADER) {
    throw new ModelgateError(
      'MG_BREAK_GLASS_MALFORMED',
      'send exactly one Modelgate-Break-Glass header of at most 16 KiB',
    );
  }
  return only;
}

/** A route resolved to what the caller may read. */
export type Target =
  | { kind: 'manifest'; release: Release; access: Access }
  | { kind: 'prefetch'; release: Release; access: Access }
  | { kind: 'file'; release: Release; file: ManifestFile; access: Access };

export interface AuthorizeDeps {
  catalog: CatalogLookup;
  policy: EnvironmentPolicy;
  /** The admissibility decision shared with admission and `modelgate report`. */
  releasePolicy: AdmissionPolicy;
  breakGlass: BreakGlassVerifier;
  reportViolation: ReportViolation;
  clock: Clock;
}

/**
 * Decides whether `who` may read `route`, and what it resolves to. Grants are
 * checked before any lookup, so a refusal never tells whether a model exists.
 * Each refusal is a typed 4xx ModelgateError.
 */
export function createAuthorizer(deps: AuthorizeDeps) {
  /** Checks one release; in audit mode violations are reported and tolerated. */
  async function authorizeRelease(
    req: IncomingMessage,
    audit: AuditRecord,
    principal: Principal,
    release: Release,
    refIsVersion: boolean,
  ): Promise<Access> {
    const token = breakGlassHeader(req);
    const environment = deps.policy.stateOf(release.environment);
    if (token !== undefined) {
      const breakGlass = await deps.breakGlass.verify(token, {
        serviceAccount: principal.serviceAccount,
        model: release.model,
        release: release.digest,
      });
      return { environment, breakGlass, exceptions: [], clean: false, lineage: [release.digest] };
    }
    if (!isGranted(principal, release.model, release.environment)) {
      throw new ModelgateError('MG_NOT_GRANTED', 'not granted');
    }
    const decision = deps.releasePolicy.decide({
      release,
      environment: release.environment,
      now: deps.clock(),
      refIsVersion,
    });
    for (const finding of decision.blocking) {
      const error = new ModelgateError(finding.code, finding.message);
      deps.reportViolation({ audit, principal, release, environment }, finding.violation, error);
      if (decision.enforced) throw error;
    }
    return {
      environment,
      breakGlass: undefined,
      exceptions: decision.exceptions,
      clean: decision.findings.length === 0,
      lineage: decision.lineage,
    };
  }

  /** Blob route: the first release of this model listing the digest that the caller may read. */
  async function resolveBlob(
    req: IncomingMessage,
    audit: AuditRecord,
    principal: Principal,
    model: string,
    digest: string,
  ): Promise<Target> {
    let refusal: ModelgateError | undefined;
    for (const { release, file } of deps.catalog.releasesWithFile(model, digest)) {
      try {
        const access = await authorizeRelease(req, audit, principal, release, false);
        return { kind: 'file', release, file, access };
      } catch (error) {
        if (!isModelgateError(error) || error.status !== 403) throw error;
        refusal ??= error;
      }
    }
    // Refusals for releases the caller may not read look like absence, except break-glass errors, which must be seen.
    if (refusal?.code.startsWith('MG_BREAK_GLASS')) throw refusal;
    throw new ModelgateError('MG_BLOB_NOT_FOUND', 'no release you may read lists this blob');
  }

  function resolveRelease(principal: Principal, route: Exclude<ApiRoute, { kind: 'blob' }>): Release {
    try {
      return deps.catalog.resolve(route.model, route.ref);
    } catch (error) {
      // A caller with no grant for this model learns nothing about it, break-glass header or not.
      if (!mayReadModel(principal, route.model)) throw new ModelgateError('MG_NOT_GRANTED', 'not granted');
      throw error;
    }
  }

  return async function authorize(
    req: IncomingMessage,
    audit: AuditRecord,
    principal: Principal,
    route: ApiRoute,
  ): Promise<Target> {
    const hasBreakGlass = req.headersDistinct['modelgate-break-glass'] !== undefined;
    if (!hasBreakGlass && !mayReadModel(principal, route.model)) {
      throw new ModelgateError('MG_NOT_GRANTED', 'not granted');
    }
    if (route.kind === 'blob') return resolveBlob(req, audit, principal, route.model, route.digest);
    const release = resolveRelease(principal, route);
    // The audit line names the release and environment even when the request is refused below.
    audit.note({ release, environment: deps.policy.stateOf(release.environment) });
    const access = await authorizeRelease(req, audit, principal, release, route.ref.kind === 'version');
    if (route.kind === 'manifest' || route.kind === 'prefetch') return { kind: route.kind, release, access };
    const file = release.files.get(route.path);
    if (!file) throw new ModelgateError('MG_FILE_NOT_FOUND', 'the release lists no such file');
    return { kind: 'file', release, file, access };
  };
}
