import type { IncomingMessage, ServerResponse } from 'node:http';
import { isChunked } from '../catalog/manifest.ts';
import type { ManifestFile, Release } from '../catalog/release.types.ts';
import type { Clock } from '../clock.ts';
import type { TransferConfig } from '../config/config.types.ts';
import { isModelgateError, ModelgateError } from '../errors.ts';
import type { Principal } from '../identity/principal.types.ts';
import type { ChunkFetcher } from '../integrity/chunk-fetcher.ts';
import { reprDigestHeader } from '../integrity/digest.ts';
import type { MemoryBudget } from '../integrity/memory-budget.ts';
import { createSourceSession, type StoreLookup } from '../integrity/source-reader.ts';
import {
  sendChunked,
  sendWholeFile,
  type TransferOptions,
  type WholeFileCache,
} from '../integrity/transfer.ts';
import type { ByteRange } from '../stores/store.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditRecord } from './audit-record.ts';
import type { Access, ReportViolation } from './authorize.ts';
import { etagOf, matchesIfNoneMatch } from './conditional.ts';
import { parseRange } from './range.ts';
import { createResponseTarget, type PacingOptions, SocketWriteFailed } from './response-target.ts';

export interface FileResponseDeps {
  stores: StoreLookup;
  fetcher: ChunkFetcher;
  budget: MemoryBudget;
  /** The verified disk cache (`cache:`) for whole-file-mode files; chunks reach it through the fetcher. */
  disk?: WholeFileCache;
  transfer: TransferConfig;
  pacing: PacingOptions;
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
  /** Admission control for file transfers (503 when overloaded, README "HTTP API"). */
  admission: { tryAcquire(): boolean; release(): void };
  reportViolation: ReportViolation;
}

/** One authorized file request. */
export interface FileRequest {
  req: IncomingMessage;
  res: ServerResponse;
  audit: AuditRecord;
  principal: Principal;
  release: Release;
  file: ManifestFile;
  access: Access;
}

/** The client disconnected, or was dropped as too slow, mid-transfer: nothing to answer, only to count. */
export class ClientAborted extends Error {
  readonly tooSlow: boolean;
  constructor(tooSlow: boolean) {
    super(tooSlow ? 'client read too slowly' : 'client went away');
    this.tooSlow = tooSlow;
  }
}

function fileHeaders(release: Release, file: ManifestFile, range: ByteRange | undefined) {
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    ETag: etagOf(file.digest),
    'Repr-Digest': reprDigestHeader(file.digest),
    'Modelgate-Release-Digest': release.digest,
    'Accept-Ranges': isChunked(file) ? 'bytes' : 'none',
    'Cache-Control': 'private, no-transform',
  };
  if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end - 1}/${file.size}`;
  headers['Content-Length'] = String(range ? range.end - range.start : file.size);
  return headers;
}

/**
 * Answers a file route: 304 on a matching If-None-Match, headers only for
 * HEAD, else the verified bytes (a range only for chunk-mode files, the only
 * ones whose parts can be verified, README "HTTP API"). Returns the status sent.
 */
export async function respondFile(deps: FileResponseDeps, request: FileRequest): Promise<number> {
  const { req, res, release, file } = request;
  const etag = etagOf(file.digest);
  if (matchesIfNoneMatch(req.headers['if-none-match'], etag)) {
    res.writeHead(304, { ETag: etag, 'Modelgate-Release-Digest': release.digest });
    res.end();
    return 304;
  }
  const range = isChunked(file) ? parseRange(req.headers.range, file.size) : undefined;
  const status = range ? 206 : 200;
  const headers = fileHeaders(release, file, range);
  if (req.method === 'HEAD') {
    res.writeHead(status, headers);
    res.end();
    return status;
  }
  if (!deps.admission.tryAcquire()) {
    throw new ModelgateError('MG_OVERLOADED', 'too many transfers in flight', {
      headers: { 'Retry-After': '1' },
    });
  }
  try {
    await streamVerified(deps, request, { status, headers, range });
    return status;
  } finally {
    deps.admission.release();
  }
}

/** Streams the verified bytes, with the client's pace watched; throws ClientAborted when the client is gone. */
async function streamVerified(
  deps: FileResponseDeps,
  request: FileRequest,
  response: { status: number; headers: Record<string, string>; range: ByteRange | undefined },
) {
  const { res, audit, release, file, principal } = request;
  const { metrics } = deps;
  const environment = request.access.environment;
  const controller = new AbortController();
  let tooSlow = false;
  const onClose = () => {
    if (!res.writableFinished) controller.abort(new ModelgateError('MG_BAD_REQUEST', 'client went away'));
  };
  res.once('close', onClose);
  const started = deps.clock();
  using target = createResponseTarget(res, {
    status: response.status,
    headers: response.headers,
    signal: controller.signal,
    pacing: deps.pacing,
    onHeaders: (store) => metrics.timeToFirstByte.observe({ store }, (deps.clock() - started) / 1000),
    onWritten: (store, bytes) => {
      audit.sent(store, bytes);
      metrics.bytesServed.inc({ store }, bytes);
    },
    onTooSlow: () => {
      if (tooSlow) return;
      tooSlow = true;
      metrics.slowClientsDropped.inc({ reason: 'rate' });
      res.destroy();
    },
  });
  const violationContext = { audit, principal, release, environment };
  const options: Omit<TransferOptions, 'session'> = {
    target,
    signal: controller.signal,
    // Break-glass never turns byte verification off: only audit mode reports instead of failing.
    onMismatch: environment.mode === 'audit' ? 'report' : 'fail',
    onViolation: (error) => {
      const store = String(error.details.store ?? 'none');
      metrics.digestMismatches.inc({ model: release.model, environment: environment.name, store });
      const violation = error.code === 'MG_SIZE_MISMATCH' ? 'size_mismatch' : 'digest_mismatch';
      deps.reportViolation(violationContext, violation, error);
    },
    memoryWaitMs: deps.transfer.memoryWaitSeconds * 1000,
  };
  const sessionDeps = {
    stores: deps.stores,
    transfer: deps.transfer,
    metrics,
    logger: deps.logger.child({ requestId: audit.requestId }),
  };
  try {
    if (isChunked(file)) {
      const range = response.range ?? { start: 0, end: file.size };
      const session = createSourceSession(file, sessionDeps);
      await sendChunked({ ...options, session, fetcher: deps.fetcher, range });
    } else {
      await sendWholeFile({
        ...options,
        session: createSourceSession(file, sessionDeps),
        budget: deps.budget,
        ...(deps.disk ? { cache: deps.disk } : {}),
      });
    }
  } catch (error) {
    const gone = controller.signal.aborted || error instanceof SocketWriteFailed;
    if (gone && !isModelgateError(error, 'MG_DIGEST_MISMATCH')) {
      throw new ClientAborted(tooSlow);
    }
    if (isModelgateError(error, 'MG_SOURCE_CHANGED')) {
      deps.reportViolation(violationContext, 'source_changed', error);
    }
    throw error;
  } finally {
    res.off('close', onClose);
  }
}
