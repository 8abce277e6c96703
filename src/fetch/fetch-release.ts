import { mkdir, readFile, realpath, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { IdentityFields } from '../release-headers.ts';
import { createNewFile, moveIntoPlace, placeFile, refuseSymlink } from './dest-paths.ts';
import { backoffDelay, downloadFile, type FileResult, syncFolder } from './download-file.ts';
import { FetchError, isFetchError } from './fetch-error.ts';
import {
  type FetchManifest,
  isDigest,
  parseManifest,
  RELEASE_RECORD_NAME,
  sameDigest,
  sha256Digest,
  TEMP_DIR_NAME,
} from './manifest.ts';
import type { FetchReporter, FetchSummary } from './progress.ts';
import { createProxyClient, type ProxyClient } from './proxy-client.ts';
import type { TokenSource } from './token-source.ts';

export interface FetchOptions {
  /** Base URL of the proxy's data listener. */
  proxy: URL;
  model: string;
  /** A version or a release digest (`sha256:…`). */
  release: string;
  dest: string;
  tokens: TokenSource;
  /** PEM of an extra CA for an https proxy. */
  ca?: string;
  /** Sent in `Modelgate-Break-Glass` on every request when set. */
  breakGlassToken?: string;
  /** Files downloaded at once. */
  concurrency: number;
  /** Failed attempts in a row without progress, per request, before giving up. */
  retries: number;
  /** First retry delay in milliseconds (default 250); doubles on each attempt. */
  retryBaseMs?: number;
  reporter: FetchReporter;
  signal?: AbortSignal;
}

/** The record written to `DEST/.modelgate-release.json` once every file is in place and verified. */
export interface ReleaseRecord {
  schema: 'modelgate/fetched-release/v1';
  releaseDigest: string;
  model: string;
  version: string;
  environment: string;
  created?: string;
  provenance?: Record<string, string>;
  /** The proxy it came through (origin and path only). */
  proxy: string;
  /** The release signer as the proxy verified it (`unsigned` for an unsigned manifest), when it said. */
  signer?: string;
  /** Who signed, as the proxy verified it: method (jwks, key, certificate, sigstore), identity, issuer. */
  signerIdentity?: IdentityFields;
  /** The upstream (OMS) signature the proxy re-verified for this release, when there is one. */
  upstream?: IdentityFields;
  files: Array<{ path: string; size: number; digest: string }>;
  fetchedAt: string;
}

const DEFAULT_RETRY_BASE_MS = 250;

interface VerifiedManifest {
  releaseDigest: string;
  manifest: FetchManifest;
  signer: string | undefined;
  signerIdentity: IdentityFields | undefined;
  upstream: IdentityFields | undefined;
}

/**
 * GETs the manifest and checks it before trusting a byte of it: sha256 of the
 * body must equal the `Modelgate-Release-Digest` header, and the digest the
 * caller asked for when it asked by digest.
 */
async function getVerifiedManifest(
  client: ProxyClient,
  model: string,
  ref: string,
  signal: AbortSignal,
): Promise<VerifiedManifest> {
  const { body, releaseDigest, signer, signerIdentity, upstream } = await client.getManifest(
    model,
    ref,
    signal,
  );
  if (releaseDigest === undefined || !isDigest(releaseDigest)) {
    throw new FetchError(
      'integrity',
      'FETCH_RELEASE_DIGEST_MISMATCH',
      `the manifest response has no valid Modelgate-Release-Digest header (got ${JSON.stringify(releaseDigest ?? null)})`,
    );
  }
  const actual = sha256Digest(body);
  if (!sameDigest(actual, releaseDigest)) {
    throw new FetchError(
      'integrity',
      'FETCH_RELEASE_DIGEST_MISMATCH',
      `manifest body hashes to ${actual}, the proxy announced ${releaseDigest}`,
    );
  }
  if (ref.startsWith('sha256:') && !sameDigest(actual, ref)) {
    throw new FetchError(
      'integrity',
      'FETCH_RELEASE_DIGEST_MISMATCH',
      `expected release ${ref}, the manifest hashes to ${actual}`,
    );
  }
  return {
    releaseDigest: actual,
    manifest: parseManifest(body, model, ref),
    signer,
    signerIdentity,
    upstream,
  };
}

/** Retries a request on retryable failures (backoff) and once on an integrity failure. */
async function withRetries<T>(
  what: (signal: AbortSignal) => Promise<T>,
  options: { retries: number; retryBaseMs: number; signal: AbortSignal; reporter: FetchReporter },
): Promise<T> {
  let failures = 0;
  let integrityFailures = 0;
  for (;;) {
    try {
      return await what(options.signal);
    } catch (error) {
      if (!isFetchError(error)) throw error;
      let delayMs: number;
      if (error.kind === 'integrity') {
        integrityFailures += 1;
        if (integrityFailures > 1) throw error;
        delayMs = 0;
      } else {
        failures += 1;
        if (!error.retryable || failures > options.retries) throw error;
        delayMs = Math.min(error.retryAfterMs ?? backoffDelay(options.retryBaseMs, failures), 30_000);
      }
      options.reporter.retry({ attempt: failures + integrityFailures, offset: 0, code: error.code, delayMs });
      try {
        await sleep(delayMs, undefined, { signal: options.signal });
      } catch (abort) {
        throw new FetchError('interrupted', 'FETCH_INTERRUPTED', 'interrupted', { cause: abort });
      }
    }
  }
}

async function prepareDest(dest: string): Promise<string> {
  try {
    await mkdir(dest, { recursive: true });
    return await realpath(dest);
  } catch (error) {
    throw new FetchError('local', 'FETCH_LOCAL_IO', `cannot create the destination ${dest}`, {
      cause: error,
    });
  }
}

/**
 * A record of another release in DEST would claim files that are about to
 * change: remove it first, so DEST never names a release it does not hold.
 */
async function dropStaleRecord(dest: string, releaseDigest: string): Promise<void> {
  const path = join(dest, RELEASE_RECORD_NAME);
  // A record that is a symlink is refused before anything is downloaded.
  if ((await refuseSymlink(path)) === undefined) return;
  try {
    const record = JSON.parse(await readFile(path, 'utf8')) as Partial<ReleaseRecord>;
    if (record.releaseDigest === releaseDigest) return;
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return;
  }
  await rm(path, { force: true });
}

/** Writes a file under DEST by way of the temporary folder: write, fsync, rename, fsync the folder. */
async function writeAtomically(dest: string, name: string, text: string): Promise<void> {
  const temporary = join(dest, TEMP_DIR_NAME, `${name}.partial`);
  const final = join(dest, name);
  const handle = await createNewFile(dest, temporary);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } catch (error) {
    throw new FetchError('local', 'FETCH_LOCAL_IO', `cannot write ${temporary}`, { cause: error });
  } finally {
    await handle.close().catch(() => {});
  }
  await moveIntoPlace(dest, temporary, final);
  await syncFolder(dest);
}

/** Runs `work` on every item with at most `limit` at once; the first failure aborts the rest. */
async function forEachLimited<T, R>(
  items: readonly T[],
  limit: number,
  signal: AbortSignal,
  work: (item: T, signal: AbortSignal) => Promise<R>,
): Promise<R[]> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const results: R[] = new Array(items.length);
  const errors: unknown[] = [];
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length && !controller.signal.aborted) {
      const index = next++;
      try {
        results[index] = await work(items[index] as T, controller.signal);
      } catch (error) {
        errors.push(error);
        controller.abort(error);
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  if (signal.aborted) throw new FetchError('interrupted', 'FETCH_INTERRUPTED', 'interrupted');
  // The first real failure, not the interruptions it caused in the other workers.
  const first = errors.find((e) => !isFetchError(e) || e.kind !== 'interrupted') ?? errors[0];
  if (first !== undefined) throw first;
  return results;
}

/**
 * Downloads a release through the proxy into `dest`: verifies the manifest
 * digest, downloads every file (resuming, retrying, verifying each byte on
 * the client), renames each into place only once verified, and finally
 * writes `.modelgate-release.json`. Throws FetchError; never exits.
 */
export async function fetchRelease(options: FetchOptions): Promise<FetchSummary> {
  const started = performance.now();
  const signal = options.signal ?? new AbortController().signal;
  const retryBaseMs = options.retryBaseMs ?? DEFAULT_RETRY_BASE_MS;
  const { reporter } = options;
  const dest = await prepareDest(options.dest);
  const client = createProxyClient({
    proxy: options.proxy,
    tokens: options.tokens,
    connections: options.concurrency + 1,
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    ...(options.breakGlassToken === undefined ? {} : { breakGlassToken: options.breakGlassToken }),
  });
  try {
    const { releaseDigest, manifest, signer, signerIdentity, upstream } = await withRetries(
      (s) => getVerifiedManifest(client, options.model, options.release, s),
      { retries: options.retries, retryBaseMs, signal, reporter },
    );
    const placements = manifest.files.map((file) => ({ file, ...placeFile(dest, file.path) }));
    await dropStaleRecord(dest, releaseDigest);
    reporter.release({
      model: manifest.model,
      version: manifest.version,
      releaseDigest,
      files: manifest.files.length,
      bytes: manifest.files.reduce((sum, f) => sum + f.size, 0),
    });

    const results = await forEachLimited(placements, options.concurrency, signal, async (item, s) => {
      const result = await downloadFile(
        {
          client,
          model: options.model,
          releaseDigest,
          dest,
          retries: options.retries,
          retryBaseMs,
          signal: s,
          onProgress: (delta) => reporter.progress(delta),
          onReceived: (bytes) => reporter.received(bytes),
          onRetry: (event) => reporter.retry(event),
        },
        item.file,
        item.final,
        item.partial,
      );
      reporter.file(result);
      return result;
    });

    const record: ReleaseRecord = {
      schema: 'modelgate/fetched-release/v1',
      releaseDigest,
      model: manifest.model,
      version: manifest.version,
      environment: manifest.environment,
      ...(manifest.created === undefined ? {} : { created: manifest.created }),
      ...(manifest.provenance === undefined ? {} : { provenance: manifest.provenance }),
      ...(signer === undefined ? {} : { signer }),
      ...(signerIdentity === undefined ? {} : { signerIdentity }),
      ...(upstream === undefined ? {} : { upstream }),
      proxy: `${options.proxy.origin}${options.proxy.pathname}`,
      files: manifest.files.map((f) => ({ path: f.path, size: f.size, digest: f.digest })),
      fetchedAt: new Date().toISOString(),
    };
    await writeAtomically(dest, RELEASE_RECORD_NAME, `${JSON.stringify(record, null, 2)}\n`);
    // rm unlinks a symlink rather than descending into it, so this cannot reach outside DEST.
    await rm(join(dest, TEMP_DIR_NAME), { recursive: true, force: true });

    const summary: FetchSummary = {
      model: manifest.model,
      version: manifest.version,
      environment: manifest.environment,
      releaseDigest,
      files: results.length,
      bytes: record.files.reduce((sum, f) => sum + f.size, 0),
      results,
      downloaded: results.filter((r: FileResult) => r.status === 'downloaded').length,
      present: results.filter((r: FileResult) => r.status === 'present').length,
      transferred: results.reduce((sum, r) => sum + r.transferred, 0),
      seconds: Math.round(performance.now() - started) / 1000,
    };
    reporter.done(summary);
    return summary;
  } finally {
    reporter.close();
    await client.close().catch(() => {});
  }
}
