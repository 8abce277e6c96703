import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Clock, systemClock } from '../clock.ts';
import type { CatalogConfig, SignerConfig } from '../config/config.types.ts';
import { ModelgateError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { Catalog, CatalogRejection, CatalogReport } from './catalog.types.ts';
import type { ManifestFile, Release, ReleaseRef, ReleaseTrust } from './release.types.ts';
import {
  type LoadedSigner,
  loadSigners,
  parseUnsignedRelease,
  ReleaseRejectedError,
  type VerifiedRelease,
  verifyRelease,
} from './signature.ts';

export interface CreateCatalogOptions {
  config: CatalogConfig;
  signers: SignerConfig[];
  logger: Logger;
  metrics: Metrics;
  clock?: Clock;
}

/**
 * A manifest lists a few hundred bytes per file (plus 65 per chunk); 64 MiB is
 * far beyond any real release and keeps one hostile file from exhausting memory.
 */
const MAX_CATALOG_FILE_BYTES = 64 * 1024 * 1024;

/** Catalog files read and verified at once: enough to hide disk latency, few enough to bound memory. */
const LOAD_CONCURRENCY = 8;

/** What one catalog file produced, remembered so an unchanged file is not read or verified again. */
interface FileState {
  /** Identity of the file's content generation on disk (inode, size, mtime, ctime). */
  stamp: string;
  /** SHA-256 of the bytes read; keys rejection counting so an unchanged bad file counts once. */
  contentHash: string;
  /** Signer key generation the file was verified against; new keys re-verify everything. */
  keysGeneration: number;
  release: Release | null;
  rejection: CatalogRejection | null;
}

interface Index {
  /** model → version → releases claiming it (more than one distinct digest = conflict). */
  byVersion: Map<string, Map<string, Release[]>>;
  /** release digest → release. */
  byDigest: Map<string, Release>;
  /** model → file digest → every (release, file) listing it. */
  byFileDigest: Map<string, Map<string, Array<{ release: Release; file: ManifestFile }>>>;
  all: Release[];
}

const EMPTY_INDEX: Index = { byVersion: new Map(), byDigest: new Map(), byFileDigest: new Map(), all: [] };

/** When two files hold the same payload bytes, serve the most trusted copy. */
const TRUST_RANK: Record<ReleaseTrust, number> = { trusted: 2, untrusted_signer: 1, unsigned: 0 };

/**
 * The release catalog (docs/releases.md): every `*.jws` (signed) and `*.json`
 * (unsigned) file directly in `config.dir`, verified at load. Dotfiles are
 * ignored, which also skips the `..data` links of a Kubernetes ConfigMap
 * mount while following its per-file symlinks. A bad file is logged, counted
 * once per distinct content and skipped; it never takes other releases down.
 * Each scan builds a new index and swaps it in one assignment, so lookups
 * never see a half-built catalog; unchanged files are not re-read.
 */
export function createCatalog(options: CreateCatalogOptions): Catalog {
  const { config, logger, metrics } = options;
  const clock = options.clock ?? systemClock;
  const log = logger.child({ component: 'catalog' });

  let signers: LoadedSigner[] = [];
  let signerFingerprint = '';
  let keysGeneration = 0;
  let index: Index = EMPTY_INDEX;
  let lastReport: CatalogReport = { loaded: 0, rejected: [], conflicts: [] };
  let loaded = false;
  let started = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<CatalogReport> | undefined;
  let queued: Promise<CatalogReport> | undefined;
  const files = new Map<string, FileState>();
  const countedRejections = new Set<string>();
  const loggedConflicts = new Set<string>();

  function fingerprint(loadedSigners: readonly LoadedSigner[]): string {
    return JSON.stringify(loadedSigners.map((s) => [s.name, s.environments, s.jwks]));
  }

  async function loadKeys(): Promise<void> {
    const next = await loadSigners(options.signers);
    const nextFingerprint = fingerprint(next);
    if (nextFingerprint !== signerFingerprint) {
      signers = next;
      signerFingerprint = nextFingerprint;
      keysGeneration++;
    }
  }

  async function verifyBytes(path: string, bytes: Buffer): Promise<VerifiedRelease> {
    if (path.endsWith('.json')) return parseUnsignedRelease(bytes);
    return verifyRelease(bytes.toString('utf8'), signers);
  }

  function toRelease(path: string, verified: VerifiedRelease): Release {
    const { manifest } = verified;
    return {
      model: manifest.model,
      version: manifest.version,
      environment: manifest.environment,
      digest: verified.digest,
      payload: verified.payload,
      manifest,
      signer: verified.signer?.name ?? null,
      trust: verified.trust,
      sourceFile: path,
      files: new Map(manifest.files.map((file) => [file.path, file])),
    };
  }

  function rejected(path: string, stamp: string, contentHash: string, error: unknown): FileState {
    const rejection: CatalogRejection =
      error instanceof ReleaseRejectedError
        ? { file: path, reason: error.reason, message: error.message }
        : { file: path, reason: 'unreadable', message: (error as Error)?.message ?? String(error) };
    return { stamp, contentHash, keysGeneration, release: null, rejection };
  }

  /** Loads one catalog file, reusing the previous result when its content did not change. Null: skip it. */
  async function loadFile(path: string): Promise<FileState | null> {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      // O_NONBLOCK: a FIFO dropped into the folder must not hang the scan (no effect on regular files).
      handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null; // removed since readdir
      return rejected(path, `error:${code}`, `error:${code}`, new Error(`cannot open: ${code ?? error}`));
    }
    try {
      const info = await handle.stat({ bigint: true });
      if (!info.isFile()) return null;
      const stamp = `${info.dev}-${info.ino}-${info.size}-${info.mtimeNs}-${info.ctimeNs}`;
      const previous = files.get(path);
      if (previous && previous.stamp === stamp && previous.keysGeneration === keysGeneration) return previous;
      if (info.size > BigInt(MAX_CATALOG_FILE_BYTES)) {
        return rejected(
          path,
          stamp,
          `size:${stamp}`,
          new ReleaseRejectedError(
            'invalid_manifest',
            `expected at most ${MAX_CATALOG_FILE_BYTES} bytes, got ${info.size}`,
          ),
        );
      }
      let bytes: Buffer;
      try {
        bytes = await handle.readFile();
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        return rejected(path, stamp, `error:${code}`, new Error(`cannot read: ${code ?? error}`));
      }
      const contentHash = createHash('sha256').update(bytes).digest('hex');
      if (previous && previous.contentHash === contentHash && previous.keysGeneration === keysGeneration) {
        return { ...previous, stamp };
      }
      try {
        const release = toRelease(path, await verifyBytes(path, bytes));
        return { stamp, contentHash, keysGeneration, release, rejection: null };
      } catch (error) {
        return rejected(path, stamp, contentHash, error);
      }
    } finally {
      await handle.close().catch(() => {});
    }
  }

  function buildIndex(states: readonly FileState[]): { index: Index; conflicts: CatalogReport['conflicts'] } {
    const byDigest = new Map<string, Release>();
    const claims = new Map<string, { model: string; version: string; releases: Release[] }>();
    for (const { release } of states) {
      if (release === null) continue;
      const existing = byDigest.get(release.digest);
      if (existing === undefined || TRUST_RANK[release.trust] > TRUST_RANK[existing.trust]) {
        byDigest.set(release.digest, release);
      }
      const key = `${release.model}\0${release.version}`;
      let claim = claims.get(key);
      if (claim === undefined) {
        claim = { model: release.model, version: release.version, releases: [] };
        claims.set(key, claim);
      }
      claim.releases.push(release);
    }
    const all = [...byDigest.values()];
    const byVersion: Index['byVersion'] = new Map();
    const byFileDigest: Index['byFileDigest'] = new Map();
    for (const release of all) {
      let versions = byVersion.get(release.model);
      if (versions === undefined) {
        versions = new Map();
        byVersion.set(release.model, versions);
      }
      versions.set(release.version, [...(versions.get(release.version) ?? []), release]);
      let fileDigests = byFileDigest.get(release.model);
      if (fileDigests === undefined) {
        fileDigests = new Map();
        byFileDigest.set(release.model, fileDigests);
      }
      for (const file of release.manifest.files) {
        const entries = fileDigests.get(file.digest);
        if (entries === undefined) fileDigests.set(file.digest, [{ release, file }]);
        else entries.push({ release, file });
      }
    }
    const conflicts: CatalogReport['conflicts'] = [];
    for (const claim of claims.values()) {
      const digests = new Set(claim.releases.map((r) => r.digest));
      if (digests.size > 1) {
        conflicts.push({
          model: claim.model,
          version: claim.version,
          files: claim.releases.map((r) => r.sourceFile),
        });
      }
    }
    return { index: { byVersion, byDigest, byFileDigest, all }, conflicts };
  }

  /** Logs and counts each rejected file content once; forgets files that were fixed or removed. */
  function recordRejections(rejections: readonly { state: FileState; rejection: CatalogRejection }[]): void {
    const current = new Set<string>();
    for (const { state, rejection } of rejections) {
      const key = `${rejection.file}\0${state.contentHash}`;
      current.add(key);
      if (countedRejections.has(key)) continue;
      countedRejections.add(key);
      metrics.catalogRejected.inc({ reason: rejection.reason });
      log.warn(
        { file: rejection.file, reason: rejection.reason, message: rejection.message },
        'catalog file rejected',
      );
    }
    for (const key of countedRejections) if (!current.has(key)) countedRejections.delete(key);
  }

  function recordConflicts(conflicts: CatalogReport['conflicts'], next: Index): void {
    const current = new Set<string>();
    for (const conflict of conflicts) {
      const digests = (next.byVersion.get(conflict.model)?.get(conflict.version) ?? []).map((r) => r.digest);
      const key = `${conflict.model}\0${conflict.version}\0${digests.sort().join(',')}`;
      current.add(key);
      if (loggedConflicts.has(key)) continue;
      loggedConflicts.add(key);
      log.warn(
        { model: conflict.model, version: conflict.version, files: conflict.files, digests },
        'different manifests claim the same model and version; that version answers 409 until one is removed',
      );
    }
    for (const key of loggedConflicts) if (!current.has(key)) loggedConflicts.delete(key);
  }

  function logChanges(previous: Index, next: Index): void {
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
      };
      if (release.trust === 'untrusted_signer') {
        log.warn(fields, 'release loaded, but its signer is not trusted for its environment');
      } else {
        log.info(fields, 'release loaded');
      }
    }
    for (const release of previous.all) {
      if (next.byDigest.get(release.digest) === undefined) {
        log.info(
          {
            model: release.model,
            version: release.version,
            digest: release.digest,
            file: release.sourceFile,
          },
          'release removed',
        );
      }
    }
  }

  function setReleaseGauge(next: Index): void {
    const counts = new Map<string, number>();
    for (const release of next.all)
      counts.set(release.environment, (counts.get(release.environment) ?? 0) + 1);
    // Synchronous reset + set: a scrape cannot interleave, and environments that vanished disappear.
    metrics.catalogReleases.reset();
    for (const [environment, count] of counts) metrics.catalogReleases.set({ environment }, count);
  }

  async function scan(): Promise<CatalogReport> {
    const startedAt = clock();
    let names: string[];
    try {
      names = await readdir(config.dir);
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
    const paths = names
      .filter((name) => !name.startsWith('.') && (name.endsWith('.jws') || name.endsWith('.json')))
      .sort()
      .map((name) => join(config.dir, name));
    const loadedStates = await mapLimit(paths, LOAD_CONCURRENCY, loadFile);

    files.clear();
    const states: FileState[] = [];
    const rejections: { state: FileState; rejection: CatalogRejection }[] = [];
    loadedStates.forEach((state, i) => {
      if (state === null) return;
      files.set(paths[i]!, state);
      states.push(state);
      if (state.rejection) rejections.push({ state, rejection: state.rejection });
    });

    const { index: next, conflicts } = buildIndex(states);
    const previous = index;
    index = next;
    loaded = true;
    setReleaseGauge(next);
    recordRejections(rejections);
    recordConflicts(conflicts, next);
    logChanges(previous, next);
    lastReport = { loaded: next.all.length, rejected: rejections.map((r) => r.rejection), conflicts };
    log.debug(
      {
        dir: config.dir,
        releases: next.all.length,
        rejected: rejections.length,
        conflicts: conflicts.length,
        durationMs: clock() - startedAt,
      },
      'catalog scanned',
    );
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

  /** One scan at a time; calls during a scan share one follow-up scan that sees their changes. */
  function reload(): Promise<CatalogReport> {
    if (running === undefined) {
      running = refreshKeysAndScan().finally(() => {
        running = undefined;
      });
      return running;
    }
    queued ??= running
      .catch(() => lastReport)
      .then(() => {
        queued = undefined;
        return reload();
      });
    return queued;
  }

  function byModel<T>(map: Map<string, T>, model: string): T {
    const found = map.get(model);
    if (found === undefined) {
      throw new ModelgateError('MG_MODEL_NOT_FOUND', `no release of model "${model}" in the catalog`);
    }
    return found;
  }

  return {
    async start(): Promise<CatalogReport> {
      if (started) throw new Error('catalog already started');
      started = true;
      // Signer keys are configuration: a missing or invalid key file is a start-up error naming the file.
      await loadKeys();
      running = scan().finally(() => {
        running = undefined;
      });
      const report = await running;
      if (config.pollSeconds > 0) {
        timer = setInterval(() => {
          reload().catch((error: unknown) => log.error({ err: error }, 'catalog poll failed'));
        }, config.pollSeconds * 1000);
        timer.unref();
      }
      return report;
    },

    reload,

    isLoaded: () => loaded,

    stop(): void {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },

    resolve(model: string, ref: ReleaseRef): Release {
      const current = index;
      const versions = byModel(current.byVersion, model);
      if (ref.kind === 'digest') {
        const release = current.byDigest.get(ref.digest);
        // A digest of another model's release is not a release of this model.
        if (release === undefined || release.model !== model) {
          throw new ModelgateError('MG_RELEASE_NOT_FOUND', `model "${model}" has no release ${ref.digest}`);
        }
        return release;
      }
      const releases = versions.get(ref.version);
      if (releases === undefined || releases.length === 0) {
        throw new ModelgateError('MG_RELEASE_NOT_FOUND', `model "${model}" has no version "${ref.version}"`);
      }
      if (releases.length > 1) {
        throw new ModelgateError(
          'MG_RELEASE_CONFLICT',
          `expected one manifest for ${model}:${ref.version}, got ${releases.length}; reference it by digest`,
          { details: { digests: releases.map((r) => r.digest) } },
        );
      }
      return releases[0]!;
    },

    releasesWithFile(model: string, fileDigest: string): Array<{ release: Release; file: ManifestFile }> {
      return [...(index.byFileDigest.get(model)?.get(fileDigest) ?? [])];
    },

    all: () => [...index.all],
  };
}

/** Maps over `items` with at most `limit` calls in flight, keeping the order of results. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
