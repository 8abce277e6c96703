import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CatalogLookup } from '../catalog/catalog.types.ts';
import type { ManifestFile, Release } from '../catalog/release.types.ts';
import type { Clock } from '../clock.ts';
import type { TransferConfig } from '../config/config.types.ts';
import { errorBody, isModelgateError, ModelgateError, toModelgateError } from '../errors.ts';
import type { RequestHeaders, TokenAuthenticator } from '../identity/authenticator.ts';
import type { Principal } from '../identity/principal.types.ts';
import type { ChunkFetcher } from '../integrity/chunk-fetcher.ts';
import { reprDigestHeader } from '../integrity/digest.ts';
import { createSourceSession, type StoreLookup } from '../integrity/source-reader.ts';
import { sendChunked, sendWholeFile, type TransferTarget } from '../integrity/transfer.ts';
import { isGranted, mayReadModel } from '../policy/grants.ts';
import type {
  BreakGlassGrant,
  BreakGlassVerifier,
  EnvironmentPolicy,
  EnvironmentState,
  Violation,
} from '../policy/policy.types.ts';
import type { StoreKind } from '../stores/store.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { parseRange } from './range.ts';
import { type ApiRoute, parseRoute, routeLabel } from './route.ts';

export interface HandlerDeps {
  catalog: CatalogLookup;
  authenticator: TokenAuthenticator;
  policy: EnvironmentPolicy;
  breakGlass: BreakGlassVerifier;
  stores: StoreLookup;
  fetcher: ChunkFetcher;
  transfer: TransferConfig;
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
  /** Admission control for file transfers (README "HTTP API": 503 when overloaded). */
  admission: { tryAcquire(): boolean; release(): void };
  /** True once shutdown began: responses ask clients to close the connection. */
  draining(): boolean;
}

/** What one request learned, for the audit line and metrics. */
interface RequestRecord {
  requestId: string;
  route?: ApiRoute;
  principal?: Principal;
  release?: Release | undefined;
  file?: ManifestFile;
  environment?: EnvironmentState | undefined;
  breakGlass?: BreakGlassGrant;
  store: StoreKind | 'none';
  bytes: number;
  violations: Violation[];
  error?: ModelgateError;
  status?: number;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const MAX_BREAK_GLASS_HEADER = 16 * 1024;

/** A well-formed incoming X-Request-Id is kept (so traces join up); anything else is replaced. */
function requestIdOf(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

/**
 * Node keeps only the first of duplicate Authorization headers in
 * `req.headers`; the authenticator must see duplicates to refuse them.
 */
function authHeaders(req: IncomingMessage): RequestHeaders {
  const all = req.headersDistinct.authorization;
  return all && all.length > 1 ? { ...req.headers, authorization: all } : req.headers;
}

function breakGlassHeader(req: IncomingMessage): string | undefined {
  const all = req.headersDistinct['modelgate-break-glass'];
  if (!all) return undefined;
  if (all.length !== 1 || all[0]!.length > MAX_BREAK_GLASS_HEADER) {
    throw new ModelgateError(
      'MG_BREAK_GLASS_MALFORMED',
      'send exactly one Modelgate-Break-Glass header of at most 16 KiB',
    );
  }
  return all[0]!;
}

function etagOf(digest: string): string {
  return `"${digest}"`;
}

function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((candidate) => {
    const value = candidate.trim().replace(/^W\//, '');
    return value === etag || value === '*';
  });
}

/**
 * The request orchestrator. Reads like the checklist it enforces:
 * parse → authenticate → (break-glass) → authorize → resolve → policy →
 * conditional → stream verified. Each step throws a typed ModelgateError.
 */
export function createHandler(deps: HandlerDeps) {
  const { metrics, logger } = deps;
  const authBursts = createBurstDetector(deps.clock, logger);

  async function authorizeRelease(
    record: RequestRecord,
    req: IncomingMessage,
    release: Release,
    refIsVersion: boolean,
  ) {
    const principal = record.principal!;
    const token = breakGlassHeader(req);
    const environment = deps.policy.stateOf(release.environment);
    record.environment = environment;
    if (token !== undefined) {
      record.breakGlass = await deps.breakGlass.verify(token, {
        serviceAccount: principal.serviceAccount,
        model: release.model,
        release: release.digest,
      });
      return;
    }
    if (!isGranted(principal, release.model, release.environment)) {
      throw new ModelgateError('MG_NOT_GRANTED', 'not granted');
    }
    const violations: Array<[Violation, ModelgateError]> = [];
    if (refIsVersion && environment.digestRefsOnly) {
      violations.push([
        'mutable_reference',
        new ModelgateError(
          'MG_DIGEST_REF_REQUIRED',
          `environment ${environment.name} requires a sha256: release reference`,
        ),
      ]);
    }
    if (release.trust === 'unsigned') {
      violations.push([
        'unsigned_release',
        new ModelgateError('MG_RELEASE_UNSIGNED', 'the release manifest is not signed'),
      ]);
    } else if (release.trust === 'untrusted_signer') {
      violations.push([
        'untrusted_signer',
        new ModelgateError(
          'MG_SIGNER_UNTRUSTED',
          `signer ${release.signer} is not trusted for environment ${release.environment}`,
        ),
      ]);
    }
    for (const [violation, error] of violations) {
      recordViolation(record, violation, error);
      if (environment.mode === 'enforce') throw error;
    }
  }

  function recordViolation(record: RequestRecord, violation: Violation, error: ModelgateError) {
    const environment = record.environment!;
    record.violations.push(violation);
    metrics.policyViolations.inc({ environment: environment.name, violation, mode: environment.mode });
    logger.warn(
      {
        event: 'policy_violation',
        requestId: record.requestId,
        violation,
        code: error.code,
        environment: environment.name,
        mode: environment.mode,
        model: record.release?.model,
        release: record.release?.digest,
        serviceAccount: record.principal?.serviceAccount,
        ...error.details,
      },
      environment.mode === 'audit' ? 'policy violation (audit mode: served)' : 'policy violation (refused)',
    );
  }

  /** Blob route: the first release of this model listing the digest that the caller may read. */
  async function resolveBlob(record: RequestRecord, req: IncomingMessage, model: string, digest: string) {
    const candidates = deps.catalog.releasesWithFile(model, digest);
    let refusal: ModelgateError | undefined;
    for (const candidate of candidates) {
      record.release = candidate.release;
      try {
        await authorizeRelease(record, req, candidate.release, false);
        return candidate;
      } catch (error) {
        if (!isModelgateError(error) || error.status !== 403) throw error;
        refusal ??= error;
      }
    }
    record.release = undefined;
    record.environment = undefined;
    // Refusals for releases the caller may not read look like absence, except break-glass errors, which must be seen.
    if (refusal?.code.startsWith('MG_BREAK_GLASS')) throw refusal;
    throw new ModelgateError('MG_BLOB_NOT_FOUND', 'no release you may read lists this blob');
  }

  function fileHeaders(record: RequestRecord, file: ManifestFile): Record<string, string> {
    return {
      'Content-Type': 'application/octet-stream',
      ETag: etagOf(file.digest),
      'Repr-Digest': reprDigestHeader(file.digest),
      'Modelgate-Release-Digest': record.release!.digest,
      'Accept-Ranges': file.chunks ? 'bytes' : 'none',
      'Cache-Control': 'private, no-transform',
    };
  }

  async function serveFile(
    record: RequestRecord,
    req: IncomingMessage,
    res: ServerResponse,
    file: ManifestFile,
  ) {
    record.file = file;
    const headers = fileHeaders(record, file);
    if (matchesIfNoneMatch(req.headers['if-none-match'], headers.ETag!)) {
      res.writeHead(304, {
        ETag: headers.ETag!,
        'Modelgate-Release-Digest': headers['Modelgate-Release-Digest']!,
      });
      res.end();
      record.status = 304;
      return;
    }
    // Ranges are honoured only where they can be verified: chunk-mode files (README "HTTP API").
    const range = file.chunks ? parseRange(req.headers.range, file.size) : undefined;
    const status = range ? 206 : 200;
    const length = range ? range.end - range.start : file.size;
    if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end - 1}/${file.size}`;
    headers['Content-Length'] = String(length);
    if (req.method === 'HEAD') {
      res.writeHead(status, headers);
      res.end();
      record.status = status;
      return;
    }
    if (!deps.admission.tryAcquire()) {
      throw new ModelgateError('MG_OVERLOADED', 'too many transfers in flight', {
        headers: { 'Retry-After': '1' },
      });
    }
    const controller = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) controller.abort(new ModelgateError('MG_BAD_REQUEST', 'client went away'));
    };
    res.once('close', onClose);
    const started = deps.clock();
    const target: TransferTarget = {
      get headersSent() {
        return res.headersSent;
      },
      async write(bytes, store, onFlushed) {
        if (!res.headersSent) {
          res.writeHead(status, headers);
          metrics.timeToFirstByte.observe({ store }, (deps.clock() - started) / 1000);
          record.status = status;
        }
        record.store = store;
        record.bytes += bytes.byteLength;
        metrics.bytesServed.inc({ store }, bytes.byteLength);
        // Backpressure: wait for the socket to drain before handing over more verified bytes.
        const accepted = onFlushed ? res.write(bytes, () => onFlushed()) : res.write(bytes);
        if (!accepted) await once(res, 'drain', { signal: controller.signal });
      },
      async end() {
        if (!res.headersSent) {
          res.writeHead(status, headers);
          record.status = status;
        }
        res.end();
      },
    };
    const environment = record.environment!;
    const session = createSourceSession(file, {
      stores: deps.stores,
      transfer: deps.transfer,
      metrics,
      logger: logger.child({ requestId: record.requestId }),
    });
    const options = {
      session,
      target,
      signal: controller.signal,
      // Break-glass never turns byte verification off: only audit mode reports instead of failing.
      onMismatch: environment.mode === 'audit' ? ('report' as const) : ('fail' as const),
      onViolation: (error: ModelgateError) => {
        const store = String(error.details.store ?? 'none');
        metrics.digestMismatches.inc({ model: record.release!.model, environment: environment.name, store });
        recordViolation(
          record,
          error.code === 'MG_SIZE_MISMATCH' ? 'size_mismatch' : 'digest_mismatch',
          error,
        );
      },
    };
    try {
      if (file.chunks) {
        await sendChunked({
          ...options,
          fetcher: deps.fetcher,
          range: range ?? { start: 0, end: file.size },
        });
      } else {
        await sendWholeFile(options);
      }
    } catch (error) {
      if (controller.signal.aborted && !isModelgateError(error, 'MG_DIGEST_MISMATCH')) {
        throw new ClientAborted();
      }
      if (isModelgateError(error, 'MG_SOURCE_CHANGED') && record.environment) {
        recordViolation(record, 'source_changed', error);
      }
      throw error;
    } finally {
      res.off('close', onClose);
      deps.admission.release();
    }
  }

  function serveManifest(record: RequestRecord, req: IncomingMessage, res: ServerResponse) {
    const release = record.release!;
    const etag = etagOf(release.digest);
    if (matchesIfNoneMatch(req.headers['if-none-match'], etag)) {
      res.writeHead(304, { ETag: etag, 'Modelgate-Release-Digest': release.digest });
      record.status = 304;
      res.end();
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Length': String(release.payload.length),
      ETag: etag,
      'Modelgate-Release-Digest': release.digest,
      // Which signer the proxy verified (a name from its configuration), so clients can record it.
      'Modelgate-Release-Signer': release.signer ?? 'unsigned',
      'Cache-Control': 'private, no-transform',
    });
    record.status = 200;
    // The payload bytes exactly as signed: a client can hash them to check the release digest itself.
    res.end(req.method === 'HEAD' ? undefined : release.payload);
  }

  async function route(record: RequestRecord, req: IncomingMessage, res: ServerResponse) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      throw new ModelgateError('MG_BAD_REQUEST', `method ${req.method} is not allowed; use GET or HEAD`, {
        headers: { Allow: 'GET, HEAD' },
      });
    }
    const route = parseRoute(req.url ?? '/');
    record.route = route;
    record.principal = await deps.authenticator.authenticate(authHeaders(req));
    // Grants are checked before any lookup, so a refusal never tells whether a model exists.
    const hasBreakGlass = req.headersDistinct['modelgate-break-glass'] !== undefined;
    if (!hasBreakGlass && !mayReadModel(record.principal, route.model)) {
      throw new ModelgateError('MG_NOT_GRANTED', 'not granted');
    }
    if (route.kind === 'blob') {
      const found = await resolveBlob(record, req, route.model, route.digest);
      record.release = found.release;
      return serveFile(record, req, res, found.file);
    }
    let release: Release;
    try {
      release = deps.catalog.resolve(route.model, route.ref);
    } catch (error) {
      // A caller with no grant for this model learns nothing about it, break-glass header or not.
      if (!mayReadModel(record.principal, route.model))
        throw new ModelgateError('MG_NOT_GRANTED', 'not granted');
      throw error;
    }
    record.release = release;
    await authorizeRelease(record, req, release, route.ref.kind === 'version');
    if (route.kind === 'manifest') return serveManifest(record, req, res);
    const file = release.files.get(route.path);
    if (!file) throw new ModelgateError('MG_FILE_NOT_FOUND', 'the release lists no such file');
    return serveFile(record, req, res, file);
  }

  function respondError(record: RequestRecord, res: ServerResponse, error: ModelgateError) {
    record.error = error;
    if (res.headersSent) {
      // After headers only a broken connection can tell the client the body is wrong (README "HTTP API").
      res.destroy(error);
      return;
    }
    const headers: Record<string, string> = { 'Content-Type': 'application/json', ...error.headers };
    if (error.status === 401) headers['WWW-Authenticate'] = 'Bearer error="invalid_token"';
    const body = errorBody(error);
    headers['Content-Length'] = String(Buffer.byteLength(body));
    res.writeHead(error.status, headers);
    res.end(body);
    record.status = error.status;
  }

  function outcomeOf(record: RequestRecord, aborted: boolean) {
    if (aborted) return 'client_aborted' as const;
    if (record.error) return record.error.outcome;
    return record.status === 304 ? ('not_modified' as const) : ('served' as const);
  }

  function audit(
    record: RequestRecord,
    outcome: string,
    durationSeconds: number,
    method: string | undefined,
  ) {
    const release = record.release;
    const line = {
      event: 'retrieval',
      requestId: record.requestId,
      method,
      route: routeLabel(record.route),
      status: record.status,
      outcome,
      code: record.error?.code,
      issuer: record.principal?.issuer,
      subject: record.principal?.subject,
      serviceAccount: record.principal?.serviceAccount,
      pod: record.principal?.pod,
      namespace: record.principal?.namespace,
      model: release?.model ?? record.route?.model,
      version: release?.version,
      release: release?.digest,
      file: record.file?.path,
      fileDigest: record.file?.digest,
      signer: release?.signer,
      trust: release?.trust,
      provenance: release?.manifest.provenance,
      environment: record.environment?.name,
      mode: record.environment?.mode,
      store: record.store,
      bytes: record.bytes,
      durationMs: Math.round(durationSeconds * 1000),
      violations: record.violations.length > 0 ? record.violations : undefined,
      breakGlassIncident: record.breakGlass?.incident,
      breakGlassJti: record.breakGlass?.jti,
      ...(record.error?.details ?? {}),
    };
    const integrity = outcome === 'integrity_failure';
    if (integrity) logger.error(line, record.error?.message ?? 'integrity failure');
    else if (record.error && record.error.status >= 500) logger.warn(line, record.error.message);
    else logger.info(line, 'retrieval');
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = deps.clock();
    const record: RequestRecord = { requestId: requestIdOf(req), store: 'none', bytes: 0, violations: [] };
    res.setHeader('X-Request-Id', record.requestId);
    if (deps.draining()) res.setHeader('Connection', 'close');
    metrics.inflightRequests.inc();
    let aborted = false;
    try {
      await route(record, req, res);
      if (record.breakGlass) {
        metrics.breakGlassRequests.inc({
          incident: record.breakGlass.incident,
          service_account: record.principal!.serviceAccount,
        });
        logger.warn(
          {
            event: 'break_glass',
            requestId: record.requestId,
            incident: record.breakGlass.incident,
            reason: record.breakGlass.reason,
            jti: record.breakGlass.jti,
            serviceAccount: record.principal!.serviceAccount,
            subject: record.principal!.subject,
            model: record.release?.model,
            release: record.release?.digest,
            expiresAt: new Date(record.breakGlass.expiresAt * 1000).toISOString(),
          },
          'break-glass override used',
        );
      }
    } catch (error) {
      if (error instanceof ClientAborted) {
        aborted = true;
        res.destroy();
      } else {
        const failure = toModelgateError(error);
        if (failure.code === 'MG_INTERNAL')
          logger.error({ err: error, requestId: record.requestId }, 'internal error');
        if (failure.outcome === 'unauthenticated') {
          metrics.authFailures.inc({ reason: failure.code });
          authBursts.record(failure.code);
        }
        respondError(record, res, failure);
      }
    } finally {
      metrics.inflightRequests.dec();
      const outcome = outcomeOf(record, aborted);
      const route = routeLabel(record.route);
      const seconds = (deps.clock() - started) / 1000;
      metrics.requests.inc({ route, outcome });
      metrics.requestDuration.observe({ route, outcome }, seconds);
      audit(record, outcome, seconds, req.method);
    }
  };
}

/** Authentication failures in one window that make a burst worth a warning (a stolen or stale token, a scan). */
const AUTH_BURST_THRESHOLD = 20;
const AUTH_BURST_WINDOW_MS = 10_000;

/**
 * Each refused token already has its audit line (info); a burst of them is a
 * security event, logged once per window at warn with the count per reason.
 */
function createBurstDetector(clock: Clock, logger: Logger) {
  let windowStart = 0;
  let counts = new Map<string, number>();
  let total = 0;
  let warned = false;
  return {
    record(code: string) {
      const now = clock();
      if (now - windowStart >= AUTH_BURST_WINDOW_MS) {
        windowStart = now;
        counts = new Map();
        total = 0;
        warned = false;
      }
      counts.set(code, (counts.get(code) ?? 0) + 1);
      total++;
      if (!warned && total >= AUTH_BURST_THRESHOLD) {
        warned = true;
        logger.warn(
          {
            event: 'auth_failure_burst',
            windowSeconds: AUTH_BURST_WINDOW_MS / 1000,
            failures: total,
            byReason: Object.fromEntries(counts),
          },
          `at least ${AUTH_BURST_THRESHOLD} authentication failures within ${AUTH_BURST_WINDOW_MS / 1000}s`,
        );
      }
    },
  };
}

/** The client disconnected mid-transfer: nothing to answer, only to count. */
class ClientAborted extends Error {}
