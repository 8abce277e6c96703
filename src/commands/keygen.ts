import { access, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { writeFileAtomic } from '../keys.ts';
import { type Command, type CommandIo, defineCommand, EXIT, UsageError } from './command.types.ts';

/** Where a command writes; process.stdout / process.stderr unless a test passes its own. */
export type CommandOutput = CommandIo;

const KEYGEN_ALGORITHMS = ['ES256', 'EdDSA'] as const;
type KeygenAlgorithm = (typeof KEYGEN_ALGORITHMS)[number];

/** Key names become file names: no separators, no leading dot. */
const NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

const HELP = `Usage: modelgate keygen --out DIR [--name NAME] [--alg ES256|EdDSA] [--kid KID] [--force]

Generates a release signing key pair:
  DIR/NAME.private.jwk.json   the private JWK (mode 0600) for \`modelgate sign --key\`;
                              keep it in the build pipeline's secret store, never in git
  DIR/NAME.jwks.json          the public JWKS for \`signers[].jwksFile\` and \`modelgate verify --jwks\`

Options:
  --out DIR        folder to write the key files into (created if missing)   (required)
  --name NAME      file name prefix                                          (default: release)
  --alg ALG        ES256 (P-256) or EdDSA (Ed25519)                          (default: ES256)
  --kid KID        key id                       (default: the RFC 7638 SHA-256 JWK thumbprint)
  --force          replace existing key files
  -h, --help       show this help

Exit codes:
  0  keys written
  1  failure (a key file already exists, folder not writable)
  2  usage error
`;

/** `--out`, `--name`, `--alg`, `--kid`, `--force`, `--help`. */
function parseKeygenArgs(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: false,
    options: {
      out: { type: 'string' },
      name: { type: 'string', default: 'release' },
      alg: { type: 'string', default: 'ES256' },
      kid: { type: 'string' },
      force: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
}

/** `modelgate keygen` with its output going to `output` (tests pass their own streams). */
export function createKeygenCommand(output: CommandOutput = process): Command {
  return defineCommand({
    name: 'keygen',
    summary: 'generate a release signing key pair (private JWK + public JWKS)',
    help: HELP,
    output,
    parse: parseKeygenArgs,
    async run(values, fail) {
      if (values.out === undefined || values.out === '') {
        throw new UsageError('--out DIR is required');
      }
      const { name } = values;
      if (!NAME_RE.test(name)) {
        return fail(
          EXIT.usage,
          `--name must be letters, digits, ".", "_" or "-" (not starting with "."), got "${name}"`,
        );
      }
      const alg = values.alg as KeygenAlgorithm;
      if (!KEYGEN_ALGORITHMS.includes(alg)) {
        return fail(EXIT.usage, `--alg must be one of ${KEYGEN_ALGORITHMS.join(', ')}, got "${values.alg}"`);
      }
      if (values.kid === '') return fail(EXIT.usage, '--kid must not be empty');

      const dir = resolve(values.out);
      const privateFile = join(dir, `${name}.private.jwk.json`);
      const publicFile = join(dir, `${name}.jwks.json`);
      try {
        await mkdir(dir, { recursive: true });
        if (!values.force) {
          for (const file of [privateFile, publicFile]) {
            if (await exists(file))
              return fail(EXIT.failure, `${file} already exists (use --force to replace it)`);
          }
        }
        const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
        const publicJwk = await exportJWK(publicKey);
        const kid = values.kid ?? (await calculateJwkThumbprint(publicJwk, 'sha256'));
        const privateJwk = { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
        const jwks = { keys: [{ ...publicJwk, kid, alg, use: 'sig' }] };
        const overwrite = values.force;
        await writeFileAtomic(privateFile, `${JSON.stringify(privateJwk, null, 2)}\n`, 0o600, { overwrite });
        await writeFileAtomic(publicFile, `${JSON.stringify(jwks, null, 2)}\n`, 0o644, { overwrite });
        output.stdout.write(
          `wrote ${privateFile} (private, mode 0600)\nwrote ${publicFile} (public)\nkid ${kid}\n`,
        );
        return EXIT.ok;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EEXIST')
          return fail(EXIT.failure, `a key file appeared while writing (use --force to replace it)`);
        return fail(EXIT.failure, (error as Error).message);
      }
    },
  });
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

export const keygenCommand: Command = createKeygenCommand();
