/**
 * JWKS signers (modelgate's own JWS, as today): the same keys and pinned
 * algorithms the catalog uses (src/catalog/signature.ts), behind the one
 * verifier interface so other callers need not know the kind.
 */
import { compactVerify, createLocalJWKSet, decodeProtectedHeader, errors } from 'jose';
import { RELEASE_ALGORITHMS } from '../catalog/signature.ts';
import { loadJwksFile } from '../keys.ts';
import { TrustConfigError, TrustRefusedError } from './trust-error.ts';
import type { SignedInput, TrustVerifier, VerifiedSignature } from './verifier.types.ts';

/** A verifier for compact JWS signed by a key of the JWKS in `file`, read now. */
export async function createJwksVerifier(name: string, file: string): Promise<TrustVerifier> {
  const jwks = await loadJwksFile(file);
  let keySet: ReturnType<typeof createLocalJWKSet>;
  try {
    keySet = createLocalJWKSet(jwks);
  } catch (error) {
    throw new TrustConfigError(file, `invalid JWKS: ${(error as Error).message}`, { cause: error });
  }
  return {
    name,
    method: 'jwks',
    async verify(input: SignedInput): Promise<VerifiedSignature> {
      if (input.kind !== 'jws') {
        throw new TrustRefusedError('wrong_envelope', `signer "${name}" verifies JWS, got a Sigstore bundle`);
      }
      let header: ReturnType<typeof decodeProtectedHeader>;
      try {
        header = decodeProtectedHeader(input.jws.trim());
      } catch (error) {
        throw new TrustRefusedError('malformed', `malformed JWS: ${(error as Error).message}`, {
          cause: error,
        });
      }
      try {
        const verified = await compactVerify(input.jws.trim(), keySet, {
          algorithms: [...RELEASE_ALGORITHMS],
        });
        return {
          signer: name,
          method: 'jwks',
          identity: typeof header.kid === 'string' ? header.kid : '',
          payloadType: typeof header.typ === 'string' ? header.typ : '',
          payload: Buffer.from(verified.payload),
        };
      } catch (error) {
        const reason =
          error instanceof errors.JWKSNoMatchingKey
            ? 'untrusted_key'
            : error instanceof errors.JWSInvalid
              ? 'malformed'
              : 'bad_signature';
        throw new TrustRefusedError(
          reason,
          `JWS does not verify for signer "${name}": ${(error as Error).message}`,
          {
            cause: error,
          },
        );
      }
    },
  };
}
