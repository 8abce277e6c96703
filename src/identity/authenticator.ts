import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import {
  type CryptoKey,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JWTPayload,
  type JWTVerifyOptions,
  jwtVerify,
  type ProtectedHeaderParameters,
} from 'jose';
import { LRUCache } from 'lru-cache';
import { type Clock, systemClock } from '../clock.ts';
import type { IssuerConfig, ServiceAccountConfig } from '../config/config.types.ts';
import { ModelgateError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import { createSingleFlight } from '../util/single-flight.ts';
import type { Authenticator } from './authenticator.types.ts';
import { createIssuerKeys, type IssuerKeys, type KeyLookup } from './issuer-keys.ts';
import type { Principal } from './principal.types.ts';
import { findServiceAccount, toPrincipal } from './service-accounts.ts';
import { fromJoseError, tokenError } from './token-errors.ts';

/**
 * Request headers as Node gives them. Pass `req.headersDistinct` (every value
 * an array) rather than `req.headers`: for duplicate `Authorization` lines
 * Node keeps only the first in `req.headers`, so only the array form lets us
 * refuse a request that carries two tokens. Plain strings are accepted too.
 */
export type RequestHeaders =
  | IncomingHttpHeaders
  | Readonly<Record<string, string | readonly string[] | undefined>>;

/** The Authenticator contract, with `authenticate` also accepting `req.headersDistinct`. */
export interface TokenAuthenticator extends Authenticator {
  /**
   * Verifies `Authorization: Bearer <JWT>` and maps it to a service account.
   * `headers` keys are lowercase, as Node delivers them. An array value with
   * more than one entry (from `req.headersDistinct`) is a duplicate header
   * and is refused with MG_TOKEN_MISSING.
   */
  authenticate(headers: RequestHeaders): Promise<Principal>;
}

export interface AuthenticatorOptions {
  issuers: readonly IssuerConfig[];
  serviceAccounts: readonly ServiceAccountConfig[];
  /** Verified tokens kept by SHA-256 until their `exp`; 0 disables the cache. */
  tokenCacheEntries: number;
  clock?: Clock;
  logger?: Logger;
}

/** RFC 6750 allows any length; a workload token is 1–2 KiB, so 16 KiB bounds parsing of attacker input. */
const MAX_TOKEN_LENGTH = 16 * 1024;

/** JWS compact serialization (RFC 7515 §7.1); an empty signature is allowed so `alg: none` gets its own code. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

interface Issuer {
  config: IssuerConfig;
  keys: IssuerKeys;
  retrying: boolean;
}

/**
 * The token's header and claims, decoded but not yet trusted, after the checks
 * that need no key: well-formed, an `alg`, no `crit`, never `none` or HMAC.
 */
function decodeUnverified(token: string): {
  header: ProtectedHeaderParameters;
  unverified: JWTPayload;
  alg: string;
} {
  let header: ProtectedHeaderParameters;
  let unverified: JWTPayload;
  try {
    header = decodeProtectedHeader(token);
    unverified = decodeJwt(token);
  } catch (error) {
    throw tokenError('MG_TOKEN_MALFORMED', 'expected a JWT with JSON header and claims', error);
  }
  const { alg } = header;
  if (typeof alg !== 'string' || alg === '') {
    throw tokenError('MG_TOKEN_MALFORMED', 'expected an alg header, got none');
  }
  // RFC 7515 §4.1.11: a recipient that does not understand every listed
  // extension must refuse the JWS. We understand none, so any `crit` is
  // refused here, by its own code: jose would refuse it too, but with
  // ERR_JOSE_NOT_SUPPORTED, the code it also uses for unsupported algorithms.
  if ('crit' in header) {
    throw tokenError('MG_TOKEN_CRIT_UNSUPPORTED', 'expected no crit header, got a critical extension');
  }
  // `none` and HMAC are never accepted: with public keys, HS256 "signed" with
  // the issuer's public key bytes is the classic key-confusion attack.
  if (alg.toLowerCase() === 'none' || alg.toUpperCase().startsWith('HS')) {
    throw tokenError('MG_TOKEN_ALGORITHM_NOT_ALLOWED', `expected an asymmetric alg, got ${safeLabel(alg)}`);
  }
  return { header, unverified, alg };
}

/** `iat` in the future and overlong tokens: jose checks neither without `maxTokenAge`. */
function checkLifetime(claims: JWTPayload & { exp: number }, config: IssuerConfig, nowMs: number): void {
  const now = Math.floor(nowMs / 1000);
  const { iat } = claims;
  if (iat !== undefined && iat > now + config.clockToleranceSeconds) {
    throw tokenError('MG_TOKEN_NOT_YET_VALID', 'expected iat in the past, got the future');
  }
  const max = config.maxTokenLifetimeSeconds;
  // Without `iat`, the lifetime still left is what must stay within the bound.
  const lifetime = claims.exp - (iat ?? now);
  if (max !== undefined && lifetime > max) {
    throw tokenError(
      'MG_TOKEN_LIFETIME_TOO_LONG',
      `expected exp - iat of at most ${max} seconds, got ${lifetime}`,
    );
  }
}
function keysUnavailable(issuer: Issuer): ModelgateError {
  return new ModelgateError(
    'MG_ISSUER_KEYS_UNAVAILABLE',
    `keys of issuer "${issuer.config.name}" cannot be loaded and none cached matches the token`,
    {
      cause: issuer.keys.lastError(),
      headers: { 'Retry-After': String(Math.max(1, Math.ceil(issuer.config.cooldownSeconds))) },
    },
  );
}

/** The issuer keys that may have signed this token, re-fetching once on an unknown `kid`. */
async function resolveKeys(issuer: Issuer, header: ProtectedHeaderParameters): Promise<CryptoKey[]> {
  const generation = issuer.keys.generation();
  const lookup = await issuer.keys.current();
  if (lookup === undefined) throw keysUnavailable(issuer);
  try {
    return await candidateKeys(lookup, header);
  } catch (error) {
    if (!(error instanceof errors.JWKSNoMatchingKey)) throw fromJoseError(error);
  }
  // Keys fetched for this very request already lack the kid: a second fetch could not help.
  if (issuer.keys.generation() !== generation) throw unknownKid();
  const outcome = await issuer.keys.refetchForUnknownKid();
  if (outcome === 'failed') throw keysUnavailable(issuer);
  if (outcome === 'cooling-down') {
    // Keys we cannot fetch and no cached key for this kid: we cannot tell, so 503, never allow.
    if (issuer.keys.lastAttemptFailed()) throw keysUnavailable(issuer);
    throw unknownKid();
  }
  const refreshed = await issuer.keys.current();
  if (refreshed === undefined) throw keysUnavailable(issuer);
  try {
    return await candidateKeys(refreshed, header);
  } catch (error) {
    throw error instanceof errors.JWKSNoMatchingKey ? unknownKid(error) : fromJoseError(error);
  }
}

/**
 * Verifies workload-identity JWTs against the configured issuers (docs/identity.md),
 * over jose: `iss` picks the issuer (exact match), `algorithms` is pinned in
 * every jose call, `none` and HMAC are refused, `aud` must contain one of the
 * issuer's audiences, `exp` is required, and every time check uses `clock`.
 * Verified tokens are cached by SHA-256 until their `exp`, so a pod that sends
 * the same projected token for an hour costs one signature verification.
 * Errors are ModelgateError; 401s carry `WWW-Authenticate` in `error.headers`.
 */
export function createAuthenticator(options: AuthenticatorOptions): TokenAuthenticator {
  const clock = options.clock ?? systemClock;
  const { logger, serviceAccounts } = options;
  const issuers = new Map<string, Issuer>();
  for (const config of options.issuers) {
    issuers.set(config.issuer, {
      config,
      keys: createIssuerKeys(config, { clock, logger }),
      retrying: false,
    });
  }
  const cache =
    options.tokenCacheEntries > 0
      ? new LRUCache<string, Principal>({ max: options.tokenCacheEntries, perf: { now: clock } })
      : undefined;
  const verifying = createSingleFlight<string, Principal>();
  const retryTimers = new Set<NodeJS.Timeout>();
  let verifications = 0;
  let closed = false;

  async function authenticate(headers: RequestHeaders): Promise<Principal> {
    const token = bearerToken(headers);
    // One hash and one map lookup per request once a token has verified (DESIGN.md).
    const cacheKey = createHash('sha256').update(token).digest('base64url');
    const cached = cache?.get(cacheKey);
    if (cached !== undefined && clock() < cached.expiresAt * 1000) return cached;

    // Concurrent first uses of one token (a pod's parallel downloads right after a token rotation)
    // share one verification; the entry lives only while it runs, so failures are never remembered.
    return verifying.run(cacheKey, async () => {
      const principal = await verifyToken(token);
      const ttl = principal.expiresAt * 1000 - clock();
      // Never cached past `exp`: a token valid only thanks to clock tolerance is verified every time.
      if (cache !== undefined && ttl > 0) cache.set(cacheKey, principal, { ttl });
      return principal;
    });
  }

  async function verifyToken(token: string): Promise<Principal> {
    // Decoded unverified only to choose the issuer; nothing here is trusted until jwtVerify passes.
    const { header, unverified, alg } = decodeUnverified(token);
    if (typeof unverified.iss !== 'string') {
      throw tokenError('MG_TOKEN_CLAIM_MISSING', 'expected an iss claim, got none');
    }
    const issuer = issuers.get(unverified.iss);
    if (issuer === undefined) {
      throw tokenError('MG_TOKEN_ISSUER_UNKNOWN', 'expected iss of a configured issuer, got another');
    }
    const { config } = issuer;
    if (!(config.algorithms as readonly string[]).includes(alg)) {
      throw tokenError(
        'MG_TOKEN_ALGORITHM_NOT_ALLOWED',
        `expected one of ${config.algorithms.join(', ')}, got ${safeLabel(alg)}`,
      );
    }

    const keys = await resolveKeys(issuer, header);
    const claims = await verifySignature(token, keys, config);
    checkLifetime(claims, config, clock());
    const subject = claims.sub;
    const account = findServiceAccount(serviceAccounts, config.name, subject, claims);
    if (account === undefined) {
      throw new ModelgateError(
        'MG_IDENTITY_UNMAPPED',
        `expected a service account for this subject of issuer "${config.name}", found none`,
        { details: { issuer: config.name, subject } },
      );
    }
    return freeze(toPrincipal(account, { name: config.name, issuer: config.issuer }, claims));
  }

  /** Verifies the signature and the registered claims; counts each verification. */
  async function verifySignature(
    token: string,
    keys: readonly CryptoKey[],
    config: IssuerConfig,
  ): Promise<JWTPayload & { sub: string; exp: number }> {
    const verifyOptions: JWTVerifyOptions = {
      algorithms: config.algorithms,
      issuer: config.issuer,
      audience: config.audiences,
      requiredClaims: ['exp', 'sub'],
      clockTolerance: config.clockToleranceSeconds,
      currentDate: new Date(clock()),
    };
    let failure: unknown;
    for (const key of keys) {
      verifications++;
      try {
        const { payload } = await jwtVerify(token, key, verifyOptions);
        if (typeof payload.sub !== 'string' || payload.sub === '') {
          throw tokenError('MG_TOKEN_CLAIM_MISSING', 'expected sub to be a non-empty string');
        }
        return payload as JWTPayload & { sub: string; exp: number };
      } catch (error) {
        failure = error;
        // Several keys matched (no kid, or a shared kid): only a bad signature moves on to the next.
        if (!(error instanceof errors.JWSSignatureVerificationFailed)) break;
      }
    }
    throw failure instanceof ModelgateError ? failure : fromJoseError(failure);
  }

  /** After start(), an issuer whose keys did not load is retried in the background, so /readyz can turn green. */
  function retryUntilLoaded(issuer: Issuer): void {
    if (closed || issuer.retrying || issuer.keys.isLoaded()) return;
    issuer.retrying = true;
    const timer = setTimeout(async () => {
      retryTimers.delete(timer);
      issuer.retrying = false;
      if (closed) return;
      await issuer.keys.load();
      retryUntilLoaded(issuer);
    }, Math.max(1, issuer.config.cooldownSeconds) * 1000);
    timer.unref();
    retryTimers.add(timer);
  }

  return {
    authenticate,

    async start() {
      await Promise.all([...issuers.values()].map((issuer) => issuer.keys.load()));
      for (const issuer of issuers.values()) retryUntilLoaded(issuer);
    },

    isReady: () => [...issuers.values()].every((issuer) => issuer.keys.isLoaded()),

    pendingIssuers: () =>
      [...issuers.values()].filter((issuer) => !issuer.keys.isLoaded()).map((issuer) => issuer.config.name),

    issuerKeyProblems: () =>
      Object.fromEntries(
        [...issuers.values()]
          .filter((issuer) => !issuer.keys.isLoaded())
          .map((issuer) => [issuer.config.name, describeKeyFailure(issuer.keys.lastError())]),
      ),

    signatureVerifications: () => verifications,

    close() {
      closed = true;
      for (const timer of retryTimers) clearTimeout(timer);
      retryTimers.clear();
      for (const issuer of issuers.values()) issuer.keys.close();
      cache?.clear();
    },
  };
}

/** A one-line reason why keys did not load (no stack): the file or URL error as Node reports it. */
function describeKeyFailure(error: unknown): string {
  if (error === undefined) return 'keys not loaded yet';
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`.slice(0, 300);
}

/**
 * Exactly one `Authorization` header with the Bearer scheme (RFC 6750 §2.1;
 * the scheme is case-insensitive, RFC 9110 §11.1) and a compact JWS of at
 * most 16 KiB. The header is attacker-controlled: nothing from it is logged.
 */
function bearerToken(headers: RequestHeaders): string {
  const raw: unknown = headers.authorization;
  let value: unknown = raw;
  if (Array.isArray(raw)) {
    if (raw.length > 1) {
      throw tokenError('MG_TOKEN_MISSING', `expected one Authorization header, got ${raw.length}`);
    }
    value = raw[0];
  }
  if (typeof value !== 'string' || value.trim() === '') {
    throw tokenError('MG_TOKEN_MISSING', 'expected an Authorization: Bearer header, got none');
  }
  const trimmed = value.trim();
  const space = trimmed.search(/[ \t]/);
  const scheme = space === -1 ? trimmed : trimmed.slice(0, space);
  if (scheme.toLowerCase() !== 'bearer') {
    throw tokenError('MG_TOKEN_MISSING', 'expected the Bearer scheme, got another');
  }
  const token = space === -1 ? '' : trimmed.slice(space + 1).trim();
  if (token === '') throw tokenError('MG_TOKEN_MISSING', 'expected a token after Bearer, got none');
  if (token.length > MAX_TOKEN_LENGTH) {
    throw tokenError('MG_TOKEN_MALFORMED', `expected at most ${MAX_TOKEN_LENGTH} characters, got more`);
  }
  if (!COMPACT_JWS.test(token)) {
    throw tokenError('MG_TOKEN_MALFORMED', 'expected a compact JWS (three base64url parts)');
  }
  return token;
}

function unknownKid(cause?: unknown): ModelgateError {
  return tokenError(
    'MG_TOKEN_KEY_UNKNOWN',
    'expected a kid in the issuer key set, got an unknown one',
    cause,
  );
}

/** The keys jose selects for this header; several when no `kid` narrows it down. */
async function candidateKeys(lookup: KeyLookup, header: ProtectedHeaderParameters): Promise<CryptoKey[]> {
  try {
    return [await lookup(header)];
  } catch (error) {
    if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error;
    const keys: CryptoKey[] = [];
    for await (const key of error) keys.push(key);
    if (keys.length === 0) throw error;
    return keys;
  }
}

/** An attacker-chosen `alg` echoed in a message: bounded and printable only. */
function safeLabel(value: string): string {
  return JSON.stringify(value.slice(0, 16).replace(/[^\x20-\x7e]/g, '?'));
}

function freeze(principal: Principal): Principal {
  if (principal.pod !== undefined) Object.freeze(principal.pod);
  return Object.freeze(principal);
}
