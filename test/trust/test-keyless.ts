/**
 * A private Sigstore for tests: a log key that writes real Rekor-style
 * entries (a dsse v0.0.1 body, a signed entry timestamp, and a one-leaf
 * RFC 6962 inclusion proof with a signed checkpoint), and a trusted-root file
 * naming a test CA in the Fulcio role and that log. @sigstore/verify checks
 * these exactly as it checks public-good bundles.
 */
import { createHash, createPrivateKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { canonicalJson } from '../../src/catalog/signature.ts';
import { BUNDLE_V03_MEDIA_TYPE } from '../../src/trust/bundle.ts';
import { envelopeToJson, preAuthEncoding } from '../../src/trust/dsse.ts';
import type { TestCert } from './test-pki.ts';

export interface TestLog {
  baseUrl: string;
  privateKey: KeyObject;
  publicDer: Buffer;
  /** SHA-256 of the DER public key: the log ID. */
  logId: Buffer;
}

export function makeLog(name = 'rekor.test.invalid'): TestLog {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicDer = publicKey.export({ type: 'spki', format: 'der' });
  return {
    baseUrl: `https://${name}`,
    privateKey,
    publicDer,
    logId: createHash('sha256').update(publicDer).digest(),
  };
}

/** A trusted root (the JSON shape of the public-good one) trusting `ca` as Fulcio and `log` as Rekor. */
export function trustedRootFor(ca: TestCert, log: TestLog): Record<string, unknown> {
  const start = '2020-01-01T00:00:00Z';
  return {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [
      {
        baseUrl: log.baseUrl,
        hashAlgorithm: 'SHA2_256',
        publicKey: {
          rawBytes: log.publicDer.toString('base64'),
          keyDetails: 'PKIX_ECDSA_P256_SHA_256',
          validFor: { start },
        },
        logId: { keyId: log.logId.toString('base64') },
      },
    ],
    certificateAuthorities: [
      {
        subject: { organization: 'test', commonName: 'test-fulcio' },
        uri: 'https://fulcio.test.invalid',
        certChain: { certificates: [{ rawBytes: ca.der.toString('base64') }] },
        validFor: { start },
      },
    ],
    ctlogs: [],
    timestampAuthorities: [],
  };
}

function checkpoint(log: TestLog, root: Buffer): string {
  const name = new URL(log.baseUrl).host;
  const note = `${name} - test\n1\n${root.toString('base64')}\n`;
  const signature = sign('sha256', Buffer.from(note), { key: log.privateKey, dsaEncoding: 'der' });
  return `${note}\n\u2014 ${name} ${Buffer.concat([log.logId.subarray(0, 4), signature]).toString('base64')}\n`;
}

/** A transparency-log entry for a DSSE signature, as Rekor writes one, at `integratedTime` (seconds). */
function logEntry(log: TestLog, payload: Buffer, sig: Buffer, leaf: TestCert, integratedTime: number) {
  const body = Buffer.from(
    canonicalJson({
      apiVersion: '0.0.1',
      kind: 'dsse',
      spec: {
        payloadHash: { algorithm: 'sha256', value: createHash('sha256').update(payload).digest('hex') },
        signatures: [
          { signature: sig.toString('base64'), verifier: Buffer.from(leaf.pem).toString('base64') },
        ],
      },
    }),
  );
  const promise = canonicalJson({
    body: body.toString('base64'),
    integratedTime,
    logIndex: 0,
    logID: log.logId.toString('hex'),
  });
  const set = sign('sha256', Buffer.from(promise), { key: log.privateKey, dsaEncoding: 'der' });
  // A one-leaf tree: the root is the leaf hash (RFC 6962 §2.1), the proof has no hashes.
  const root = createHash('sha256')
    .update(Buffer.from([0]))
    .update(body)
    .digest();
  return {
    logIndex: '0',
    logId: { keyId: log.logId.toString('base64') },
    kindVersion: { kind: 'dsse', version: '0.0.1' },
    integratedTime: String(integratedTime),
    inclusionPromise: { signedEntryTimestamp: set.toString('base64') },
    inclusionProof: {
      logIndex: '0',
      rootHash: root.toString('base64'),
      treeSize: '1',
      hashes: [],
      checkpoint: { envelope: checkpoint(log, root) },
    },
    canonicalizedBody: body.toString('base64'),
  };
}

export interface KeylessOptions {
  payloadType: string;
  payload: Buffer;
  /** A Fulcio-style leaf (SAN + OIDC issuer extension) and its key. */
  leaf: TestCert;
  log: TestLog;
  /** Default: now. */
  integratedTime?: number;
}

/** A keyless-style bundle v0.3: the payload signed with the leaf key, the leaf, and one log entry. */
export function keylessBundle(options: KeylessOptions): Record<string, unknown> {
  const key = createPrivateKey(readFileSync(options.leaf.keyFile));
  const sig = sign('sha256', preAuthEncoding(options.payloadType, options.payload), {
    key,
    dsaEncoding: 'der',
  });
  const time = options.integratedTime ?? Math.floor(Date.now() / 1000);
  return {
    mediaType: BUNDLE_V03_MEDIA_TYPE,
    verificationMaterial: {
      certificate: { rawBytes: options.leaf.der.toString('base64') },
      tlogEntries: [logEntry(options.log, options.payload, sig, options.leaf, time)],
      timestampVerificationData: {},
    },
    dsseEnvelope: envelopeToJson({
      payloadType: options.payloadType,
      payload: options.payload,
      signatures: [{ sig, keyid: '' }],
    }),
  };
}
