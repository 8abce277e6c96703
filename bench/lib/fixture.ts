/**
 * What every scenario shares: the data files (random content, written and
 * digested in one pass), signed releases that point at them through the file
 * store and the S3 store, an issuer key with a cached token and pre-minted
 * fresh tokens, and a writer for per-scenario modelgate configurations.
 */
import { randomFillSync } from 'node:crypto';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { DigestAccumulator } from '../../src/catalog/file-digest.ts';
import type { Manifest, ManifestFile } from '../../src/catalog/release.types.ts';
import { createSigner, releaseDigest, signRelease, writeRelease } from '../../test/helpers/releases.ts';
import {
  generateTestKey,
  mintKubernetesToken,
  type TestKey,
  writeJwksFile,
} from '../../test/helpers/tokens.ts';

export const MiB = 1024 * 1024;
/** The chunk size `modelgate sign` writes by default and the brief asks for. */
export const CHUNK_BYTES = 8 * MiB;
export const SMALL_BYTES = 4096;
/** S3 bucket (and folder under the data root) holding the files, so one path works for every origin. */
export const BUCKET = 'bench';
const ISSUER = 'https://issuer.bench.invalid';
/** Random data is generated and written in pieces of this size: bounded memory, few syscalls. */
const GENERATE_PIECE = 64 * MiB;

export interface BenchRelease {
  model: string;
  digest: string;
  path: string;
  size: number;
}

export interface Fixture {
  dir: string;
  /** Root of the file store and of the static origins; the big file is `BUCKET/big.bin` under it. */
  dataRoot: string;
  bigFile: string;
  bigSize: number;
  /** URL path of the big and small files on a static origin or s3rver (path-style). */
  bigUrlPath: string;
  smallUrlPath: string;
  releases: {
    fileChunked: BenchRelease;
    fileWhole: BenchRelease;
    s3Chunked: BenchRelease;
    s3Whole: BenchRelease;
    small: BenchRelease;
  };
  /** The token a pod would send on every request (its verified claims get cached). */
  token: string;
  /** Distinct valid tokens, one per request, so each one's signature is verified. */
  mintTokens(count: number): Promise<string[]>;
  /** Writes a modelgate configuration for one scenario and returns its path. */
  writeConfig(name: string, options: ConfigOptions): Promise<string>;
}

export interface ConfigOptions {
  /** S3 endpoint for `s3://` sources (s3rver, or the rate-limited origin). */
  s3Endpoint?: string;
  transfer?: { readAhead?: number; hashWorkers?: boolean | number; chunkCacheBytes?: number };
  /** The verified disk cache (`cache:`), for the cache rows. */
  cache?: { dir: string; maxBytes: number };
}

/** Writes `size` random bytes to `path`, returning its manifest digests (chunk and whole-file). */
async function writeRandomFile(path: string, size: number) {
  const accumulator = new DigestAccumulator(CHUNK_BYTES);
  const piece = Buffer.allocUnsafe(Math.min(GENERATE_PIECE, size));
  const handle = await open(path, 'w');
  try {
    for (let written = 0; written < size; ) {
      const view = piece.subarray(0, Math.min(piece.length, size - written));
      randomFillSync(view);
      accumulator.update(view);
      await handle.write(view, 0, view.length, written);
      written += view.length;
    }
  } finally {
    await handle.close();
  }
  return accumulator.finish();
}

function manifestOf(model: string, file: ManifestFile): Manifest {
  return {
    schema: 'modelgate/release/v1',
    model,
    version: '1.0',
    environment: 'prod',
    created: '2026-01-01T00:00:00Z',
    provenance: { builder: 'bench/run.ts' },
    files: [file],
  };
}

export async function createFixture(dir: string, bigSize: number): Promise<Fixture> {
  const dataRoot = join(dir, 'data');
  const catalogDir = join(dir, 'releases');
  const keysDir = join(dir, 'keys');
  for (const folder of [join(dataRoot, BUCKET), catalogDir, keysDir])
    await mkdir(folder, { recursive: true });

  const bigFile = join(dataRoot, BUCKET, 'big.bin');
  const big = await writeRandomFile(bigFile, bigSize);
  const smallFile = join(dataRoot, BUCKET, 'small.bin');
  const small = await writeRandomFile(smallFile, SMALL_BYTES);

  const signer = await createSigner(keysDir, 'bench-release');
  const releases = {} as Fixture['releases'];
  const add = async (
    key: keyof Fixture['releases'],
    model: string,
    path: string,
    digests: typeof big,
    chunked: boolean,
    source: string,
  ) => {
    const entry = { path, size: digests.size, digest: digests.digest, sources: [source] };
    const file: ManifestFile =
      chunked && digests.chunks !== undefined
        ? { ...entry, chunkSize: CHUNK_BYTES, chunks: digests.chunks }
        : entry;
    const jws = await signRelease(manifestOf(model, file), signer);
    await writeRelease(catalogDir, model, jws);
    releases[key] = { model, digest: releaseDigest(jws), path, size: digests.size };
  };
  await add('fileChunked', 'bench-file-chunked', 'big.bin', big, true, `file:${BUCKET}/big.bin`);
  await add('fileWhole', 'bench-file-whole', 'big.bin', big, false, `file:${BUCKET}/big.bin`);
  await add('s3Chunked', 'bench-s3-chunked', 'big.bin', big, true, `s3://${BUCKET}/big.bin`);
  await add('s3Whole', 'bench-s3-whole', 'big.bin', big, false, `s3://${BUCKET}/big.bin`);
  await add('small', 'bench-small', 'small.bin', small, true, `file:${BUCKET}/small.bin`);

  // ES256 (SPIFFE JWT-SVIDs, many cloud OIDC issuers): its verification costs more than RS256's,
  // so the fresh-token rows are the conservative case.
  const key: TestKey = await generateTestKey('ES256');
  const issuerJwks = await writeJwksFile(keysDir, [key], 'issuer.jwks.json');
  const mint = () => mintKubernetesToken(key, { issuer: ISSUER, lifetimeSeconds: 3600 });
  const token = await mint();

  return {
    dir,
    dataRoot,
    bigFile,
    bigSize,
    bigUrlPath: `/${BUCKET}/big.bin`,
    smallUrlPath: `/${BUCKET}/small.bin`,
    releases,
    token,
    async mintTokens(count) {
      const tokens: string[] = [];
      for (let i = 0; i < count; i++) tokens.push(await mint());
      return tokens;
    },
    async writeConfig(name, options) {
      const stores: Record<string, unknown> = { file: { root: dataRoot } };
      if (options.s3Endpoint !== undefined) {
        stores.s3 = {
          region: 'us-east-1',
          endpoint: options.s3Endpoint,
          forcePathStyle: true,
          credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
        };
      }
      const config = {
        listen: { address: '127.0.0.1', port: 0 },
        admin: { address: '127.0.0.1', port: 0 },
        stores,
        catalog: { dir: catalogDir, pollSeconds: 0 },
        transfer: options.transfer ?? {},
        ...(options.cache ? { cache: options.cache } : {}),
        issuers: [
          {
            name: 'bench',
            issuer: ISSUER,
            jwksFile: issuerJwks,
            audiences: ['modelgate'],
            algorithms: ['ES256'],
          },
        ],
        serviceAccounts: [
          {
            name: 'inference',
            issuer: 'bench',
            subject: 'system:serviceaccount:fraud:inference',
            grants: [{ models: ['bench-*'], environments: ['prod'] }],
          },
        ],
        signers: [{ name: 'bench-release', jwksFile: signer.jwksFile, environments: ['prod'] }],
        environments: { prod: { mode: 'enforce', digestRefsOnly: true } },
        logging: { level: 'info' },
      };
      const path = join(dir, `${name}.yaml`);
      await writeFile(path, stringify(config));
      return path;
    },
  };
}

/** URL of a release file on a modelgate data listener. */
export function fileUrl(dataUrl: string, release: BenchRelease): string {
  return `${dataUrl}/v1/models/${release.model}/releases/${release.digest}/files/${release.path}`;
}
