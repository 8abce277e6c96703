import { createLocalJWKSet, errors, importJWK, type JSONWebKeySet, type JWK, jwtVerify } from 'jose';
import { type Clock, systemClock } from '../clock.ts';
import type { BreakGlassConfig } from '../config/config.types.ts';
import { type ErrorCode, ModelgateError } from '../errors.ts';
import { KeyFileError, loadJwksFile } from '../keys.ts';
import { isValidDigest } from '../rules.ts';
import type { BreakGlassGrant, BreakGlassRequest, BreakGlassVerifier } from './policy.types.ts';

/** The JWS `typ` of a break-glass token; a release manifest or an identity token never carries it. */
export const BREAK_GLASS_TYP = 'modelgate-break-glass+jwt';

/** Algorithms a break-glass key may use (docs/releases.md lists the same four for release signatures). */
export const BREAK_GLASS_ALGORITHMS = ['ES256', 'EdDSA', 'RS256', 'PS256'] as const;
export type BreakGlassAlgorithm = (typeof BREAK_GLASS_ALGORITHMS)[number];

/** `sha256:` + 64 lowercase hex: the only form a release digest takes. */

/** Largest `Modelgate-Break-Glass` header accepted; the header is attacker-controlled. */
export const MAX_BREAK_GLASS_TOKEN_BYTES = 16 * 1024;

/** Clock skew allowed between the issuing workstation and the proxy, for exp, nbf and iat. */
const CLOCK_TOLERANCE_SECONDS = 30;

const STRING_CLAIMS = ['sub', 'incident', 'reason', 'model', 'release', 'jti'] as const;
const REQUIRED_CLAIMS = [...STRING_CLAIMS, 'iat', 'exp'];

export interface CreateBreakGlassVerifierOptions {
  config: BreakGlassConfig | undefined;
  clock?: Clock;
}

/**
 * The algorithm a JWK is used with: its `alg` member, else the one its key
 * type implies (EC P-256 → ES256, OKP Ed25519 → EdDSA, RSA → PS256). Undefined
 * for keys no break-glass token may be signed with.
 */
export function algorithmOfJwk(jwk: JWK): BreakGlassAlgorithm | undefined {
  if (typeof jwk.alg === 'string') {
    // RFC 9864 names the same Ed25519 signature `Ed25519`; jose verifies it as EdDSA.
    const alg = jwk.alg === 'Ed25519' ? 'EdDSA' : jwk.alg;
    return (BREAK_GLASS_ALGORITHMS as readonly string[]).includes(alg)
      ? (alg as BreakGlassAlgorithm)
      : undefined;
  }
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'RSA') return 'PS256';
  return undefined;
}

/**
 * Reads the break-glass JWKS once and checks that every key can verify a
 * break-glass token. Every problem is a KeyFileError naming the file, so a bad
 * trust root stops start-up instead of refusing every token later.
 */
async function loadBreakGlassKeys(file: string): Promise<JSONWebKeySet> {
  // loadJwksFile refuses private members: the break-glass private key is kept
  // offline, and finding it in the proxy's configuration means it has leaked.
  const jwks = await loadJwksFile(file);
  const keys = jwks.keys.map((jwk, index) => {
    const alg = algorithmOfJwk(jwk);
    if (alg === undefined) {
      throw new KeyFileError(
        file,
        `keys[${index}]: expected an ${BREAK_GLASS_ALGORITHMS.join(', ')} public key, got kty ${String(jwk.kty)} alg ${String(jwk.alg)}`,
      );
    }
    // The local key set matches a key's `alg` to the token's exactly, so an
    // `Ed25519` key is listed as the `EdDSA` that tokens are signed with.
    return jwk.alg === undefined ? jwk : { ...jwk, alg };
  });
  for (const [index, jwk] of keys.entries()) {
    try {
      await importJWK(jwk, algorithmOfJwk(jwk));
    } catch (error) {
      throw new KeyFileError(file, `keys[${index}]: not a usable public key: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  return { keys };
}

function refuse(code: ErrorCode, message: string, cause?: unknown): ModelgateError {
  return new ModelgateError(code, message, cause === undefined ? {} : { cause });
}

/** Maps a jose failure to our code, keeping jose's error as `cause`. */
function mapJoseError(error: unknown): ModelgateError {
  if (error instanceof errors.JWTExpired) {
    return refuse('MG_BREAK_GLASS_EXPIRED', 'break-glass token has expired', error);
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf' && error.reason === 'check_failed') {
      return refuse('MG_BREAK_GLASS_EXPIRED', 'break-glass token is not valid yet (nbf)', error);
    }
    if (error.claim === 'typ') {
      return refuse('MG_BREAK_GLASS_MALFORMED', `expected break-glass token typ ${BREAK_GLASS_TYP}`, error);
    }
    return refuse('MG_BREAK_GLASS_MALFORMED', `break-glass claim "${error.claim}" is ${error.reason}`, error);
  }
  if (
    error instanceof errors.JWKSNoMatchingKey ||
    error instanceof errors.JWKSMultipleMatchingKeys ||
    error instanceof errors.JWSSignatureVerificationFailed ||
    error instanceof errors.JOSEAlgNotAllowed ||
    error instanceof errors.JOSENotSupported ||
    error instanceof errors.JWKSInvalid
  ) {
    return refuse('MG_BREAK_GLASS_SIGNATURE', 'break-glass token is not signed by a break-glass key', error);
  }
  if (error instanceof errors.JOSEError) {
    return refuse('MG_BREAK_GLASS_MALFORMED', 'break-glass token is not a well-formed JWT', error);
  }
  return refuse('MG_BREAK_GLASS_SIGNATURE', 'break-glass token could not be verified', error);
}

/**
 * Verifies `Modelgate-Break-Glass` tokens (docs/break-glass.md): a JWT signed by a
 * break-glass key, bound to one service account, model and release digest,
 * with an incident matching the configured pattern and a lifetime of at most
 * `maxTtlSeconds`. The key set is read once here; a missing or invalid file
 * rejects with a KeyFileError naming it.
 */
export async function createBreakGlassVerifier(
  options: CreateBreakGlassVerifierOptions,
): Promise<BreakGlassVerifier> {
  const { config } = options;
  if (config === undefined) {
    return {
      async verify() {
        throw refuse(
          'MG_BREAK_GLASS_DISABLED',
          'a break-glass token was sent but breakGlass is not configured',
        );
      },
    };
  }
  const clock = options.clock ?? systemClock;
  const keys = createLocalJWKSet(await loadBreakGlassKeys(config.jwksFile));
  // Anchored as written: the operator's pattern is used verbatim (config
  // validation compiled it with the same flags).
  const incidentPattern = new RegExp(config.incidentPattern, 'u');

  return {
    async verify(token: string, request: BreakGlassRequest): Promise<BreakGlassGrant> {
      // Attacker-controlled header: bound its size before any parsing.
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_BREAK_GLASS_TOKEN_BYTES) {
        throw refuse(
          'MG_BREAK_GLASS_MALFORMED',
          `expected a break-glass token of 1 to ${MAX_BREAK_GLASS_TOKEN_BYTES} bytes, got ${typeof token === 'string' ? token.length : typeof token}`,
        );
      }
      const now = clock();
      const nowSeconds = Math.floor(now / 1000);

      // jose checks, in this order: JWS shape, alg allow-list, key, signature;
      // only then the typ header, claim presence, nbf and exp. No claim is
      // read before the signature verified.
      let payload: Record<string, unknown>;
      try {
        ({ payload } = await jwtVerify(token, keys, {
          algorithms: [...BREAK_GLASS_ALGORITHMS],
          typ: BREAK_GLASS_TYP,
          requiredClaims: REQUIRED_CLAIMS,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          currentDate: new Date(now),
        }));
      } catch (error) {
        throw mapJoseError(error);
      }

      for (const claim of STRING_CLAIMS) {
        const value = payload[claim];
        if (typeof value !== 'string' || value.length === 0) {
          throw refuse(
            'MG_BREAK_GLASS_MALFORMED',
            `expected break-glass claim "${claim}" to be a non-empty string`,
          );
        }
      }
      const claims = payload as Record<(typeof STRING_CLAIMS)[number], string> & { iat: number; exp: number };
      if (!isValidDigest(claims.release)) {
        throw refuse(
          'MG_BREAK_GLASS_MALFORMED',
          `expected break-glass claim "release" to be sha256:<64 hex>`,
        );
      }
      if (!Number.isFinite(claims.iat) || !Number.isFinite(claims.exp)) {
        throw refuse('MG_BREAK_GLASS_MALFORMED', 'expected break-glass claims "iat" and "exp" to be numbers');
      }
      // jose checks iat only together with maxTokenAge; a token issued in the
      // future is refused here like one that is not yet valid.
      if (claims.iat > nowSeconds + CLOCK_TOLERANCE_SECONDS) {
        throw refuse('MG_BREAK_GLASS_EXPIRED', 'break-glass token is not valid yet (iat is in the future)');
      }
      const lifetime = claims.exp - claims.iat;
      if (lifetime > config.maxTtlSeconds) {
        throw refuse(
          'MG_BREAK_GLASS_TTL',
          `expected a break-glass lifetime of at most ${config.maxTtlSeconds}s, got ${lifetime}s`,
        );
      }
      if (!incidentPattern.test(claims.incident)) {
        throw refuse('MG_BREAK_GLASS_INCIDENT', `expected the incident to match ${config.incidentPattern}`);
      }
      if (claims.sub !== request.serviceAccount) {
        throw refuse(
          'MG_BREAK_GLASS_ACCOUNT',
          `break-glass token is for service account ${claims.sub}, not ${request.serviceAccount}`,
        );
      }
      if (claims.model !== request.model) {
        throw refuse(
          'MG_BREAK_GLASS_MODEL',
          `break-glass token is for model ${claims.model}, not ${request.model}`,
        );
      }
      if (claims.release !== request.release) {
        throw refuse(
          'MG_BREAK_GLASS_RELEASE',
          `break-glass token is for release ${claims.release}, not ${request.release}`,
        );
      }
      return {
        incident: claims.incident,
        reason: claims.reason,
        jti: claims.jti,
        serviceAccount: claims.sub,
        model: claims.model,
        release: claims.release,
        issuedAt: claims.iat,
        expiresAt: claims.exp,
      };
    },
  };
}
