import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, type JSONWebKeySet } from 'jose';
import type { Clock } from '../clock.ts';
import type { IssuerConfig } from '../config/config.types.ts';
import { isSecureOrLoopbackUrl } from '../config/semantics.ts';
import type { Logger } from '../telemetry/logger.ts';
import { createSingleFlight } from '../util/single-flight.ts';

/** jose's key selector over one fetched key set (by `kid`, `alg`, `kty`, `use`). */
export type KeyLookup = ReturnType<typeof createLocalJWKSet>;

/** What an unknown-`kid` re-fetch achieved. */
export type RefetchOutcome = 'refreshed' | 'cooling-down' | 'failed';

/**
 * One issuer's verification keys, from a file, a JWKS URL or OIDC discovery.
 * We fetch the keys ourselves and hand them to jose's `createLocalJWKSet`, so
 * that caching, cooldown and "keep the last good keys" are exactly ours
 * (jose's `createRemoteJWKSet` drops nothing on failure but has no notion of
 * a failed fetch we can branch on).
 */
export interface IssuerKeys {
  /**
   * The key set to verify with. Refreshes it first when it is older than
   * `cacheSeconds` (a failed refresh keeps the last good set). Returns
   * undefined when no key set has ever loaded.
   */
  current(): Promise<KeyLookup | undefined>;
  /**
   * A token named a `kid` the current set lacks: re-fetch, at most once per
   * `cooldownSeconds`. A fetch already in flight is joined instead.
   */
  refetchForUnknownKid(): Promise<RefetchOutcome>;
  /** Loads the keys now, whatever their age; resolves to whether it worked. */
  load(): Promise<boolean>;
  /** Counts successful loads, so a caller can tell whether its own current() call just fetched. */
  generation(): number;
  /** True once a key set has loaded. */
  isLoaded(): boolean;
  /** True when the latest load attempt failed (the endpoint is down or serves garbage). */
  lastAttemptFailed(): boolean;
  /** Why the latest attempt failed, for error causes. */
  lastError(): unknown;
  close(): void;
}

export interface IssuerKeysOptions {
  clock: Clock;
  logger?: Logger | undefined;
}

/**
 * A JWKS is public data but comes over the network: a hostile or broken
 * endpoint must not make us buffer without bound. Real key sets are a few KiB.
 */
const MAX_DOCUMENT_BYTES = 1024 * 1024;

const ACCEPT_JSON = 'application/json, application/jwk-set+json';

/** Builds the key source for one configured issuer. Nothing is fetched until asked. */
export function createIssuerKeys(config: IssuerConfig, options: IssuerKeysOptions): IssuerKeys {
  const { clock, logger } = options;
  const cacheMs = config.cacheSeconds * 1000;
  const cooldownMs = config.cooldownSeconds * 1000;
  const timeoutMs = Math.max(1, Math.round(config.timeoutSeconds * 1000));
  const closing = new AbortController();

  let lookup: KeyLookup | undefined;
  let loadedAt = Number.NEGATIVE_INFINITY;
  let failedAt: number | undefined;
  let failure: unknown;
  let kidRefetchAt: number | undefined;
  const loading = createSingleFlight<'keys', boolean>();
  let generation = 0;

  async function fetchJson(url: string): Promise<unknown> {
    const signal = AbortSignal.any([closing.signal, AbortSignal.timeout(timeoutMs)]);
    // redirect: 'manual' as jose does: a key endpoint that redirects is a
    // misconfiguration, and following it could downgrade https to http.
    const response = await fetch(url, { headers: { accept: ACCEPT_JSON }, redirect: 'manual', signal });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new Error(`expected 200 from ${url}, got ${response.status}`);
    }
    return JSON.parse(await readLimited(response, url));
  }

  async function discoverJwksUri(): Promise<string> {
    // OpenID Connect Discovery 1.0 §4: drop a trailing slash, then append the well-known path.
    const url = `${config.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const document = await fetchJson(url);
    if (!isRecord(document)) throw new Error(`expected a JSON object from ${url}`);
    // §4.3: the document must name the issuer we asked about, or it describes someone else's keys.
    if (document.issuer !== config.issuer) {
      throw new Error(
        `expected discovery issuer ${JSON.stringify(config.issuer)}, got ${JSON.stringify(document.issuer)}`,
      );
    }
    const jwksUri = document.jwks_uri;
    if (typeof jwksUri !== 'string' || !isSecureOrLoopbackUrl(jwksUri)) {
      throw new Error(`expected an https jwks_uri in ${url}, got ${JSON.stringify(jwksUri)}`);
    }
    return jwksUri;
  }

  async function fetchKeySet(): Promise<unknown> {
    if (config.jwksFile !== undefined) return JSON.parse(await readFile(config.jwksFile, 'utf8'));
    if (config.jwksUri !== undefined) return fetchJson(config.jwksUri);
    if (config.discovery) return fetchJson(await discoverJwksUri());
    throw new Error('issuer has no key source (jwksFile, jwksUri or discovery)');
  }

  function accept(keySet: unknown): void {
    // createLocalJWKSet validates the shape (JWKSInvalid) before we replace the last good set.
    lookup = createLocalJWKSet(fromSpiffeBundle(keySet) as JSONWebKeySet);
    loadedAt = clock();
    generation++;
    failedAt = undefined;
    failure = undefined;
  }

  function reject(error: unknown): void {
    failedAt = clock();
    failure = error;
    logger?.warn(
      { issuer: config.name, err: error, keptLastGoodKeys: lookup !== undefined },
      'issuer keys could not be loaded',
    );
  }

  /** One fetch in flight per issuer: concurrent callers share it. */
  function load(): Promise<boolean> {
    return loading.run('keys', async () => {
      try {
        accept(await fetchKeySet());
        logger?.debug({ issuer: config.name }, 'issuer keys loaded');
        return true;
      } catch (error) {
        reject(error);
        return false;
      }
    });
  }

  function coolingDown(since: number | undefined): boolean {
    return since !== undefined && clock() - since < cooldownMs;
  }

  // "Read at start": a key file is read as soon as the authenticator exists,
  // so file-only configurations verify without waiting for start().
  if (config.jwksFile !== undefined) {
    try {
      accept(JSON.parse(readFileSync(config.jwksFile, 'utf8')));
    } catch (error) {
      reject(error);
    }
  }

  return {
    async current() {
      const stale = clock() - loadedAt >= cacheMs;
      // After a failure, wait a cooldown before trying again, so an endpoint
      // that is down costs one timeout per cooldown, not one per request.
      if (stale && !coolingDown(failedAt)) await load();
      else if (lookup === undefined) await loading.current('keys');
      return lookup;
    },

    async refetchForUnknownKid() {
      const running = loading.current('keys');
      if (running !== undefined) return (await running) ? 'refreshed' : 'failed';
      // Attacker-controlled: anyone can send random `kid`s, so they buy at most one fetch per cooldown.
      if (coolingDown(kidRefetchAt)) return 'cooling-down';
      kidRefetchAt = clock();
      return (await load()) ? 'refreshed' : 'failed';
    },

    load,
    generation: () => generation,
    isLoaded: () => lookup !== undefined,
    lastAttemptFailed: () => failedAt !== undefined,
    lastError: () => failure,
    close() {
      closing.abort();
    },
  };
}

/** Reads a response body as text, refusing more than MAX_DOCUMENT_BYTES. */
async function readLimited(response: Response, url: string): Promise<string> {
  const declared = Number(response.headers.get('content-length'));
  if (declared > MAX_DOCUMENT_BYTES) {
    await response.body?.cancel();
    throw new Error(`expected at most ${MAX_DOCUMENT_BYTES} bytes from ${url}, got ${declared}`);
  }
  if (response.body === null) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body) {
    total += chunk.byteLength;
    // Leaving the loop by throwing cancels the body stream.
    if (total > MAX_DOCUMENT_BYTES) {
      throw new Error(`expected at most ${MAX_DOCUMENT_BYTES} bytes from ${url}, got more`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A SPIFFE trust bundle (SPIFFE Trust Domain and Bundle §4) is a JWKS whose
 * keys say `use: "jwt-svid"` or `use: "x509-svid"`; jose only takes `sig`.
 * JWT-SVID keys become `sig` keys, X.509 authorities are dropped (they never
 * sign JWTs). Any other document passes through unchanged.
 */
function fromSpiffeBundle(keySet: unknown): unknown {
  if (!isRecord(keySet) || !Array.isArray(keySet.keys)) return keySet;
  const keys: unknown[] = keySet.keys;
  if (!keys.some((key) => isRecord(key) && (key.use === 'jwt-svid' || key.use === 'x509-svid')))
    return keySet;
  return {
    ...keySet,
    keys: keys
      .filter((key) => !(isRecord(key) && key.use === 'x509-svid'))
      .map((key) => (isRecord(key) && key.use === 'jwt-svid' ? { ...key, use: 'sig' } : key)),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
