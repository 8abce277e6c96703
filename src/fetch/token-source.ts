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

function checkToken(token: string, where: string): string {
  if (token === '') throw new FetchError('usage', 'FETCH_TOKEN_UNREADABLE', `${where} is empty`);
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES || /[\s\0]/.test(token)) {
    throw new FetchError(
      'usage',
      'FETCH_TOKEN_UNREADABLE',
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
