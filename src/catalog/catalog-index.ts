import { ModelgateError } from '../errors.ts';
import type { CatalogReport } from './catalog.types.ts';
import type { ManifestFile, Release, ReleaseRef, ReleaseTrust } from './release.types.ts';

/**
 * The catalog's lookup structure, built from the releases one scan produced.
 * Pure: no I/O, no clock, no logging — the loader feeds it, the catalog swaps
 * whole indexes in one assignment so lookups never see a half-built one.
 */
export interface CatalogIndex {
  /** model → version → releases claiming it (more than one distinct digest = conflict). */
  readonly byVersion: ReadonlyMap<string, ReadonlyMap<string, readonly Release[]>>;
  /** release digest → release. */
  readonly byDigest: ReadonlyMap<string, Release>;
  /** model → file digest → every (release, file) listing it. */
  readonly byFileDigest: ReadonlyMap<
    string,
    ReadonlyMap<string, ReadonlyArray<{ release: Release; file: ManifestFile }>>
  >;
  readonly all: readonly Release[];
}

export type CatalogConflict = CatalogReport['conflicts'][number];

export const EMPTY_INDEX: CatalogIndex = {
  byVersion: new Map(),
  byDigest: new Map(),
  byFileDigest: new Map(),
  all: [],
};

/** When two files hold the same payload bytes, serve the most trusted copy. */
const TRUST_RANK: Record<ReleaseTrust, number> = { trusted: 2, untrusted_signer: 1, unsigned: 0 };

function getOrCreate<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create();
    map.set(key, value);
  }
  return value;
}

/** One release per digest: the most trusted copy wins (same payload signed twice, or also left unsigned). */
function dedupeByDigest(releases: readonly Release[]): Map<string, Release> {
  const byDigest = new Map<string, Release>();
  for (const release of releases) {
    const existing = byDigest.get(release.digest);
    if (existing === undefined || TRUST_RANK[release.trust] > TRUST_RANK[existing.trust]) {
      byDigest.set(release.digest, release);
    }
  }
  return byDigest;
}

/** model:version pairs claimed by more than one distinct payload, with the files that claim them. */
export function findConflicts(releases: readonly Release[]): CatalogConflict[] {
  const claims = new Map<string, { model: string; version: string; releases: Release[] }>();
  for (const release of releases) {
    const key = `${release.model}\0${release.version}`;
    getOrCreate(claims, key, () => ({
      model: release.model,
      version: release.version,
      releases: [],
    })).releases.push(release);
  }
  const conflicts: CatalogConflict[] = [];
  for (const claim of claims.values()) {
    if (new Set(claim.releases.map((r) => r.digest)).size > 1) {
      conflicts.push({
        model: claim.model,
        version: claim.version,
        files: claim.releases.map((r) => r.sourceFile),
      });
    }
  }
  return conflicts;
}

/** Builds the index of every release one scan loaded (rejected files are not releases). */
export function buildIndex(releases: readonly Release[]): {
  index: CatalogIndex;
  conflicts: CatalogConflict[];
} {
  const byDigest = dedupeByDigest(releases);
  const all = [...byDigest.values()];
  const byVersion = new Map<string, Map<string, Release[]>>();
  const byFileDigest = new Map<string, Map<string, Array<{ release: Release; file: ManifestFile }>>>();
  for (const release of all) {
    const versions = getOrCreate(byVersion, release.model, () => new Map<string, Release[]>());
    getOrCreate(versions, release.version, () => []).push(release);
    const fileDigests = getOrCreate(byFileDigest, release.model, () => new Map());
    for (const file of release.manifest.files) {
      getOrCreate(fileDigests, file.digest, () => []).push({ release, file });
    }
  }
  return { index: { byVersion, byDigest, byFileDigest, all }, conflicts: findConflicts(releases) };
}

/**
 * Resolves a reference in an index. Throws MG_MODEL_NOT_FOUND,
 * MG_RELEASE_NOT_FOUND or MG_RELEASE_CONFLICT (two manifests claim the version).
 */
export function resolveInIndex(index: CatalogIndex, model: string, ref: ReleaseRef): Release {
  const versions = index.byVersion.get(model);
  if (versions === undefined) {
    throw new ModelgateError('MG_MODEL_NOT_FOUND', `no release of model "${model}" in the catalog`);
  }
  if (ref.kind === 'digest') {
    const release = index.byDigest.get(ref.digest);
    // A digest of another model's release is not a release of this model.
    if (release === undefined || release.model !== model) {
      throw new ModelgateError('MG_RELEASE_NOT_FOUND', `model "${model}" has no release ${ref.digest}`);
    }
    return release;
  }
  const releases = versions.get(ref.version) ?? [];
  const [only, ...others] = releases;
  if (only === undefined) {
    throw new ModelgateError('MG_RELEASE_NOT_FOUND', `model "${model}" has no version "${ref.version}"`);
  }
  if (others.length > 0) {
    throw new ModelgateError(
      'MG_RELEASE_CONFLICT',
      `expected one manifest for ${model}:${ref.version}, got ${releases.length}; reference it by digest`,
      { details: { digests: releases.map((r) => r.digest) } },
    );
  }
  return only;
}

/** Every release of `model` listing a file with this digest. */
export function releasesWithFileIn(
  index: CatalogIndex,
  model: string,
  fileDigest: string,
): Array<{ release: Release; file: ManifestFile }> {
  return [...(index.byFileDigest.get(model)?.get(fileDigest) ?? [])];
}

/** Releases per environment, for the `modelgate_catalog_releases` gauge. */
export function countByEnvironment(index: CatalogIndex): Map<string, number> {
  const counts = new Map<string, number>();
  for (const release of index.all)
    counts.set(release.environment, (counts.get(release.environment) ?? 0) + 1);
  return counts;
}
