import type { AttestationLookup } from '../policy/attestations.ts';
import type { ManifestFile, Release, ReleaseRef } from './release.types.ts';

/** Why a catalog file was rejected: the `reason` label of modelgate_catalog_rejected_total. */
export type RejectionReason =
  | 'unreadable'
  | 'invalid_json'
  | 'invalid_manifest'
  | 'invalid_jws'
  | 'wrong_type'
  | 'unknown_signer'
  | 'bad_signature'
  | 'invalid_bundle'
  | 'untrusted_identity'
  | 'certificate_invalid'
  | 'certificate_expired'
  | 'wrong_usage'
  | 'tlog_missing'
  | 'signer_revoked'
  | 'upstream_unverified'
  | 'attestation_unverified'
  | 'attestation_invalid';

export interface CatalogRejection {
  file: string;
  reason: RejectionReason;
  message: string;
}

export interface CatalogReport {
  loaded: number;
  rejected: CatalogRejection[];
  /** model:version pairs claimed by two different manifests (each answers 409). */
  conflicts: Array<{ model: string; version: string; files: string[] }>;
}

export interface CatalogLookup {
  /** Throws ModelgateError MG_MODEL_NOT_FOUND, MG_RELEASE_NOT_FOUND or MG_RELEASE_CONFLICT. O(1). */
  resolve(model: string, ref: ReleaseRef): Release;
  /** Every release of `model` that lists a file with this digest (`sha256:…`). O(1). */
  releasesWithFile(model: string, fileDigest: string): Array<{ release: Release; file: ManifestFile }>;
  /** Every loaded release. */
  all(): Release[];
  /** A release by its digest, whatever its model (lineage follows parents by digest). */
  byDigest(digest: string): Release | undefined;
  /** The verified attestations of the last scan, by release digest. */
  attestations(): AttestationLookup;
}

export interface Catalog extends CatalogLookup {
  /** Loads the directory once and starts polling every `pollSeconds` (0 = no polling). */
  start(): Promise<CatalogReport>;
  /** Re-scans now (SIGHUP). When the directory is unreadable, the last good catalog stays. */
  reload(): Promise<CatalogReport>;
  /** True once one scan succeeded. */
  isLoaded(): boolean;
  stop(): void;
}
