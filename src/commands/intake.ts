import { parseArgs } from 'node:util';
import { isValidFilePath } from '../catalog/manifest.ts';
import type { Manifest, UpstreamEvidence } from '../catalog/release.types.ts';
import type { VerifiedSignature } from '../trust/verifier.types.ts';
import { type Command, defineCommand, EXIT } from './command.types.ts';
import type { CommandOutput } from './keygen.ts';
import {
  checkOms,
  type OmsCheck,
  OmsCheckFailure,
  TRUST_HELP,
  TRUST_OPTIONS,
  trustSpecFromFlags,
} from './oms-cli.ts';
import {
  assembleManifest,
  checkUsage,
  prepareRelease,
  RELEASE_OPTIONS,
  SignFailure,
  type SignOptions,
  writeRelease,
} from './sign.ts';

const HELP = `Usage: modelgate intake DIR --oms SIG --model M --version V --environment E
                       --source-prefix URI [--source-prefix URI ...] --key PRIVATE_KEY [--out DIR]
                       (TRUST) [--ignore-path P ...] [--chunk-size SIZE]

Turns a third-party model signed with OpenSSF Model Signing (OMS v1.0) into a
modelgate release: verifies the OMS signature SIG against the given trust and
every file of DIR (a folder or a single file) against the signed digests,
then writes a normal chunked release manifest signed with --key, exactly as
\`modelgate sign\` would, recording the upstream evidence (method, identity,
issuer and the OMS bundle itself) in its "upstream" field.

Options:
  --oms SIG               the OMS signature, e.g. DIR/model.sig                  (required)
  --key FILE              private key: a JWK from \`modelgate keygen\`, or PEM     (required)
  --model, --version, --environment, --source-prefix, --chunk-size, --out,
  --provenance, --created, --kid, --alg, --format, --force
                          as for \`modelgate sign\` (see modelgate sign --help)
  -h, --help              show this help

${TRUST_HELP}

Exit codes:
  0  signed; prints the output file and the release reference MODEL@sha256:...
  1  failure (unreadable file, bad key, unsupported hash type, output exists)
  2  usage error
  3  the OMS signature does not verify against the given trust (wrong identity,
     issuer, key or chain; tampered statement)
  4  the files do not match the signed digests (changed, missing or unlisted)
`;

function parse(args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...RELEASE_OPTIONS, ...TRUST_OPTIONS },
  });
  return { ...values, positionals };
}

/** The `upstream` evidence of a verified OMS signature (docs/trust.md). */
export function upstreamEvidence(
  signature: VerifiedSignature,
  bundle: Record<string, unknown>,
): UpstreamEvidence {
  if (signature.method === 'jwks') throw new TypeError('JWKS signers do not sign OMS bundles');
  return {
    format: 'oms/v1.0',
    method: signature.method,
    identity: signature.identity,
    ...(signature.issuer === undefined ? {} : { issuer: signature.issuer }),
    bundle,
  };
}

function manifestFor(options: SignOptions, check: OmsCheck): Manifest {
  const files = check.files.map((file) => {
    if (!isValidFilePath(file.path)) {
      throw new SignFailure(`${JSON.stringify(file.path)} cannot be a manifest path`);
    }
    return {
      path: file.path,
      size: file.digests.size,
      digest: file.digests.digest,
      chunkSize: options.chunkSize,
      chunks: file.digests.chunks ?? [],
    };
  });
  return {
    ...assembleManifest(options, files),
    upstream: upstreamEvidence(check.oms.signature, check.oms.bundle),
  };
}

/** `modelgate intake` with its output going to `output` (tests pass their own streams). */
export function createIntakeCommand(output: CommandOutput = process): Command {
  return defineCommand({
    name: 'intake',
    summary: 'verify an OMS-signed model and sign it as a release carrying the upstream evidence',
    help: HELP,
    output,
    parse,
    async run(parsed, fail) {
      if (parsed.oms === undefined)
        return fail(EXIT.usage, '--oms SIG is required (see modelgate intake --help)');
      if (parsed['certificate-chain'] !== undefined) {
        return fail(EXIT.usage, '--certificate-chain is for modelgate sign (see modelgate intake --help)');
      }
      const options = checkUsage(parsed);
      if (typeof options === 'string') return fail(EXIT.usage, `${options} (see modelgate intake --help)`);
      const spec = trustSpecFromFlags(parsed);
      if (typeof spec === 'string') return fail(EXIT.usage, `${spec} (see modelgate intake --help)`);
      try {
        // Key and output first: a bad key or an existing release fails before hashing the model.
        const prepared = await prepareRelease(options);
        const check = await checkOms(
          parsed.oms,
          options.dir,
          spec,
          parsed['ignore-path'] ?? [],
          options.chunkSize,
        );
        const { file, digest } = await writeRelease(prepared, manifestFor(options, check), options.force);
        const { signature } = check.oms;
        output.stdout.write(
          `upstream oms/v1.0 ${signature.method} ${signature.identity}${signature.issuer === undefined ? '' : ` (${signature.issuer})`}\n` +
            `wrote ${file} (${check.files.length} ${check.files.length === 1 ? 'file' : 'files'})\nrelease ${options.model}@${digest}\n`,
        );
        return EXIT.ok;
      } catch (error) {
        if (error instanceof OmsCheckFailure) return fail(error.exitCode, error.message);
        return fail(EXIT.failure, (error as Error).message);
      }
    },
  });
}

export const intakeCommand: Command = createIntakeCommand();
