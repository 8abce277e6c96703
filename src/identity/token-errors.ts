import { errors } from 'jose';
import { type ErrorCode, ModelgateError, toModelgateError } from '../errors.ts';

/**
 * Every 401 carries this challenge (README "HTTP API", RFC 6750 §3). The server copies
 * `error.headers` onto the response.
 */
export const BEARER_CHALLENGE = { 'WWW-Authenticate': 'Bearer error="invalid_token"' } as const;

/** A 401 for a token problem, with the Bearer challenge attached. */
export function tokenError(code: ErrorCode, message: string, cause?: unknown): ModelgateError {
  return new ModelgateError(code, message, {
    headers: { ...BEARER_CHALLENGE },
    ...(cause === undefined ? {} : { cause }),
  });
}

/**
 * Maps a jose error to our code, keeping it as `cause`. Messages are ours:
 * jose's claim errors carry the claims set, which never reaches a log or a client.
 */
export function fromJoseError(error: unknown): ModelgateError {
  if (!(error instanceof errors.JOSEError)) return toModelgateError(error);
  switch (error.code) {
    case 'ERR_JWT_EXPIRED':
      return tokenError('MG_TOKEN_EXPIRED', 'expected an unexpired token, got exp in the past', error);
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return fromClaimError(error as errors.JWTClaimValidationFailed);
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return tokenError('MG_TOKEN_SIGNATURE_INVALID', 'expected a valid signature, got a mismatch', error);
    // jose also answers ERR_JOSE_NOT_SUPPORTED for an unrecognised `crit`
    // extension; the authenticator refuses any `crit` before jose runs
    // (MG_TOKEN_CRIT_UNSUPPORTED), so here it means an unsupported alg or key.
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return tokenError('MG_TOKEN_ALGORITHM_NOT_ALLOWED', 'expected an allowed alg, got another', error);
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
    case 'ERR_JWK_INVALID':
    case 'ERR_JWKS_INVALID':
      return tokenError('MG_TOKEN_KEY_UNKNOWN', 'expected a usable issuer key for the token kid', error);
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return tokenError('MG_TOKEN_MALFORMED', 'expected a compact JWS with a JSON claims set', error);
    default:
      return toModelgateError(error);
  }
}

function fromClaimError(error: errors.JWTClaimValidationFailed): ModelgateError {
  const { claim, reason } = error;
  if (reason === 'missing' || reason === 'invalid') {
    return tokenError('MG_TOKEN_CLAIM_MISSING', `expected a valid "${claim}" claim, got ${reason}`, error);
  }
  switch (claim) {
    case 'aud':
      return tokenError('MG_TOKEN_AUDIENCE', 'expected aud to contain a configured audience', error);
    case 'nbf':
    case 'iat':
      return tokenError('MG_TOKEN_NOT_YET_VALID', `expected ${claim} in the past, got the future`, error);
    case 'iss':
      return tokenError('MG_TOKEN_ISSUER_UNKNOWN', 'expected iss of a configured issuer', error);
    default:
      return tokenError('MG_TOKEN_CLAIM_MISSING', `expected a valid "${claim}" claim`, error);
  }
}
