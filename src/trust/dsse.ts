/** DSSE (Dead Simple Signing Envelope) v1: the envelope inside a Sigstore bundle. */

export interface DsseSignature {
  /** Raw signature bytes (base64-decoded). */
  sig: Buffer;
  keyid: string;
}

export interface DsseEnvelope {
  payloadType: string;
  /** Payload bytes (base64-decoded), exactly as signed. */
  payload: Buffer;
  signatures: DsseSignature[];
}

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64(value: unknown, what: string): Buffer {
  if (typeof value !== 'string' || !BASE64_RE.test(value)) throw new TypeError(`${what} must be base64`);
  return Buffer.from(value, 'base64');
}

/**
 * The Pre-Authentication Encoding the signature covers (DSSE v1 protocol):
 * `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in ASCII
 * decimal bytes. Signing the PAE, not the payload, binds the payload type.
 */
export function preAuthEncoding(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, 'utf8'),
    type,
    Buffer.from(` ${payload.length} `, 'utf8'),
    payload,
  ]);
}

/** Parses the JSON form of a DSSE envelope (attacker-controlled). Throws TypeError naming the field. */
export function parseEnvelope(value: unknown): DsseEnvelope {
  if (value === null || typeof value !== 'object') throw new TypeError('dsseEnvelope must be an object');
  const envelope = value as Record<string, unknown>;
  if (typeof envelope.payloadType !== 'string' || envelope.payloadType === '') {
    throw new TypeError('dsseEnvelope.payloadType must be a non-empty string');
  }
  const payload = decodeBase64(envelope.payload, 'dsseEnvelope.payload');
  if (!Array.isArray(envelope.signatures) || envelope.signatures.length === 0) {
    throw new TypeError('dsseEnvelope.signatures must be a non-empty array');
  }
  const signatures = envelope.signatures.map((entry: unknown, i: number) => {
    const signature = (entry ?? {}) as Record<string, unknown>;
    const keyid = signature.keyid ?? '';
    if (typeof keyid !== 'string')
      throw new TypeError(`dsseEnvelope.signatures[${i}].keyid must be a string`);
    return { sig: decodeBase64(signature.sig, `dsseEnvelope.signatures[${i}].sig`), keyid };
  });
  return { payloadType: envelope.payloadType, payload, signatures };
}

/** The JSON form of an envelope (base64 payload and signatures). */
export function envelopeToJson(envelope: DsseEnvelope): Record<string, unknown> {
  return {
    payload: envelope.payload.toString('base64'),
    payloadType: envelope.payloadType,
    signatures: envelope.signatures.map((s) => ({ sig: s.sig.toString('base64'), keyid: s.keyid })),
  };
}
