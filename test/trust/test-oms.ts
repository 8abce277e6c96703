/** OMS v1.0 signatures made in tests (the shape the reference tool writes), signed with a test key. */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { buildBundle } from '../../src/trust/bundle.ts';
import { preAuthEncoding } from '../../src/trust/dsse.ts';
import { IN_TOTO_PAYLOAD_TYPE } from '../../src/trust/oms.ts';
import { keyFingerprint, signWithKey } from '../../src/trust/public-key.ts';

export interface StatementOptions {
  hashType?: string;
  method?: 'files' | 'shards';
  /** Replace the computed subject digest. */
  subjectDigest?: string;
}

/** An OMS statement over `resources` (name → bytes), in the order given. */
export function omsStatement(
  subject: string,
  resources: Array<{ name: string; bytes: Buffer }>,
  options: StatementOptions = {},
): Record<string, unknown> {
  const listed = resources.map(({ name, bytes }) => ({
    algorithm: 'sha256',
    name,
    digest: createHash('sha256').update(bytes).digest('hex'),
  }));
  const subjectHash = createHash('sha256');
  for (const resource of listed) subjectHash.update(Buffer.from(resource.digest, 'hex'));
  return {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: subject, digest: { sha256: options.subjectDigest ?? subjectHash.digest('hex') } }],
    predicateType: 'https://model_signing/signature/v1.0',
    predicate: {
      serialization: {
        method: options.method ?? 'files',
        hash_type: options.hashType ?? 'sha256',
        allow_symlinks: false,
        ignore_paths: [],
      },
      resources: listed,
    },
  };
}

/** A key-signed OMS bundle (hint = hex SHA-256 of the PEM public key), as JSON text. */
export function omsBundle(statement: Record<string, unknown>, key: KeyObject): string {
  const payload = Buffer.from(JSON.stringify(statement));
  const sig = signWithKey(key, preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload));
  const hint = keyFingerprint(createPublicKey(key)).slice('sha256:'.length);
  return JSON.stringify(
    buildBundle(
      { payloadType: IN_TOTO_PAYLOAD_TYPE, payload, signatures: [{ sig, keyid: '' }] },
      { kind: 'publicKey', hint },
    ),
  );
}
