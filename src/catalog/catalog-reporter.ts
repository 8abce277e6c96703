import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { CatalogRejection } from './catalog.types.ts';
import { type CatalogConflict, type CatalogIndex, countByEnvironment } from './catalog-index.ts';

/** A rejected file and the hash of the content that was rejected (so an unchanged bad file counts once). */
export interface RejectedFile {
  contentHash: string;
  rejection: CatalogRejection;
}

/**
 * Says what a scan changed: logs and counts each rejected file content once,
 * logs each conflict once, logs releases added and removed, and sets the
 * per-environment release gauge. Remembers only what it already reported.
 */
export function createCatalogReporter(logger: Logger, metrics: Metrics, quiet = false) {
  // With `serve --workers N` every worker scans the same folder: one of them says so at info/warn,
  // the others only at debug, so an operator reads each change once.
  const warn = (fields: object, message: string) =>
    quiet ? logger.debug(fields, message) : logger.warn(fields, message);
  const info = (fields: object, message: string) =>
    quiet ? logger.debug(fields, message) : logger.info(fields, message);
  const countedRejections = new Set<string>();
  const loggedConflicts = new Set<string>();

  /** Forgets keys that are no longer current, so a file fixed then broken again is reported again. */
  function keepOnly(seen: Set<string>, current: ReadonlySet<string>): void {
    for (const key of seen) if (!current.has(key)) seen.delete(key);
  }

  function reportRejections(rejections: readonly RejectedFile[]): void {
    const current = new Set<string>();
    for (const { contentHash, rejection } of rejections) {
      const key = `${rejection.file}\0${contentHash}`;
      current.add(key);
      if (countedRejections.has(key)) continue;
      countedRejections.add(key);
      metrics.catalogRejected.inc({ reason: rejection.reason });
      warn(
        { file: rejection.file, reason: rejection.reason, message: rejection.message },
        'catalog file rejected',
      );
    }
    keepOnly(countedRejections, current);
  }

  function reportConflicts(conflicts: readonly CatalogConflict[], next: CatalogIndex): void {
    const current = new Set<string>();
    for (const conflict of conflicts) {
      const digests = (next.byVersion.get(conflict.model)?.get(conflict.version) ?? []).map((r) => r.digest);
      const key = `${conflict.model}\0${conflict.version}\0${digests.sort().join(',')}`;
      current.add(key);
      if (loggedConflicts.has(key)) continue;
      loggedConflicts.add(key);
      warn(
        { model: conflict.model, version: conflict.version, files: conflict.files, digests },
        'different manifests claim the same model and version; that version answers 409 until one is removed',
      );
    }
    keepOnly(loggedConflicts, current);
  }

  function reportChanges(previous: CatalogIndex, next: CatalogIndex): void {
    for (const release of next.all) {
      const before = previous.byDigest.get(release.digest);
      if (before !== undefined && before.trust === release.trust && before.signer === release.signer)
        continue;
      const fields = {
        model: release.model,
        version: release.version,
        environment: release.environment,
        digest: release.digest,
        signer: release.signer,
        trust: release.trust,
        file: release.sourceFile,
        // Upstream OMS evidence: re-verified when an upstream signer covers the model, else only noted.
        upstream:
          release.upstream?.identity ??
          (release.manifest.upstream
            ? 'present, not verified (no upstreamSigners entry covers this model)'
            : undefined),
      };
      if (release.trust === 'untrusted_signer') {
        warn(fields, 'release loaded, but its signer is not trusted for its environment');
      } else {
        info(fields, 'release loaded');
      }
    }
    for (const release of previous.all) {
      if (next.byDigest.has(release.digest)) continue;
      info(
        { model: release.model, version: release.version, digest: release.digest, file: release.sourceFile },
        'release removed',
      );
    }
  }

  function setReleaseGauge(next: CatalogIndex): void {
    // Synchronous reset + set: a scrape cannot interleave, and environments that vanished disappear.
    metrics.catalogReleases.reset();
    for (const [environment, count] of countByEnvironment(next)) {
      metrics.catalogReleases.set({ environment }, count);
    }
  }

  return {
    report(scan: {
      previous: CatalogIndex;
      next: CatalogIndex;
      rejections: readonly RejectedFile[];
      conflicts: readonly CatalogConflict[];
    }): void {
      setReleaseGauge(scan.next);
      reportRejections(scan.rejections);
      reportConflicts(scan.conflicts, scan.next);
      reportChanges(scan.previous, scan.next);
    },
  };
}
