import { BUNDLE_V03_MEDIA_TYPE, buildBundle, parseBundle } from '../trust/bundle.ts';
import { parseEnvelope } from '../trust/dsse.ts';
import { createVerifier, verifyWithAny } from '../trust/verifier.ts';
import type { SignerSpec, TrustVerifier } from '../trust/verifier.types.ts';
import type { EnvelopeVerifier } from './attestations.ts';

/**
 * Verifies an attestation file against the configured attestors: a Sigstore
 * bundle (any attestor kind) or a plain DSSE envelope (read as a bundle with
 * no key hint, so only key attestors can verify it: it carries no
 * certificate). Throws the most telling refusal when no attestor verifies.
 */
export async function createAttestationVerifier(
  attestors: readonly SignerSpec[],
  baseDir: string,
): Promise<EnvelopeVerifier> {
  const verifiers: TrustVerifier[] = await Promise.all(
    attestors.map((spec) => createVerifier(spec, baseDir)),
  );
  return async (bytes) => {
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new Error('not JSON');
    }
    const isBundle = json !== null && typeof json === 'object' && 'mediaType' in json;
    const bundle = isBundle
      ? parseBundle(json)
      : parseBundle({
          mediaType: BUNDLE_V03_MEDIA_TYPE,
          ...buildBundle(parseEnvelope(json), { kind: 'publicKey', hint: '' }),
        });
    const signature = await verifyWithAny(verifiers, { kind: 'bundle', bundle });
    return {
      attestor: signature.signer,
      identity: signature.identity,
      payloadType: signature.payloadType,
      payload: signature.payload,
    };
  };
}
