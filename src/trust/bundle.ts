/**
 * Sigstore bundle v0.3 parsing (the container of OMS signatures and of
 * `*.sigstore.json` releases). Only the shape is read here; trust is the
 * verifiers' business. @sigstore/bundle refuses v0.3 bundles that carry an
 * `x509CertificateChain` (the OMS certificate method), so the shape is read by
 * hand and the keyless verifier hands the raw JSON to @sigstore/bundle itself.
 */
import { type DsseEnvelope, envelopeToJson, parseEnvelope } from './dsse.ts';
import { TrustRefusedError } from './trust-error.ts';

export const BUNDLE_V03_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const BUNDLE_V03_LEGACY_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle+json;version=0.3';

/** Bundles are a few KiB; a huge one is an attack or a mistake, not a signature. */
export const MAX_BUNDLE_BYTES = 4 * 1024 * 1024;

/** The key material a bundle carries: a key hint, a certificate chain (leaf first), or one certificate. */
export type VerificationMaterial =
  | { kind: 'publicKey'; hint: string }
  | { kind: 'certificates'; certificates: Buffer[] };

export interface ParsedBundle {
  mediaType: string;
  material: VerificationMaterial;
  /** Number of transparency-log entries (the keyless verifier checks them). */
  tlogEntryCount: number;
  envelope: DsseEnvelope;
  /** The bundle JSON as read, kept for @sigstore/bundle and for `upstream` evidence. */
  json: Record<string, unknown>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function decodeDer(value: unknown, what: string): Buffer {
  if (
    !isObject(value) ||
    typeof value.rawBytes !== 'string' ||
    !/^[A-Za-z0-9+/]+={0,2}$/.test(value.rawBytes)
  ) {
    throw new TypeError(`${what}.rawBytes must be base64`);
  }
  return Buffer.from(value.rawBytes, 'base64');
}

function parseMaterial(value: unknown): VerificationMaterial {
  if (!isObject(value)) throw new TypeError('verificationMaterial must be an object');
  const sources = ['publicKey', 'x509CertificateChain', 'certificate'].filter(
    (key) => value[key] !== undefined,
  );
  if (sources.length !== 1) {
    throw new TypeError(
      `verificationMaterial must have exactly one of publicKey, x509CertificateChain, certificate; got ${sources.length}`,
    );
  }
  if (isObject(value.publicKey)) {
    const hint = value.publicKey.hint ?? '';
    if (typeof hint !== 'string') throw new TypeError('verificationMaterial.publicKey.hint must be a string');
    return { kind: 'publicKey', hint };
  }
  if (isObject(value.x509CertificateChain)) {
    const list = value.x509CertificateChain.certificates;
    if (!Array.isArray(list) || list.length === 0) {
      throw new TypeError('verificationMaterial.x509CertificateChain.certificates must be a non-empty array');
    }
    return {
      kind: 'certificates',
      certificates: list.map((entry: unknown, i: number) =>
        decodeDer(entry, `x509CertificateChain.certificates[${i}]`),
      ),
    };
  }
  return {
    kind: 'certificates',
    certificates: [decodeDer(value.certificate, 'verificationMaterial.certificate')],
  };
}

/**
 * Parses a bundle (attacker-controlled bytes or an already-parsed JSON value).
 * Throws TrustRefusedError `malformed` naming the problem; a bundle with a
 * message signature instead of a DSSE envelope is `wrong_envelope`.
 */
export function parseBundle(input: Uint8Array | unknown): ParsedBundle {
  let value: unknown = input;
  if (input instanceof Uint8Array) {
    if (input.length > MAX_BUNDLE_BYTES) {
      throw new TrustRefusedError('malformed', `bundle is larger than ${MAX_BUNDLE_BYTES} bytes`);
    }
    try {
      value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(input));
    } catch (error) {
      throw new TrustRefusedError('malformed', `bundle is not UTF-8 JSON: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  if (!isObject(value)) throw new TrustRefusedError('malformed', 'bundle must be a JSON object');
  const { mediaType } = value;
  if (mediaType !== BUNDLE_V03_MEDIA_TYPE && mediaType !== BUNDLE_V03_LEGACY_MEDIA_TYPE) {
    throw new TrustRefusedError(
      'malformed',
      `expected bundle mediaType ${BUNDLE_V03_MEDIA_TYPE}, got ${JSON.stringify(mediaType)}`,
    );
  }
  if (value.dsseEnvelope === undefined) {
    throw new TrustRefusedError('wrong_envelope', 'expected a DSSE envelope, got a message signature bundle');
  }
  try {
    const material = parseMaterial(value.verificationMaterial);
    const tlogEntries = isObject(value.verificationMaterial)
      ? value.verificationMaterial.tlogEntries
      : undefined;
    if (tlogEntries !== undefined && !Array.isArray(tlogEntries)) {
      throw new TypeError('verificationMaterial.tlogEntries must be an array');
    }
    return {
      mediaType,
      material,
      tlogEntryCount: tlogEntries?.length ?? 0,
      envelope: parseEnvelope(value.dsseEnvelope),
      json: value,
    };
  } catch (error) {
    throw new TrustRefusedError('malformed', `invalid bundle: ${(error as Error).message}`, { cause: error });
  }
}

/** A v0.3 bundle JSON for a DSSE envelope signed with a key (hint) or a certificate chain (leaf first). */
export function buildBundle(envelope: DsseEnvelope, material: VerificationMaterial): Record<string, unknown> {
  const verificationMaterial =
    material.kind === 'publicKey'
      ? { publicKey: { hint: material.hint }, tlogEntries: [] }
      : {
          x509CertificateChain: {
            certificates: material.certificates.map((der) => ({ rawBytes: der.toString('base64') })),
          },
          tlogEntries: [],
        };
  return { mediaType: BUNDLE_V03_MEDIA_TYPE, verificationMaterial, dsseEnvelope: envelopeToJson(envelope) };
}
