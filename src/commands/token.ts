import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { calculateJwkThumbprint, importJWK, type JWK, type JWTPayload, SignJWT } from 'jose';
import type { IssuerConfig, JwsAlgorithm } from '../config/config.types.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import { KeyFileError, loadJwksFile, loadPrivateJwkFile } from '../keys.ts';
import { type Command, defineCommand, EXIT, UsageError } from './command.types.ts';
import type { CommandOutput } from './keygen.ts';

const HELP = `Usage: modelgate token --config FILE --issuer NAME --key PRIVATE_JWK --sub SUB
                       [--aud AUD] [--ttl 10m] [--claim NAME=VALUE ...]

Mints a workload-style JWT for an issuer of your configuration and prints it
on stdout. For development, CI and smoke tests only: in production your
platform (Kubernetes, SPIFFE, a cloud IdP) issues workload tokens, and the
private key of a real issuer never leaves it.

The token carries iss (the issuer's "issuer" from the configuration), sub,
aud, iat, nbf, exp and jti; its header names the key's alg and kid. The key
is a private JWK such as \`modelgate keygen\` writes; put the matching public
JWKS in the issuer's jwksFile.

Options:
  --config FILE        modelgate configuration (to find the issuer)        (required)
  --issuer NAME        issuers[].name of the issuer to mint for            (required)
  --key FILE           private JWK (alg from its "alg", or from the key type;
                       kid from its "kid", or the RFC 7638 thumbprint)      (required)
  --sub SUB            subject, e.g. system:serviceaccount:fraud:inference  (required)
  --aud AUD            audience (default: the issuer's first audiences entry)
  --ttl DURATION       lifetime: 90s, 10m, 1h (default 10m; at most the
                       issuer's maxTokenLifetimeSeconds)
  --claim NAME=VALUE   extra claim; VALUE is JSON when it parses (numbers,
                       true/false, objects such as 'kubernetes.io={"namespace":"fraud"}'),
                       a string otherwise. Repeatable.
  -h, --help           show this help

Example:
  TOKEN=$(modelgate token --config modelgate.yaml --issuer dev --key keys/dev.private.jwk.json \\
            --sub system:serviceaccount:fraud:inference)

Exit codes:
  0  token printed
  1  failure (key file unreadable, key not usable for the issuer's algorithms)
  2  usage error or invalid configuration
`;

const DEFAULT_TTL_SECONDS = 600;

/** Claims the flags set; a --claim may not replace them (that would mint a token for another issuer or subject). */
const RESERVED = new Set(['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti']);

/** `90`, `90s`, `10m`, `1h` → seconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+)([smh]?)$/.exec(text);
  if (match === null) throw new UsageError(`--ttl must look like 90s, 10m or 1h, got "${text}"`);
  const unit = { '': 1, s: 1, m: 60, h: 3600 }[match[2] ?? ''] ?? 1;
  const seconds = Number(match[1]) * unit;
  if (seconds < 1) throw new UsageError('--ttl must be at least 1s');
  return seconds;
}

function parseClaims(pairs: readonly string[]): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at < 1) throw new UsageError(`--claim must be NAME=VALUE, got "${pair}"`);
    const name = pair.slice(0, at);
    if (RESERVED.has(name)) throw new UsageError(`--claim cannot set "${name}"; use the flag for it`);
    const raw = pair.slice(at + 1);
    try {
      claims[name] = JSON.parse(raw);
    } catch {
      claims[name] = raw;
    }
  }
  return claims;
}

/** The JWS algorithm of a private JWK: its own `alg`, else the one its key type implies. */
function algorithmOf(jwk: JWK): string | undefined {
  if (typeof jwk.alg === 'string') return jwk.alg;
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'EC') return { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv ?? ''];
  if (jwk.kty === 'RSA') return 'RS256';
  return undefined;
}

function findIssuer(issuers: readonly IssuerConfig[], name: string): IssuerConfig {
  const issuer = issuers.find((i) => i.name === name);
  if (issuer === undefined) {
    throw new UsageError(
      `no issuer named "${name}" in the configuration (issuers: ${issuers.map((i) => i.name).join(', ')})`,
    );
  }
  return issuer;
}

interface TokenRequest {
  config: string;
  issuer: string;
  key: string;
  sub: string;
  aud: string | undefined;
  ttlSeconds: number;
  claims: Record<string, unknown>;
}

/** The flags as given; `tokenRequest` checks them. */
function parseTokenArgs(args: string[]) {
  return parseArgs({
    args,
    options: {
      config: { type: 'string' },
      issuer: { type: 'string' },
      key: { type: 'string' },
      sub: { type: 'string' },
      aud: { type: 'string' },
      ttl: { type: 'string' },
      claim: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
}

/** What to mint, from the flags; a missing or malformed one is a `UsageError`. */
function tokenRequest(values: ReturnType<typeof parseTokenArgs>): TokenRequest {
  for (const flag of ['config', 'issuer', 'key', 'sub'] as const) {
    if (!values[flag]) throw new UsageError(`--${flag} is required`);
  }
  return {
    config: values.config ?? '',
    issuer: values.issuer ?? '',
    key: values.key ?? '',
    sub: values.sub ?? '',
    aud: values.aud,
    ttlSeconds: values.ttl === undefined ? DEFAULT_TTL_SECONDS : parseDuration(values.ttl),
    claims: parseClaims(values.claim ?? []),
  };
}

async function mint(request: TokenRequest, output: CommandOutput): Promise<string> {
  const issuer = findIssuer(loadConfig(request.config).issuers, request.issuer);
  const max = issuer.maxTokenLifetimeSeconds;
  if (max !== undefined && request.ttlSeconds > max) {
    throw new UsageError(
      `--ttl ${request.ttlSeconds}s exceeds issuer "${issuer.name}" maxTokenLifetimeSeconds (${max}s); the proxy would refuse the token`,
    );
  }
  const aud = request.aud ?? issuer.audiences[0] ?? '';
  if (!issuer.audiences.includes(aud)) {
    output.stderr.write(
      `modelgate token: warning: audience "${aud}" is not in issuer "${issuer.name}" audiences; the proxy will refuse this token\n`,
    );
  }
  const jwk = await loadPrivateJwkFile(request.key);
  const alg = algorithmOf(jwk);
  if (alg === undefined || !issuer.algorithms.includes(alg as JwsAlgorithm)) {
    throw new KeyFileError(
      request.key,
      `expected a key for one of issuer "${issuer.name}" algorithms (${issuer.algorithms.join(', ')}), got ${alg ?? `kty ${jwk.kty}`}`,
    );
  }
  const kid = jwk.kid ?? (await calculateJwkThumbprint(jwk, 'sha256'));
  await warnWhenKeyUnknown(issuer, kid, output);
  const key = await importJWK(jwk, alg);
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ ...request.claims } as JWTPayload)
    .setProtectedHeader({ alg, kid, typ: 'JWT' })
    .setIssuer(issuer.issuer)
    .setSubject(request.sub)
    .setAudience(aud)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + request.ttlSeconds)
    .setJti(randomUUID())
    .sign(key);
}

/**
 * The commonest first-hour mistake is minting with a key whose public half the
 * issuer does not list (the proxy answers MG_TOKEN_KEY_UNKNOWN): say so now
 * when the issuer's keys are a local file.
 */
async function warnWhenKeyUnknown(issuer: IssuerConfig, kid: string, output: CommandOutput): Promise<void> {
  if (issuer.jwksFile === undefined) return;
  let kids: unknown[];
  try {
    kids = (await loadJwksFile(issuer.jwksFile)).keys.map((key) => key.kid);
  } catch (error) {
    output.stderr.write(`modelgate token: warning: ${(error as Error).message}\n`);
    return;
  }
  if (!kids.includes(kid)) {
    output.stderr.write(
      `modelgate token: warning: kid "${kid}" is not in ${issuer.jwksFile}; the proxy will refuse this token (MG_TOKEN_KEY_UNKNOWN)\n`,
    );
  }
}

/** `modelgate token` with its output going to `output` (tests pass their own streams). */
export function createTokenCommand(output: CommandOutput = process): Command {
  return defineCommand({
    name: 'token',
    summary: 'mint a workload-style JWT for a configured issuer (development, CI, smoke tests)',
    help: HELP,
    output,
    parse: parseTokenArgs,
    async run(values, fail) {
      const request = tokenRequest(values);
      let token: string;
      try {
        token = await mint(request, output);
      } catch (error) {
        if (error instanceof UsageError) throw error;
        return fail(error instanceof ConfigError ? EXIT.usage : EXIT.failure, (error as Error).message);
      }
      output.stdout.write(`${token}\n`);
      return EXIT.ok;
    },
  });
}

export const tokenCommand: Command = createTokenCommand();
