import { readFile } from 'node:fs/promises';
import { FetchError } from './fetch-error.ts';

/** Where a projected service-account token is mounted in the init-container pattern (docs/fetch.md). */
export const DEFAULT_TOKEN_FILE = '/var/run/secrets/modelgate/token';

/** Largest token we send; the proxy refuses longer ones anyway (MG_TOKEN_MALFORMED, 16 KiB). */
const MAX_TOKEN_BYTES = 16 * 1024;

export interface TokenSource {
  /** Where the token comes from, for messages (never the token itself). */
  readonly description: string;
  /** The current token. Called before every request. */
  read(): Promise<string>;
}

/**
 * A token read from a file before every request: the kubelet rewrites a
 * projected service-account token in place well before it expires (at 80 %
 * of its lifetime), so a long fetch must pick up the new one rather than
 * keep the token it started with.
 */
export function fileTokenSource(file: string): TokenSource {
  return {
    description: `token file ${file}`,
    async read() {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (error) {
        throw new FetchError('usage', 'FETCH_TOKEN_UNREADABLE', `cannot read token file ${file}`, {
          cause: error,
        });
      }
      return checkToken(text.trim(), `token file ${file}`);
    },
  };
}

/** A fixed token, e.g. from `MODELGATE_TOKEN` (local use; pods should mount a projected token). */
export function staticTokenSource(token: string, description: string): TokenSource {
  const checked = checkToken(token.trim(), description);
  return { description, read: async () => checked };
}

function checkToken(
  token: string,
  where: string,
  code: 'FETCH_TOKEN_UNREADABLE' | 'FETCH_BREAK_GLASS_UNREADABLE' = 'FETCH_TOKEN_UNREADABLE',
): string {
  if (token === '') throw new FetchError('usage', code, `${where} is empty`);
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES || /[\s\0]/.test(token)) {
    throw new FetchError(
      'usage',
      code,
      `${where} does not hold one token (whitespace inside, or longer than 16 KiB)`,
    );
  }
  return token;
}

/**
 * `--token-file` when given; else `MODELGATE_TOKEN` when set; else the
 * default projected-token path.
 */
export function chooseTokenSource(tokenFile: string | undefined, env: NodeJS.ProcessEnv): TokenSource {
  if (tokenFile !== undefined) return fileTokenSource(tokenFile);
  const fromEnv = env.MODELGATE_TOKEN;
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    return staticTokenSource(fromEnv, 'environment variable MODELGATE_TOKEN');
  }
  return fileTokenSource(DEFAULT_TOKEN_FILE);
}

/** The environment variable naming a break-glass token file, for init containers that cannot add flags. */
export const BREAK_GLASS_FILE_ENV = 'MODELGATE_BREAK_GLASS_FILE';

/**
 * The break-glass token to send in `Modelgate-Break-Glass`, read once at
 * start from `--break-glass-file`, else from the file named by
 * MODELGATE_BREAK_GLASS_FILE; undefined when neither is given. Read once:
 * unlike a projected token it is minted by hand for one incident and does
 * not rotate. A missing, empty or malformed file is a usage error — a fetch
 * that was asked to break glass must not quietly run without it.
 */
export async function readBreakGlassToken(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<string | undefined> {
  const fromEnv = env[BREAK_GLASS_FILE_ENV];
  const file = flag ?? (fromEnv === undefined || fromEnv === '' ? undefined : fromEnv);
  if (file === undefined) return undefined;
  const where = `break-glass token file ${file}`;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new FetchError('usage', 'FETCH_BREAK_GLASS_UNREADABLE', `cannot read ${where}`, { cause: error });
  }
  return checkToken(text.trim(), where, 'FETCH_BREAK_GLASS_UNREADABLE');
}
