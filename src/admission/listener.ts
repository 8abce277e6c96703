import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import type { CatalogLookup } from '../catalog/catalog.types.ts';
import type { Clock } from '../clock.ts';
import type {
  AdmissionConfig,
  IssuerConfig,
  ModelgateConfig,
  ServiceAccountConfig,
} from '../config/config.types.ts';
import { errorBody, ModelgateError, toModelgateError } from '../errors.ts';
import { checkReference, checkSigner, createAdmissionPolicy } from '../policy/admissible.ts';
import type { AdmissionPolicy } from '../policy/admissible.types.ts';
import type { EnvironmentPolicy } from '../policy/policy.types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AdmissionReason, AdmissionResult } from './admission.types.ts';
import { type AdmissionDecider, createAdmissionDecider } from './decide.ts';
import { keepTlsFilesLoaded, readTlsFiles } from './reloading-tls.ts';
import { parseAdmissionReview, reviewResponse } from './review.ts';

/** A Pod is at most ~1.5 MiB in etcd; a review carries it once (CREATE). Beyond this the body is refused. */
const MAX_BODY_BYTES = 3 * 1024 * 1024;
const ROUTE = /^\/validate\/pods\/([a-z0-9](?:[a-z0-9_.-]{0,61}[a-z0-9])?)$/;

export interface AdmissionListenerOptions {
  config: AdmissionConfig;
  /** The configuration file: relative certificate paths resolve against its folder. */
  configSource: string;
  catalog: CatalogLookup;
  policy: AdmissionPolicy;
  environments: EnvironmentPolicy;
  issuers: readonly IssuerConfig[];
  serviceAccounts: readonly ServiceAccountConfig[];
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
}

export interface AdmissionListener {
  /** `https://host:port` */
  readonly url: string;
  /**
   * Decides later reviews with a reloaded configuration's catalog, policy and
   * identities (SIGHUP); a review already being decided finishes with the old.
   */
  update(
    deps: Pick<
      AdmissionListenerOptions,
      'catalog' | 'policy' | 'environments' | 'issuers' | 'serviceAccounts'
    >,
  ): void;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Reads the body up to `limit` bytes; rejects with MG_ADMISSION_REVIEW_MALFORMED beyond it. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(
        new ModelgateError('MG_ADMISSION_REVIEW_MALFORMED', `AdmissionReview larger than ${limit} bytes`),
      );
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (part: Buffer) => {
      size += part.length;
      if (size > limit) {
        req.removeAllListeners('data');
        reject(
          new ModelgateError('MG_ADMISSION_REVIEW_MALFORMED', `AdmissionReview larger than ${limit} bytes`),
        );
        return;
      }
      parts.push(part);
    });
    req.on('end', () => resolveBody(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

function createReviewHandler(options: AdmissionListenerOptions, decider: AdmissionDecider) {
  const { metrics, logger, environments } = options;
  const count = (environment: string, result: AdmissionResult, reason: AdmissionReason) => {
    // Label values from configuration only: a path naming an unconfigured environment counts as `unknown`.
    const label = environments.stateOf(environment).configured ? environment : 'unknown';
    metrics.admissionReviews.inc({ environment: label, result, reason });
  };
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const match = ROUTE.exec(new URL(req.url ?? '/', 'https://admission.invalid').pathname);
    if (req.method !== 'POST' || match === null) {
      const error = new ModelgateError('MG_ROUTE_NOT_FOUND', 'use POST /validate/pods/{environment}');
      send(res, error.status, errorBody(error));
      return;
    }
    const environment = match[1] ?? '';
    let body: Buffer;
    let review: ReturnType<typeof parseAdmissionReview>;
    try {
      body = await readBody(req, MAX_BODY_BYTES);
      review = parseAdmissionReview(body);
    } catch (error) {
      const refusal = toModelgateError(error);
      count(environment, 'denied', 'malformed');
      logger.warn(
        { event: 'admission_malformed', environment, err: refusal.message },
        'malformed AdmissionReview',
      );
      res.setHeader('connection', 'close');
      send(res, refusal.code === 'MG_INTERNAL' ? 400 : refusal.status, errorBody(refusal));
      return;
    }
    const verdict = decider.review(review.pod, environment);
    count(environment, verdict.result, verdict.reason);
    if (verdict.result !== 'allowed') {
      logger.info(
        {
          event: 'admission',
          environment,
          namespace: review.pod.namespace,
          serviceAccount: review.pod.serviceAccount,
          uid: review.uid,
          dryRun: review.dryRun,
          result: verdict.result,
          denials: verdict.denials.map((d) => `${d.code} ${d.message}`),
          warnings: verdict.warnings,
        },
        verdict.allowed ? 'admission allowed with warnings' : 'admission denied',
      );
    }
    send(res, 200, JSON.stringify(reviewResponse(review.uid, verdict)));
  };
}

/**
 * Starts the `admission:` listener (docs/admission.md): HTTPS only, its
 * certificate files reloaded when they change. Never calls the API server:
 * every answer comes from the review body, the configuration and the catalog.
 */
export async function startAdmissionListener(options: AdmissionListenerOptions): Promise<AdmissionListener> {
  const { config, logger } = options;
  const base = dirname(options.configSource);
  const tls = { cert: resolve(base, config.tls.cert), key: resolve(base, config.tls.key) };
  const build = (
    deps: Pick<
      AdmissionListenerOptions,
      'catalog' | 'policy' | 'environments' | 'issuers' | 'serviceAccounts'
    >,
  ) =>
    createAdmissionDecider({
      catalog: deps.catalog,
      policy: deps.policy,
      environments: deps.environments,
      issuers: deps.issuers,
      serviceAccounts: deps.serviceAccounts,
      requireModels: config.requireModels,
      clock: options.clock,
    });
  let current = build(options);
  const handle = createReviewHandler(options, {
    review: (pod, environment) => current.review(pod, environment),
  });
  const server: Server = createServer(
    { ...readTlsFiles(tls), headersTimeout: 10_000, requestTimeout: 15_000, keepAliveTimeout: 30_000 },
    (req, res) => {
      handle(req, res).catch((error: unknown) => {
        // Fail closed: an unexpected error is a 500 the API server treats as a failure (failurePolicy: Fail).
        logger.error({ err: error }, 'admission review failed');
        options.metrics.admissionReviews.inc({
          environment: 'unknown',
          result: 'denied',
          reason: 'internal',
        });
        if (!res.headersSent) send(res, 500, errorBody(toModelgateError(error)));
        else res.destroy();
      });
    },
  );
  keepTlsFilesLoaded(server, tls, logger);
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.address, () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `https://${host}:${address.port}`,
    update(deps) {
      current = build(deps);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolveClose) => server.close(() => resolveClose()));
    },
  };
}

/**
 * Starts the admission listener when `admission:` is configured (the one
 * call app wiring makes). Without a policy given, the current release checks
 * (digest references, signer trust) are used.
 */
export function startConfiguredAdmission(options: {
  config: ModelgateConfig;
  catalog: CatalogLookup;
  environments: EnvironmentPolicy;
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
  policy?: AdmissionPolicy;
}): Promise<AdmissionListener | undefined> {
  const { config, environments } = options;
  if (config.admission === undefined) return Promise.resolve(undefined);
  return startAdmissionListener({
    config: config.admission,
    configSource: config.source,
    catalog: options.catalog,
    policy:
      options.policy ??
      createAdmissionPolicy({ environments, checks: [checkReference(environments), checkSigner] }),
    environments,
    issuers: config.issuers,
    serviceAccounts: config.serviceAccounts,
    metrics: options.metrics,
    logger: options.logger,
    clock: options.clock,
  });
}
