import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { digestBytes } from '../../src/catalog/file-digest.ts';
import type { Manifest, ManifestFile } from '../../src/catalog/release.types.ts';
import { type ReleaseAlgorithm, sha256Digest, signManifest } from '../../src/catalog/signature.ts';

export interface TestSigner {
  name: string;
  /** Public JWKS file, ready for `signers[].jwksFile`. */
  jwksFile: string;
  privateJwk: JWK;
  kid: string;
  alg: ReleaseAlgorithm;
}

/**
 * Generates a release signing key pair and writes its public JWKS to
 * `DIR/NAME.jwks.json` (the private key stays in memory). Keys are made at
 * run time: no private key is ever committed.
 */
export async function createSigner(
  dir: string,
  name = 'release',
  alg: ReleaseAlgorithm = 'ES256',
): Promise<TestSigner> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = `${name}-${(await calculateJwkThumbprint(publicJwk)).slice(0, 16)}`;
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg };
  const jwksFile = join(dir, `${name}.jwks.json`);
  await writeFile(jwksFile, JSON.stringify({ keys: [{ ...publicJwk, kid, alg, use: 'sig' }] }));
  return { name, jwksFile, privateJwk, kid, alg };
}

export interface TestFile {
  path: string;
  bytes: Buffer;
  /** Chunk size in bytes (default 1 MiB, the smallest allowed); null = whole-file mode (no chunks). */
  chunkSize?: number | null;
  /** Locations, e.g. `file:x/1.0/model.bin`, `s3://bucket/key`. */
  sources: string[];
}

export interface BuildManifestInput {
  model: string;
  version: string;
  environment: string;
  files: TestFile[];
  /** Default `2026-01-01T00:00:00Z`. */
  created?: string;
  provenance?: Record<string, string>;
}

/** Builds a manifest whose sizes, digests and chunk digests match the given bytes. */
export function buildManifest(input: BuildManifestInput): Manifest {
  const files = input.files.map((file): ManifestFile => {
    const chunkSize = file.chunkSize === undefined ? 1024 * 1024 : file.chunkSize;
    const digests = digestBytes(file.bytes, chunkSize);
    const entry = { path: file.path, size: digests.size, digest: digests.digest, sources: file.sources };
    if (chunkSize !== null && digests.chunks !== undefined) {
      return { ...entry, chunkSize, chunks: digests.chunks };
    }
    return entry;
  });
  const manifest: Manifest = {
    schema: 'modelgate/release/v1',
    model: input.model,
    version: input.version,
    environment: input.environment,
    created: input.created ?? '2026-01-01T00:00:00Z',
    files,
  };
  if (input.provenance) manifest.provenance = input.provenance;
  return manifest;
}

/** Signs a manifest as a release JWS (validates it first; throws ManifestError when invalid). */
export function signRelease(manifest: Manifest, signer: TestSigner): Promise<string> {
  return signManifest(manifest, signer.privateJwk, signer.kid, signer.alg);
}

/** The release digest of a signed release (`sha256:` + hex of its payload bytes). */
export function releaseDigest(jws: string): string {
  const payload = jws.trim().split('.')[1] ?? '';
  return sha256Digest(Buffer.from(payload, 'base64url'));
}

/**
 * Writes a release into a catalog folder and returns its path. `name`
 * without `.jws` / `.json` gets `.jws` appended.
 */
export async function writeRelease(dir: string, name: string, jws: string): Promise<string> {
  const file = join(dir, /\.(jws|json)$/.test(name) ? name : `${name}.jws`);
  await writeFile(file, jws);
  return file;
}
