import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CatalogLookup } from '../catalog/catalog.types.ts';
import type { Clock } from '../clock.ts';
import type { TransferConfig } from '../config/config.types.ts';
import { errorBody, ModelgateError, type Outcome, toModelgateError } from '../errors.ts';
import type { TokenAuthenticator } from '../identity/authenticator.ts';
import type { Principal } from '../identity/principal.types.ts';
import type { ChunkFetcher } from '../integrity/chunk-fetcher.ts';
import type { MemoryBudget } from '../integrity/memory-budget.ts';
import type { StoreLookup } from '../integrity/source-reader.ts';
import type { WholeFileCache } from '../integrity/transfer.ts';
import type { AdmissionPolicy } from '../policy/admissible.types.ts';
import type { BreakGlassGrant, BreakGlassVerifier, EnvironmentPolicy } from '../policy/policy.types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { type AuditRecord, createAuditRecord } from './audit-record.ts';
import { createBurstDetector } from './auth-bursts.ts';
import { authHeaders, createAuthorizer, createViolationReporter, type Target } from './authorize.ts';
import type { Prefetcher } from './prefetch.ts';
import { ClientAborted, respondFile } from './respond-file.ts';
import { respondManifest } from './respond-manifest.ts';
import { respondPrefetch } from './respond-prefetch.ts';
import type { PacingOptions } from './response-target.ts';
import { type ApiRoute, parseRoute, routeLabel } from './route.ts';

export interface HandlerDeps {
  catalog: CatalogLookup;
  authenticator: TokenAuthenticator;
  policy: EnvironmentPolicy;
  /** The admissibility decision shared with admission and `modelgate report`. */
  releasePolicy: AdmissionPolicy;
  breakGlass: BreakGlassVerifier;
  stores: StoreLookup;
  fetcher: ChunkFetcher;
  budget: MemoryBudget;
  /** Warms the disk cache (`POST …/prefetch`); undefined without `cache:`. */
  prefetcher?: Prefetcher;
  /** The verified disk cache for whole-file-mode files; undefined without `cache:`. */
  disk?: WholeFileCache;
  transfer: TransferConfig;
  pacing: PacingOptions;
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
  /** Admission control for file transfers (README "HTTP API": 503 when overloaded). */
  admission: { tryAcquire(): boolean; release(): void };
  /** True once shutdown began: responses ask clients to close the connection. */
  draining(): boolean;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A well-formed incoming X-Request-Id is kept (so traces join up); anything else is replaced. */
function requestIdOf(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

function parseRequest(req: IncomingMessage): ApiRoute {
  const read = req.method === 'GET' || req.method === 'HEAD';
  if (!read && req.method !== 'POST') {
    throw new ModelgateError('MG_BAD_REQUEST', `method ${req.method} is not allowed; use GET or HEAD`, {
      headers: { Allow: 'GET, HEAD' },
    });
  }
  const route = parseRoute(req.url ?? '/');
  // POST only starts a prefetch; HEAD of a prefetch is refused like any other unknown method there.
  const allowed = route.kind === 'prefetch' ? req.method !== 'HEAD' : read;
  if (!allowed) {
    const allow = route.kind === 'prefetch' ? 'GET, POST' : 'GET, HEAD';
    throw new ModelgateError('MG_BAD_REQUEST', `method ${req.method} is not allowed; use ${allow}`, {
      headers: { Allow: allow },
    });
  }
  return route;
}

/** Answers a refusal; after headers only a broken connection can tell the client the body is wrong. */
function respondError(res: ServerResponse, error: ModelgateError): number | undefined {
  if (res.headersSent) {
    res.destroy(error);
    return res.statusCode;
  }
  const headers: Record<string, string> = { 'Content-Type': 'application/json', ...error.headers };
  if (error.status === 401) headers['WWW-Authenticate'] = 'Bearer error="invalid_token"';
  const body = errorBody(error);
  headers['Content-Length'] = String(Buffer.byteLength(body));
  res.writeHead(error.status, headers);
  res.end(body);
  return error.status;
}

/**
 * The request orchestrator. Reads like the checklist it enforces:
 * parse → authenticate → authorize (grants, break-glass, policy) → respond
 * (manifest, or file streamed verified). Each step returns what the next
 * needs and throws a typed ModelgateError; the audit record only collects
 * what the log line shows.
 */
export function createHandler(deps: HandlerDeps) {
  const { metrics, logger } = deps;
  const authBursts = createBurstDetector(deps.clock, logger);
  const reportViolation = createViolationReporter(metrics, logger);
  const authorize = createAuthorizer({ ...deps, reportViolation });
  const fileDeps = { ...deps, reportViolation };

  function noteBreakGlass(audit: AuditRecord, principal: Principal, target: Target, grant: BreakGlassGrant) {
    metrics.breakGlassRequests.inc({ incident: grant.incident, service_account: principal.serviceAccount });
    logger.warn(
      {
        event: 'break_glass',
        requestId: audit.requestId,
        incident: grant.incident,
        reason: grant.reason,
        jti: grant.jti,
        serviceAccount: principal.serviceAccount,
        subject: principal.subject,
        model: target.release.model,
        release: target.release.digest,
        expiresAt: new Date(grant.expiresAt * 1000).toISOString(),
      },
      'break-glass override used',
    );
  }

  /** The checklist; returns the status sent. */
  async function serve(
    req: IncomingMessage,
    res: ServerResponse,
    audit: AuditRecord,
    route: ApiRoute,
  ): Promise<number> {
    const principal = await deps.authenticator.authenticate(authHeaders(req));
    audit.note({ principal });
    const target = await authorize(req, audit, principal, route);
    const { environment, breakGlass, exceptions, lineage } = target.access;
    audit.note({
      release: target.release,
      environment,
      lineage,
      ...(breakGlass ? { breakGlass } : {}),
      ...(exceptions.length > 0 ? { exceptions } : {}),
    });
    let status: number;
    if (target.kind === 'manifest') {
      status = respondManifest(req, res, target.release, lineage);
    } else if (target.kind === 'prefetch') {
      status = await respondPrefetch(req, res, deps.prefetcher, target.release);
    } else {
      audit.note({ file: target.file });
      status = await respondFile(fileDeps, { req, res, audit, principal, ...target });
      if (req.method === 'GET' && status !== 304) countRetrieval(route, target.access, audit);
    }
    if (breakGlass) noteBreakGlass(audit, principal, target, breakGlass);
    for (const id of exceptions) metrics.exceptionRequests.inc({ id });
    return status;
  }

  /**
   * One completed file retrieval for the program metrics: pinned by digest
   * or not, and "verified" only when the release was admissible with nothing
   * waived or tolerated (no exception, break-glass or audit-mode violation)
   * and every byte matched (docs/attestations.md "Program metrics").
   */
  function countRetrieval(route: ApiRoute, access: Target['access'], audit: AuditRecord): void {
    const ref = route.kind === 'blob' || route.ref.kind === 'digest' ? 'digest' : 'version';
    const verified = access.clean && access.breakGlass === undefined && !audit.hasViolations();
    metrics.retrievals.inc({
      environment: access.environment.name,
      ref,
      verified: verified ? 'true' : 'false',
    });
  }

  /** Answers (or, mid-body, cuts) a failed request and returns its outcome. */
  function fail(res: ServerResponse, audit: AuditRecord, error: unknown): Outcome {
    if (error instanceof ClientAborted) {
      res.destroy();
      audit.note({
        ...(res.headersSent ? { status: res.statusCode } : {}),
        ...(error.tooSlow ? { dropped: 'too_slow' as const } : {}),
      });
      return 'client_aborted';
    }
    const failure = toModelgateError(error);
    if (failure.code === 'MG_INTERNAL')
      logger.error({ err: error, requestId: audit.requestId }, 'internal error');
    if (failure.outcome === 'unauthenticated') {
      metrics.authFailures.inc({ reason: failure.code });
      authBursts.record(failure.code);
    }
    const status = respondError(res, failure);
    audit.note({ error: failure, ...(status === undefined ? {} : { status }) });
    return failure.outcome;
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = deps.clock();
    const audit = createAuditRecord(requestIdOf(req));
    res.setHeader('X-Request-Id', audit.requestId);
    if (deps.draining()) res.setHeader('Connection', 'close');
    metrics.inflightRequests.inc();
    let outcome: Outcome = 'served';
    let route: ApiRoute | undefined;
    try {
      route = parseRequest(req);
      audit.note({ route });
      const status = await serve(req, res, audit, route);
      audit.note({ status });
      if (status === 304) outcome = 'not_modified';
    } catch (error) {
      outcome = fail(res, audit, error);
    } finally {
      metrics.inflightRequests.dec();
      const label = routeLabel(route);
      const seconds = (deps.clock() - started) / 1000;
      metrics.requests.inc({ route: label, outcome });
      metrics.requestDuration.observe({ route: label, outcome }, seconds);
      audit.write(logger, outcome, seconds, req.method);
    }
  };
}
