import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { ManifestError, validateManifest } from '../catalog/manifest.ts';
import type { Manifest } from '../catalog/release.types.ts';
import {
  type LoadedSigner,
  loadSigner,
  parseUnsignedRelease,
  ReleaseRejectedError,
  type VerifiedRelease,
  verifyRelease,
} from '../catalog/signature.ts';
import { RELEASE_BUNDLE_SUFFIX as BUNDLE_SUFFIX, verifyReleaseBundle } from '../trust/release-bundle.ts';
import { TrustRefusedError } from '../trust/trust-error.ts';
import { createVerifier } from '../trust/verifier.ts';
import { type Command, defineCommand, EXIT, type Fail, UsageError } from './command.types.ts';
import type { CommandOutput } from './keygen.ts';
import {
  checkOms,
  describeOms,
  OmsCheckFailure,
  TRUST_HELP,
  TRUST_OPTIONS,
  trustSpecFromFlags,
} from './oms-cli.ts';

const HELP = `Usage: modelgate verify FILE --jwks JWKS_FILE [--jwks JWKS_FILE ...]
       modelgate verify FILE.sigstore.json (TRUST)
       modelgate verify --oms SIG DIR (TRUST) [--ignore-path P ...]

Checks a release the way the proxy's catalog does: the JWS header (typ
modelgate-release+jws, alg ES256/EdDSA/RS256/PS256), the signature against
the given public keys, and the manifest schema. Prints the release digest,
the signer, the model, version, environment and every file (path, size,
digest, chunk count).

A .json file is an unsigned manifest: its schema is checked and it is
printed, but it has no signature to verify, so the exit code is 1.

A FILE ending in .sigstore.json is a Sigstore-bundle release: it is checked
against the TRUST flags below (as written by \`modelgate sign --format sigstore\`);
on failure stderr names the reason (bad_signature, untrusted_key,
certificate_invalid, certificate_expired, wrong_usage, identity_mismatch, ...).

With --oms, checks a model folder (or single file) DIR against an OpenSSF
Model Signing (OMS v1.0) signature SIG, as the reference model_signing tool
does: the signature against the given trust, then every file against the
signed digests (a file that is not listed fails). Nothing is written.

Options:
  --jwks FILE   public JWKS of a trusted signer (as written by \`modelgate keygen\`);
                repeatable; required for a .jws
  --oms SIG     the OMS signature (a Sigstore bundle, e.g. DIR/model.sig)
  -h, --help    show this help

${TRUST_HELP}

Exit codes:
  0  signature and manifest valid (--oms: signature valid and every file matches)
  1  invalid or unsigned; stderr names the reason: invalid_jws, wrong_type,
     unknown_signer, bad_signature, invalid_json, invalid_manifest, unsigned, unreadable
     (--oms: unreadable file, unsupported hash type or serialization)
  2  usage error
  3  --oms: the signature does not verify against the given trust (wrong identity,
     issuer, key or chain; tampered statement)
  4  --oms: the files do not match the signed digests (changed, missing or unlisted)
`;

/** Where a verify path writes, and how it fails (exit code and one stderr line). */
interface VerifyContext {
  output: CommandOutput;
  fail: Fail;
}

/** The flags and FILE/DIR arguments as given. */
type VerifyArgs = ReturnType<typeof parseVerifyArgs>;

/** `modelgate verify` with its output going to `output` (tests pass their own streams). */
export function createVerifyCommand(output: CommandOutput = process): Command {
  return defineCommand({
    name: 'verify',
    summary: 'verify a signed release (.jws, .sigstore.json) or an OMS-signed model folder',
    help: HELP,
    output,
    parse: parseVerifyArgs,
    async run(values, fail) {
      const ctx: VerifyContext = { output, fail };
      const { positionals } = values;
      if (values.oms !== undefined) return verifyOms(ctx, values.oms, values, positionals);
      if (positionals.length === 1 && positionals[0]?.endsWith(BUNDLE_SUFFIX)) {
        return verifyBundle(ctx, positionals[0], values);
      }
      if (
        Object.keys(TRUST_OPTIONS).some((name) => values[name as keyof typeof TRUST_OPTIONS] !== undefined)
      ) {
        throw new UsageError(`trust options need --oms SIG or a ${BUNDLE_SUFFIX} FILE`);
      }
      return verifyJws(ctx, positionals, values);
    },
  });
}

function parseVerifyArgs(args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      jwks: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
      ...TRUST_OPTIONS,
    },
  });
  return { ...values, positionals };
}

function describe(release: VerifiedRelease): string {
  const { manifest } = release;
  const signer =
    release.signer === null ? 'none (unsigned)' : `kid ${release.kid} (${release.signer.jwksFile})`;
  const lines = [
    release.signer === null ? 'manifest valid, UNSIGNED' : 'signature valid',
    `release      ${manifest.model}@${release.digest}`,
    `signer       ${signer}`,
    `model        ${manifest.model}`,
    `version      ${manifest.version}`,
    `environment  ${manifest.environment}`,
    `created      ${manifest.created}`,
    ...Object.entries(manifest.provenance ?? {}).map(([key, value]) => `provenance   ${key}=${value}`),
    `files        ${manifest.files.length}`,
    ...describeFiles(manifest),
  ];
  return `${lines.join('\n')}\n`;
}

function describeFiles(manifest: Manifest): string[] {
  return manifest.files.map((file) => {
    const chunks =
      file.chunks === undefined
        ? 'whole-file'
        : `${file.chunks.length} ${file.chunks.length === 1 ? 'chunk' : 'chunks'} of ${formatBytes(file.chunkSize ?? 0)}`;
    return `  ${file.path}  ${file.size}  ${file.digest}  ${chunks}`;
  });
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3} GiB`;
  if (bytes >= 1024 ** 2 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2} MiB`;
  return `${bytes} bytes`;
}

export const verifyCommand: Command = createVerifyCommand();

/** A `*.jws` release against `--jwks` keys, or a `*.json` unsigned manifest (shown, exit 1). */
async function verifyJws(ctx: VerifyContext, positionals: string[], values: VerifyArgs): Promise<number> {
  if (positionals.length !== 1) {
    throw new UsageError(`expected exactly one FILE argument, got ${positionals.length}`);
  }
  const [file = ''] = positionals;
  const unsigned = file.endsWith('.json');
  const jwksFiles = values.jwks ?? [];
  if (!unsigned && jwksFiles.length === 0) {
    throw new UsageError('--jwks FILE is required to verify a signed release');
  }

  let signers: LoadedSigner[];
  try {
    // The CLI checks signatures only: which environments a key may sign for is the proxy's configuration.
    signers = await Promise.all(
      jwksFiles.map((jwksFile) => loadSigner({ name: basename(jwksFile), jwksFile, environments: [] })),
    );
  } catch (error) {
    return ctx.fail(EXIT.failure, (error as Error).message);
  }

  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error) {
    return ctx.fail(
      EXIT.failure,
      `unreadable: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }

  let release: VerifiedRelease;
  try {
    release = unsigned ? parseUnsignedRelease(bytes) : await verifyRelease(bytes.toString('utf8'), signers);
  } catch (error) {
    if (error instanceof ReleaseRejectedError)
      return ctx.fail(EXIT.failure, `${error.reason}: ${file}: ${error.message}`);
    return ctx.fail(EXIT.failure, (error as Error).message);
  }

  ctx.output.stdout.write(describe(release));
  if (unsigned)
    return ctx.fail(
      EXIT.failure,
      `unsigned: ${file} is an unsigned manifest; there is no signature to verify`,
    );
  return EXIT.ok;
}

/** A `*.sigstore.json` release: the bundle against the trust flags, then the manifest schema. */
async function verifyBundle(ctx: VerifyContext, file: string, values: VerifyArgs): Promise<number> {
  if (values.jwks !== undefined || values['ignore-path'] !== undefined) {
    throw new UsageError(`${BUNDLE_SUFFIX} releases take trust flags, not --jwks`);
  }
  const spec = trustSpecFromFlags(values);
  if (typeof spec === 'string') throw new UsageError(spec);
  try {
    const verifier = await createVerifier(spec, process.cwd());
    const verified = await verifyReleaseBundle(await readFile(file), [verifier]);
    const manifest = validateManifest(JSON.parse(verified.payload.toString('utf8')));
    const { signature } = verified;
    const lines = [
      'signature valid',
      `release      ${manifest.model}@${verified.digest}`,
      `signer       ${signature.method} ${signature.identity}${signature.issuer === undefined ? '' : ` (${signature.issuer})`}`,
      `model        ${manifest.model}`,
      `version      ${manifest.version}`,
      `environment  ${manifest.environment}`,
      `created      ${manifest.created}`,
      `files        ${manifest.files.length}`,
      ...describeFiles(manifest),
    ];
    ctx.output.stdout.write(`${lines.join('\n')}\n`);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof TrustRefusedError)
      return ctx.fail(EXIT.failure, `${error.reason}: ${file}: ${error.message}`);
    if (error instanceof ManifestError)
      return ctx.fail(EXIT.failure, `invalid_manifest: ${file}: ${error.message}`);
    return ctx.fail(EXIT.failure, (error as Error).message);
  }
}

async function verifyOms(
  ctx: VerifyContext,
  sig: string,
  values: VerifyArgs,
  positionals: string[],
): Promise<number> {
  if (positionals.length !== 1) {
    throw new UsageError(`--oms expects exactly one DIR argument, got ${positionals.length}`);
  }
  if (values.jwks !== undefined) throw new UsageError('--jwks does not apply to --oms');
  const spec = trustSpecFromFlags(values);
  if (typeof spec === 'string') throw new UsageError(spec);
  try {
    const check = await checkOms(sig, positionals[0] ?? '', spec, values['ignore-path'] ?? [], null);
    ctx.output.stdout.write(describeOms(check));
    return EXIT.ok;
  } catch (error) {
    if (error instanceof OmsCheckFailure) return ctx.fail(error.exitCode, error.message);
    throw error;
  }
}
