import { createHash } from 'node:crypto';
import { type Clock, systemClock } from '../clock.ts';
import type { CatalogConfig } from '../config/config.types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { SignerSpec } from '../trust/verifier.types.ts';
import { createAttestationVerifier } from './attestation-verifier.ts';
import { type EnvelopeVerifier, indexAttestations, loadAttestations } from './attestations.ts';
import type { Catalog, CatalogReport } from './catalog.types.ts';
import {
  buildIndex,
  type CatalogIndex,
  EMPTY_INDEX,
  releasesWithFileIn,
  resolveInIndex,
} from './catalog-index.ts';
import { createCatalogLoader, listReleaseFiles } from './catalog-loader.ts';
import { createCatalogReporter, type RejectedFile } from './catalog-reporter.ts';
import { createScanScheduler } from './catalog-scheduler.ts';
import {
  type CatalogSigner,
  createReleaseVerifier,
  revokedAt,
  type UpstreamSigner,
} from './release-verifier.ts';

export interface CreateCatalogOptions {
  config: CatalogConfig;
  signers: readonly CatalogSigner[];
  /** OMS signers whose evidence releases of their `models` must carry (README "Trust"). */
  upstreamSigners?: readonly UpstreamSigner[];
  /** Folder that relative key paths resolve against (the configuration's). */
  baseDir?: string;
  /** Who may sign attestations (`<catalog dir>/attestations/`); none = attestations are not loaded. */
  attestors?: readonly SignerSpec[];
  /** Called after every scan (policy gauges that depend on the catalog). */
  onScan?: () => void;
  /** Log changes at debug only (every worker but one of `serve --workers N`). */
  quiet?: boolean;
  logger: Logger;
  metrics: Metrics;
  clock?: Clock;
}

/**
 * The release catalog: every `*.jws` (signed) and `*.json` (unsigned) file
 * directly in `config.dir`, verified at load (README "Releases"). Dotfiles are
 * ignored, which also skips the `..data` links of a Kubernetes ConfigMap
 * mount while following its per-file symlinks. A bad file is logged, counted
 * once per distinct content and skipped; it never takes other releases down.
 * Each scan builds a new index (catalog-index.ts, pure) and swaps it in one
 * assignment, so lookups never see a half-built catalog; unchanged files are
 * not re-read (catalog-loader.ts); what changed is reported by
 * catalog-reporter.ts; scans are scheduled by catalog-scheduler.ts.
 */
export function createCatalog(options: CreateCatalogOptions): Catalog {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const log = options.logger.child({ component: 'catalog' });

  let signerFingerprint = '';
  let trustGeneration = 0;
  let index: CatalogIndex = EMPTY_INDEX;
  let lastReport: CatalogReport = { loaded: 0, rejected: [], conflicts: [] };
  let loaded = false;
  let lastRejected = -1;
  let started = false;

  const verifier = createReleaseVerifier({
    signers: options.signers,
    upstreamSigners: options.upstreamSigners ?? [],
    baseDir: options.baseDir ?? process.cwd(),
  });
  const loader = createCatalogLoader((path, bytes) => verifier.verify(path, bytes, new Date(clock())));
  const reporter = createCatalogReporter(log, options.metrics, options.quiet);

  let attestationVerifier: EnvelopeVerifier | undefined;
  let attestations = indexAttestations([]);

  /** Reads the signers' and attestors' key files (throws naming the file). */
  async function loadKeys(): Promise<void> {
    await verifier.loadKeys();
    const attestors = options.attestors ?? [];
    attestationVerifier =
      attestors.length === 0
        ? undefined
        : await createAttestationVerifier(attestors, options.baseDir ?? process.cwd());
  }

  /** Attestations are few and small: every scan verifies them again (a new attestor key takes effect at once). */
  async function scanAttestations(): Promise<RejectedFile[]> {
    if (attestationVerifier === undefined) {
      attestations = indexAttestations([]);
      return [];
    }
    const loaded = await loadAttestations(config.dir, attestationVerifier);
    attestations = indexAttestations(loaded.attestations);
    return loaded.rejected.map((rejection) => ({
      contentHash: createHash('sha256').update(rejection.message).digest('hex'),
      rejection,
    }));
  }

  /**
   * A change of keys, or a revocation whose instant has passed, re-verifies
   * every file: a revoked signer's releases leave the catalog at the next scan.
   */
  function refreshTrustGeneration(): void {
    const now = new Date(clock());
    const next = verifier.fingerprint(now);
    if (next !== signerFingerprint) {
      signerFingerprint = next;
      trustGeneration++;
    }
    for (const signer of options.signers) {
      options.metrics.signerRevoked.set({ signer: signer.name }, revokedAt(signer, now) ? 1 : 0);
    }
  }

  async function scan(): Promise<CatalogReport> {
    const startedAt = clock();
    let paths: string[];
    try {
      paths = await listReleaseFiles(config.dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      log.error(
        { dir: config.dir, code, releases: index.all.length },
        loaded
          ? 'catalog directory is unreadable; keeping the last good catalog'
          : 'catalog directory is unreadable; the catalog stays empty and not ready',
      );
      return lastReport;
    }
    refreshTrustGeneration();
    const states = await loader.loadAll(paths, trustGeneration);
    const releases = states.flatMap((state) => (state.release ? [state.release] : []));
    const rejections: RejectedFile[] = states.flatMap((state) =>
      state.rejection ? [{ contentHash: state.contentHash, rejection: state.rejection }] : [],
    );
    rejections.push(...(await scanAttestations()));
    const { index: next, conflicts } = buildIndex(releases);
    const previous = index;
    index = next;
    loaded = true;
    reporter.report({ previous, next, rejections, conflicts });
    lastReport = { loaded: next.all.length, rejected: rejections.map((r) => r.rejection), conflicts };
    options.onScan?.();
    const changed =
      previous.all.length !== next.all.length ||
      next.all.some((release) => !previous.byDigest.has(release.digest)) ||
      rejections.length !== lastRejected;
    lastRejected = rejections.length;
    const summary = {
      dir: config.dir,
      releases: next.all.length,
      rejected: rejections.length,
      conflicts: conflicts.length,
      durationMs: clock() - startedAt,
    };
    // One summary line per scan that changed something (at debug otherwise, and in quiet workers).
    if (changed && !options.quiet) log.info(summary, 'catalog scanned');
    else log.debug(summary, 'catalog scanned');
    return lastReport;
  }

  async function refreshKeysAndScan(): Promise<CatalogReport> {
    try {
      await loadKeys();
    } catch (error) {
      // SIGHUP after a botched key rotation must not take serving down: keep the keys we have.
      log.error({ err: error }, 'cannot reload signer keys; keeping the previous keys');
    }
    return scan();
  }

  const scheduler = createScanScheduler({
    pollSeconds: config.pollSeconds,
    scan: refreshKeysAndScan,
    onPollError: (error) => log.error({ err: error }, 'catalog poll failed'),
  });

  return {
    async start(): Promise<CatalogReport> {
      if (started) throw new Error('catalog already started');
      started = true;
      // Signer keys are configuration: a missing or invalid key file is a start-up error naming the file.
      await loadKeys();
      const report = await scheduler.trigger();
      scheduler.startPolling();
      return report;
    },
    reload: scheduler.trigger,
    isLoaded: () => loaded,
    stop: scheduler.stop,
    resolve: (model, ref) => resolveInIndex(index, model, ref),
    releasesWithFile: (model, fileDigest) => releasesWithFileIn(index, model, fileDigest),
    all: () => [...index.all],
    byDigest: (digest) => index.byDigest.get(digest),
    attestations: () => attestations,
  };
}
