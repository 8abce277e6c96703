import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { text as readStream } from 'node:stream/consumers';
import { parseArgs } from 'node:util';

import { canonicalJson } from '../catalog/signature.ts';
import { loadSigningKeyFile, writeFileAtomic } from '../keys.ts';
import { isValidDigest, isValidModelName } from '../rules.ts';
import { buildBundle } from '../trust/bundle.ts';
import { envelopeToJson, preAuthEncoding } from '../trust/dsse.ts';
import { IN_TOTO_PAYLOAD_TYPE, IN_TOTO_STATEMENT_V1 } from '../trust/oms.ts';
import { keyFingerprint, signWithKey } from '../trust/public-key.ts';
import { type Command, defineCommand, EXIT, UsageError } from './command.types.ts';
import type { CommandOutput } from './keygen.ts';

const HELP = `Usage: modelgate attest --release MODEL@sha256:HEX --predicate-type URI --predicate FILE
                       --key PRIVATE_KEY [--format sigstore|dsse] [--certificate-chain PEM] [--out FILE]

Writes a signed attestation about one release: an in-toto Statement v1 whose
subject is the release digest, with the JSON in FILE as its predicate, signed
with the key as a Sigstore bundle v0.3 (default) or a plain DSSE envelope.
Put it anywhere under <catalog dir>/attestations/; modelgate verifies it
against the configured attestors and checks it against the environment's
requiredAttestations (README "Attestations and lineage").

Options:
  --release REF            the release it is about: MODEL@sha256:HEX (the release digest)  (required)
  --predicate-type URI     e.g. https://slsa.dev/provenance/v1 or
                           https://modelgate.dev/attestation/scan/v1                (required)
  --predicate FILE         the predicate as JSON ("-" reads standard input)           (required)
  --key FILE               private key: a JWK from \`modelgate keygen\` or an unencrypted PEM
                           (ECDSA P-256/384/521, Ed25519, RSA)                       (required)
  --format FORMAT          sigstore (bundle v0.3 with a key hint or certificate chain) or
                           dsse (a plain DSSE envelope; verifies with publicKeyFile
                           attestors only)                                         (default: sigstore)
  --certificate-chain PEM  with --format sigstore: the signing certificate and its
                           intermediates, leaf first, for a certificate attestor
  --out FILE               where to write it (default: standard output)
  -h, --help               show this help

Exit codes: 0 written, 1 failure (unreadable key or predicate), 2 usage error.
`;

interface AttestOptions {
  model: string;
  digest: string;
  predicateType: string;
  predicate: string;
  key: string;
  format: 'sigstore' | 'dsse';
  chain: string | undefined;
  out: string | undefined;
}

/** The flags as given; `attestOptions` checks them. */
function parseAttestArgs(args: string[]) {
  return parseArgs({
    args,
    options: {
      release: { type: 'string' },
      'predicate-type': { type: 'string' },
      predicate: { type: 'string' },
      key: { type: 'string' },
      format: { type: 'string' },
      'certificate-chain': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
}

/** What to attest, from the flags; a missing or malformed one is a `UsageError`. */
function attestOptions(values: ReturnType<typeof parseAttestArgs>): AttestOptions {
  const need = (name: 'release' | 'predicate-type' | 'predicate' | 'key'): string => {
    const value = values[name];
    if (value === undefined || value === '') throw new UsageError(`--${name} is required`);
    return value;
  };
  const release = need('release');
  const at = release.lastIndexOf('@');
  const model = release.slice(0, at);
  const digest = release.slice(at + 1);
  if (at <= 0 || !isValidModelName(model) || !isValidDigest(digest)) {
    throw new UsageError(`--release: expected MODEL@sha256:<64 lowercase hex>, got ${release}`);
  }
  const predicateType = need('predicate-type');
  if (!/^[a-z][a-z0-9+.-]*:\S+$/i.test(predicateType)) {
    throw new UsageError(`--predicate-type: expected a URI, got ${predicateType}`);
  }
  const format = values.format ?? 'sigstore';
  if (format !== 'sigstore' && format !== 'dsse')
    throw new UsageError(`--format: expected sigstore or dsse, got ${format}`);
  if (values['certificate-chain'] !== undefined && format !== 'sigstore') {
    throw new UsageError('--certificate-chain needs --format sigstore');
  }
  return {
    model,
    digest,
    predicateType,
    predicate: need('predicate'),
    key: need('key'),
    format,
    chain: values['certificate-chain'],
    out: values.out,
  };
}

async function readPredicate(file: string): Promise<unknown> {
  const text = file === '-' ? await readStream(process.stdin) : await readFile(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: the predicate is not JSON: ${(error as Error).message}`);
  }
}

async function readChain(file: string): Promise<Buffer[]> {
  const blocks =
    (await readFile(file, 'utf8')).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ??
    [];
  if (blocks.length === 0) throw new Error(`${file}: expected PEM certificates, leaf first`);
  return blocks.map((block) => new X509Certificate(block).raw);
}

/** The signed attestation text for these options. */
export async function buildAttestation(options: AttestOptions): Promise<string> {
  const key: KeyObject = createPrivateKey({ key: await loadSigningKeyFile(options.key), format: 'jwk' });
  const statement = {
    _type: IN_TOTO_STATEMENT_V1,
    subject: [{ name: options.model, digest: { sha256: options.digest.slice('sha256:'.length) } }],
    predicateType: options.predicateType,
    predicate: await readPredicate(options.predicate),
  };
  const payload = Buffer.from(canonicalJson(statement), 'utf8');
  const sig = signWithKey(key, preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload));
  const envelope = { payloadType: IN_TOTO_PAYLOAD_TYPE, payload, signatures: [{ sig, keyid: '' }] };
  if (options.format === 'dsse') return `${JSON.stringify(envelopeToJson(envelope), null, 2)}\n`;
  const chain = options.chain === undefined ? undefined : await readChain(options.chain);
  if (chain?.[0] !== undefined && !new X509Certificate(chain[0]).publicKey.equals(createPublicKey(key))) {
    throw new Error('the leaf certificate does not hold the signing key');
  }
  const material =
    chain === undefined
      ? { kind: 'publicKey' as const, hint: keyFingerprint(createPublicKey(key)).slice('sha256:'.length) }
      : { kind: 'certificates' as const, certificates: chain };
  return `${JSON.stringify(buildBundle(envelope, material), null, 2)}\n`;
}

export function createAttestCommand(output: CommandOutput = process): Command {
  return defineCommand({
    name: 'attest',
    summary: 'sign an attestation (scan, provenance, license…) about a release',
    help: HELP,
    output,
    parse: parseAttestArgs,
    async run(values, fail) {
      const options = attestOptions(values);
      let text: string;
      try {
        text = await buildAttestation(options);
      } catch (error) {
        return fail(EXIT.failure, (error as Error).message);
      }
      if (options.out === undefined) {
        output.stdout.write(text);
        return EXIT.ok;
      }
      try {
        await writeFileAtomic(resolve(options.out), text);
      } catch (error) {
        return fail(EXIT.failure, `cannot write ${options.out}: ${(error as Error).message}`);
      }
      output.stderr.write(`wrote ${options.out}\n`);
      return EXIT.ok;
    },
  });
}

export const attestCommand: Command = createAttestCommand();
