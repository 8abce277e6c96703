/** What every file entry of a release manifest has (docs/releases.md). */
interface FileEntry {
  path: string;
  size: number;
  /** `sha256:` + 64 lowercase hex. */
  digest: string;
  sources: string[];
}

/**
 * Evidence of an upstream signature that `modelgate intake` verified before
 * signing the release (docs/trust.md): who signed the model's OMS bundle.
 */
export interface UpstreamEvidence {
  format: 'oms/v1.0';
  method: 'sigstore' | 'key' | 'certificate';
  /** Certificate SAN (sigstore), leaf subject (certificate), `sha256:<hex>` of the PEM key (key). */
  identity: string;
  /** OIDC issuer (sigstore) or root CA subject (certificate). */
  issuer?: string;
  /** The OMS bundle exactly as verified, so the proxy can verify it again. */
  bundle: Record<string, unknown>;
}

/** A file verified chunk by chunk (README "HTTP API", chunk mode): ranges can be served and verified. */
export interface ChunkedFile extends FileEntry {
  chunkSize: number;
  /** Lowercase hex SHA-256 of each consecutive chunkSize slice (none for an empty file). */
  chunks: string[];
}

/** A file verified only as a whole (whole-file mode): no ranges, last bytes held until it verified. */
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
  /** The release digest this release was derived from (quantization, conversion, fine-tune). */
  parent?: string;
  upstream?: UpstreamEvidence;
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
  /** Who signed, as the signer's verifier saw it; absent when unsigned. */
  signature?: SignatureIdentity;
  /** The OMS signature that intake re-verified at load (upstreamSigners), when there is one. */
  upstream?: SignatureIdentity & { signer: string | null };
  trust: ReleaseTrust;
  /** Catalog file it was loaded from (absolute path). */
  sourceFile: string;
  /** Files by path. */
  files: Map<string, ManifestFile>;
}

/**
 * Who signed a release: `method` is the signer kind (`jwks`, `key`,
 * `certificate`, `sigstore`), `identity` the key id, key fingerprint,
 * certificate subject or keyless identity, `issuer` the OIDC issuer or root CA.
 */
export interface SignatureIdentity {
  method: string;
  identity: string;
  issuer?: string;
}

/** A release reference from a URL: a version, or a release digest. */
export type ReleaseRef = { kind: 'version'; version: string } | { kind: 'digest'; digest: string };
