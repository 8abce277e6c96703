/** What every file entry of a release manifest has (SPEC §1). */
interface FileEntry {
  path: string;
  size: number;
  /** `sha256:` + 64 lowercase hex. */
  digest: string;
  sources: string[];
}

/** A file verified chunk by chunk (SPEC §2 chunk mode): ranges can be served and verified. */
export interface ChunkedFile extends FileEntry {
  chunkSize: number;
  /** Lowercase hex SHA-256 of each consecutive chunkSize slice (none for an empty file). */
  chunks: string[];
}

/** A file verified only as a whole (SPEC §2 whole-file mode): no ranges, last bytes held until it verified. */
export interface WholeFile extends FileEntry {
  chunkSize?: undefined;
  chunks?: undefined;
}

/**
 * A file entry of a release manifest. The signed JSON has no discriminator
 * field (and must not grow one), so the presence of `chunks` tells the kinds
 * apart: narrow with `isChunked` (catalog/manifest.ts), never read `chunks`
 * as optional.
 */
export type ManifestFile = ChunkedFile | WholeFile;

export interface Manifest {
  schema: 'modelgate/release/v1';
  model: string;
  version: string;
  environment: string;
  created: string;
  provenance?: Record<string, string>;
  files: ManifestFile[];
}

/**
 * How far a release is trusted:
 * - `trusted` — signed by a signer allowed for the manifest's environment;
 * - `untrusted_signer` — signed by a configured signer that is not allowed for that environment;
 * - `unsigned` — a `*.json` manifest.
 * Only `trusted` releases are served in enforce mode without break-glass.
 */
export type ReleaseTrust = 'trusted' | 'untrusted_signer' | 'unsigned';

export interface Release {
  model: string;
  version: string;
  environment: string;
  /** `sha256:` + hex SHA-256 of the payload bytes exactly as signed (or of the .json file bytes). */
  digest: string;
  /** The payload bytes exactly as signed; served by the manifest endpoint. */
  payload: Buffer;
  manifest: Manifest;
  /** Name of the signer whose key verified the signature; null when unsigned. */
  signer: string | null;
  trust: ReleaseTrust;
  /** Catalog file it was loaded from (absolute path). */
  sourceFile: string;
  /** Files by path. */
  files: Map<string, ManifestFile>;
}

/** A release reference from a URL: a version, or a release digest. */
export type ReleaseRef = { kind: 'version'; version: string } | { kind: 'digest'; digest: string };
