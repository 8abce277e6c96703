import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { calculateJwkThumbprint, importJWK, SignJWT } from 'jose';
import { type Clock, systemClock } from '../clock.ts';
import { loadPrivateJwkFile } from '../keys.ts';
import { algorithmOfJwk, BREAK_GLASS_TYP } from '../policy/break-glass.ts';
import { isValidDigest, isValidModelName } from '../rules.ts';
import { type Command, defineCommand, EXIT, UsageError } from './command.types.ts';

const DEFAULT_TTL_SECONDS = 3600;
/** The proxy's default `breakGlass.maxTtlSeconds` (docs/break-glass.md). */
const DEFAULT_MAX_TTL_SECONDS = 4 * 3600;

const HELP = `Usage: modelgate break-glass --key PRIVATE_JWK_FILE --incident ID --reason TEXT
                            --service-account NAME --model NAME --release sha256:HEX
                            [--ttl 1h] [--max-ttl 4h] [--kid KID] [--json]

Issues a short-lived break-glass token (docs/break-glass.md): it lets one service account
read one release of one model despite missing grants, signer trust or
audit/enforce rules. Byte verification still applies. Send it in the
Modelgate-Break-Glass header. Every use is logged at warn level and counted.

Options:
  --key FILE              private JWK of the break-glass key (NAME.private.jwk.json
                          from modelgate keygen); the proxy holds only its public JWKS
  --incident ID           incident identifier, e.g. INC-1234 (must match the proxy's
                          breakGlass.incidentPattern)
  --reason TEXT           why the override is needed (recorded in every audit line)
  --service-account NAME  the configured service account that may use the token
  --model NAME            the model, e.g. fraud-detector
  --release sha256:HEX    the release digest (Modelgate-Release-Digest of the manifest)
  --ttl DURATION          lifetime: 90m, 2h, 3600s or 3600 (seconds); default 1h
  --max-ttl DURATION      refuse a --ttl above this; default 4h (the proxy's default
                          breakGlass.maxTtlSeconds, which the proxy enforces anyway)
  --kid KID               key id in the header; default the key file's kid, else its
                          JWK thumbprint (RFC 7638)
  --json                  print {"token","expiresAt","jti","incident"} on stdout
  -h, --help              show this help

Output: the token on stdout (one line); its expiry and a reminder on stderr.

Exit codes:
  0  token issued
  1  failure (unreadable or unusable key file, signing failed)
  2  usage error (missing or invalid option, TTL above --max-ttl)
`;

export interface BreakGlassCommandOptions {
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
  clock?: Clock;
}

/** `90m`, `2h`, `3600s` or `3600` → seconds. */
function parseDuration(value: string, option: string): number {
  const match = /^(\d+)([smh]?)$/.exec(value.trim());
  const multiplier = { '': 1, s: 1, m: 60, h: 3600 }[match?.[2] ?? ''] ?? 1;
  const seconds = match ? Number(match[1]) * multiplier : Number.NaN;
  if (!Number.isSafeInteger(seconds) || seconds <= 0) {
    throw new UsageError(
      `${option}: expected a positive duration such as 90m, 2h, 3600s or 3600, got ${value}`,
    );
  }
  return seconds;
}

function formatDuration(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

function required(values: Record<string, string | boolean | undefined>, name: string): string {
  const value = values[name];
  if (typeof value !== 'string' || value.trim() === '') throw new UsageError(`--${name} is required`);
  return value.trim();
}

interface Request {
  keyFile: string;
  incident: string;
  reason: string;
  serviceAccount: string;
  model: string;
  release: string;
  ttlSeconds: number;
  kid: string | undefined;
  json: boolean;
}

/** The flags as given; `breakGlassRequest` checks them. */
function parseBreakGlassArgs(args: string[]) {
  return parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      key: { type: 'string' },
      incident: { type: 'string' },
      reason: { type: 'string' },
      'service-account': { type: 'string' },
      model: { type: 'string' },
      release: { type: 'string' },
      ttl: { type: 'string' },
      'max-ttl': { type: 'string' },
      kid: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
}

/** The token to issue, from the flags; a missing or malformed one is a `UsageError`. */
function breakGlassRequest(values: ReturnType<typeof parseBreakGlassArgs>): Request {
  const keyFile = required(values, 'key');
  const incident = required(values, 'incident');
  const reason = required(values, 'reason');
  const serviceAccount = required(values, 'service-account');
  const model = required(values, 'model');
  const release = required(values, 'release');
  if (!isValidModelName(model)) {
    throw new UsageError(`--model: expected lowercase segments such as fraud-detector, got ${model}`);
  }
  if (!isValidDigest(release)) {
    throw new UsageError(
      `--release: expected sha256:<64 lowercase hex> (the release digest), got ${release}`,
    );
  }
  const ttlSeconds = values.ttl === undefined ? DEFAULT_TTL_SECONDS : parseDuration(values.ttl, '--ttl');
  const maxTtlSeconds =
    values['max-ttl'] === undefined ? DEFAULT_MAX_TTL_SECONDS : parseDuration(values['max-ttl'], '--max-ttl');
  if (ttlSeconds > maxTtlSeconds) {
    throw new UsageError(
      `--ttl: expected at most ${formatDuration(maxTtlSeconds)} (--max-ttl), got ${formatDuration(ttlSeconds)}; ` +
        'the proxy refuses tokens that live longer than breakGlass.maxTtlSeconds',
    );
  }
  const kid = values.kid === '' ? undefined : values.kid;
  return {
    keyFile,
    incident,
    reason,
    serviceAccount,
    model,
    release,
    ttlSeconds,
    kid,
    json: values.json === true,
  };
}

/** `modelgate break-glass` with its output and clock injectable (tests read what it prints). */
export function createBreakGlassCommand(options: BreakGlassCommandOptions = {}): Command {
  const stdout = options.stdout ?? ((text: string) => void process.stdout.write(text));
  const stderr = options.stderr ?? ((text: string) => void process.stderr.write(text));
  const clock = options.clock ?? systemClock;

  return defineCommand({
    name: 'break-glass',
    summary: 'Issue a short-lived, signed, incident-bound break-glass token',
    help: HELP,
    output: { stdout: { write: stdout }, stderr: { write: stderr } },
    parse: parseBreakGlassArgs,
    async run(values, fail) {
      const request = breakGlassRequest(values);
      let issued: IssuedToken;
      try {
        issued = await issueToken(request, clock);
      } catch (error) {
        return fail(EXIT.failure, (error as Error).message);
      }
      const { token, jti } = issued;
      const expiry = new Date(issued.expiresAt * 1000).toISOString().replace('.000Z', 'Z');
      if (request.json) {
        stdout(`${JSON.stringify({ token, expiresAt: expiry, jti, incident: request.incident })}\n`);
      } else {
        stdout(`${token}\n`);
      }
      stderr(
        `break-glass token for ${request.serviceAccount} → ${request.model}@${request.release}\n` +
          `expires ${expiry} (in ${formatDuration(request.ttlSeconds)}), incident ${request.incident}, jti ${jti}\n` +
          'Reminder: every use is logged and alerted on (ModelgateBreakGlassUsed); ' +
          `file the post-incident review for ${request.incident}.\n`,
      );
      return EXIT.ok;
    },
  });
}

interface IssuedToken {
  token: string;
  jti: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

/** Signs the token with the key file's private JWK, issued at the clock's now. */
async function issueToken(request: Request, clock: Clock): Promise<IssuedToken> {
  const jwk = await loadPrivateJwkFile(request.keyFile);
  const alg = algorithmOfJwk(jwk);
  if (alg === undefined) {
    throw new Error(
      `${request.keyFile}: expected an ES256, EdDSA, RS256 or PS256 key, got kty ${String(jwk.kty)} alg ${String(jwk.alg)}`,
    );
  }
  const kid = request.kid ?? (typeof jwk.kid === 'string' ? jwk.kid : await calculateJwkThumbprint(jwk));
  const key = await importJWK(jwk, alg);
  const issuedAt = Math.floor(clock() / 1000);
  const expiresAt = issuedAt + request.ttlSeconds;
  const jti = randomUUID();
  const token = await new SignJWT({
    incident: request.incident,
    reason: request.reason,
    model: request.model,
    release: request.release,
  })
    .setProtectedHeader({ alg, kid, typ: BREAK_GLASS_TYP })
    .setSubject(request.serviceAccount)
    .setIssuedAt(issuedAt)
    .setExpirationTime(expiresAt)
    .setJti(jti)
    .sign(key);
  return { token, jti, expiresAt };
}

export const breakGlassCommand: Command = createBreakGlassCommand();
