import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { measureKeptPartials } from '../fetch/dest-paths.ts';
import { FETCH_EXIT } from '../fetch/exit-codes.ts';
import { exitCodeFor, FetchError, isFetchError } from '../fetch/fetch-error.ts';
import { fetchRelease } from '../fetch/fetch-release.ts';
import { isModelName, isReleaseRef } from '../fetch/manifest.ts';
import { prefetchRelease } from '../fetch/prefetch-release.ts';
import {
  describeFailure,
  describeResume,
  type FetchReporter,
  jsonReporter,
  ttyReporter,
} from '../fetch/progress.ts';
import type { PrefetchState } from '../fetch/proxy-client.ts';
import {
  BREAK_GLASS_FILE_ENV,
  chooseTokenSource,
  DEFAULT_TOKEN_FILE,
  readBreakGlassToken,
} from '../fetch/token-source.ts';
import { type Command, defineCommand } from './command.types.ts';

export { FETCH_EXIT } from '../fetch/exit-codes.ts';

const HELP = `Usage: modelgate fetch --proxy URL --model NAME --release REF --dest DIR [options]
       modelgate fetch --prefetch-only --proxy URL --model NAME --release REF [options]

Downloads one release through a modelgate proxy into DIR, verifying every
byte again on the client, for an init container that prepares a model
server's files. Files appear in DIR under their final names only once
verified; an interrupted fetch resumes from the verified chunks it left.

Options:
  --proxy URL          base URL of the proxy's data listener (http or https)
  --model NAME         model name, e.g. fraud-detector or team/fraud-detector
  --release REF        a version (2026.11.3) or a release digest (sha256:<hex>)
  --dest DIR           destination folder (created when missing)
  --token-file FILE    bearer token, re-read before every request
                       (default ${DEFAULT_TOKEN_FILE}, or $MODELGATE_TOKEN when set)
  --concurrency N      files downloaded at once (default 4, 1–64)
  --retries N          failed attempts in a row before giving up (default 5, 0–20)
  --ca FILE            PEM CA certificate trusted for an https proxy, beside the system roots
  --break-glass-file FILE
                       a break-glass token (modelgate break-glass), read once at start
                       and sent in Modelgate-Break-Glass on every request; for an
                       incident only (default: the file named by $${BREAK_GLASS_FILE_ENV}
                       when set)
  --prefetch-only      do not download: ask the proxy to warm its disk cache
                       for the release (POST …/prefetch) and wait until it is
                       done, printing progress; needs cache: on the proxy
                       (docs/fetch.md "Warming a node"); --dest is not used
  -h, --help           this text

Progress goes to stderr: a live line on a terminal (bytes, percent, ETA
once the rate has settled, rate of this run, files; fields dropped to fit
the terminal width), else one JSON line per finished file and a final
summary line. After an interruption, or a failure that kept partial files,
one more line says so: rerunning the same command resumes. DIR/.modelgate-release.json records
the release digest, model, version, environment and file digests.

Exit codes:
  0   every file is in DIR and verified
  1   local failure (disk full, permission denied) or unexpected response
  2   usage: bad flags, unreadable token, break-glass or CA file, malformed reference
  10  authentication or authorization refused (401, 403), including a
      refused break-glass token (MG_BREAK_GLASS_EXPIRED and the other
      MG_BREAK_GLASS_* codes)
  11  model, release or file not found (404, 409)
  12  integrity failure: a digest or size did not match (retried once)
  13  proxy or source unavailable after retries (502, 503, 504, network)
      (--prefetch-only: 11 also when the proxy has no cache, MG_CACHE_NOT_CONFIGURED)
  13  (--prefetch-only) the proxy's prefetch failed (FETCH_PREFETCH_FAILED)
  14  unsafe destination: a symlink planted in DIR (at .modelgate-tmp, a
      partial or final file, a folder of a nested path, or the record);
      fetch never writes through one, so nothing outside DIR was touched
`;

function usage(message: string): FetchError {
  return new FetchError('usage', 'FETCH_USAGE', message);
}

function integer(
  name: string,
  value: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw usage(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

function required(name: string, value: string | undefined): string {
  if (value === undefined || value === '') throw usage(`--${name} is required`);
  return value;
}

function parseProxy(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw usage(`--proxy must be an http or https URL, got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw usage(`--proxy must be an http or https URL, got ${JSON.stringify(value)}`);
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw usage('--proxy must not carry credentials, a query or a fragment');
  }
  return url;
}

async function readCa(caFile: string | undefined): Promise<string | undefined> {
  if (caFile === undefined) return undefined;
  try {
    return await readFile(caFile, 'utf8');
  } catch (error) {
    throw new FetchError('usage', 'FETCH_CA_UNREADABLE', `cannot read CA file ${caFile}`, { cause: error });
  }
}

/** Prefetch progress on stderr: a readable line on a terminal, else one JSON line per update. */
function prefetchReporter(stderr: NodeJS.WriteStream): (state: PrefetchState) => void {
  return (state) => {
    if (!stderr.isTTY) {
      stderr.write(`${JSON.stringify({ event: 'prefetch', ...state })}\n`);
      return;
    }
    const percent = state.totalBytes === 0 ? 100 : Math.floor((state.bytes / state.totalBytes) * 100);
    const mib = (n: number) => (n / 1048576).toFixed(1);
    stderr.write(
      `prefetch ${state.state}: ${mib(state.bytes)} of ${mib(state.totalBytes)} MiB (${percent}%)\n`,
    );
  };
}

/** The flags as given; `runFetch` checks their values (a bad one is a FETCH_USAGE failure, exit 2). */
function parseFetchArgs(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: false,
    strict: true,
    options: {
      proxy: { type: 'string' },
      model: { type: 'string' },
      release: { type: 'string' },
      dest: { type: 'string' },
      'token-file': { type: 'string' },
      concurrency: { type: 'string' },
      retries: { type: 'string' },
      ca: { type: 'string' },
      'break-glass-file': { type: 'string' },
      'prefetch-only': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
}

/** Runs the fetch, printing one line on stderr for a failure (and one more when a rerun resumes). */
async function runFetch(values: ReturnType<typeof parseFetchArgs>): Promise<number> {
  const stderr = process.stderr;
  const controller = new AbortController();
  let interruptedBy: NodeJS.Signals | undefined;
  // As PID 1 of an init container nothing else turns SIGTERM into an exit:
  // stop the transfers (verified partial files stay for the next attempt).
  const onSignal = (signal: NodeJS.Signals) => {
    interruptedBy = signal;
    controller.abort(new Error(`received ${signal}`));
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  let reporter: FetchReporter | undefined;
  try {
    const proxy = parseProxy(required('proxy', values.proxy));
    const model = required('model', values.model);
    if (!isModelName(model)) throw usage(`--model ${JSON.stringify(model)} is not a valid model name`);
    const release = required('release', values.release);
    if (!isReleaseRef(release)) {
      throw usage(`--release must be a version or sha256:<64 hex>, got ${JSON.stringify(release)}`);
    }
    const tokens = chooseTokenSource(values['token-file'], process.env);
    const ca = await readCa(values.ca);
    const breakGlassToken = await readBreakGlassToken(values['break-glass-file'], process.env);
    const connection = {
      proxy,
      model,
      release,
      tokens,
      signal: controller.signal,
      ...(ca === undefined ? {} : { ca }),
      ...(breakGlassToken === undefined ? {} : { breakGlassToken }),
    };
    if (values['prefetch-only'] === true) {
      const retries = integer('retries', values.retries, 5, 0, 20);
      await prefetchRelease({ ...connection, retries, report: prefetchReporter(stderr) });
      return FETCH_EXIT.ok;
    }
    const dest = required('dest', values.dest);
    const concurrency = integer('concurrency', values.concurrency, 4, 1, 64);
    const retries = integer('retries', values.retries, 5, 0, 20);
    reporter = stderr.isTTY ? ttyReporter(stderr) : jsonReporter(stderr);
    await fetchRelease({ ...connection, dest, concurrency, retries, reporter });
    return FETCH_EXIT.ok;
  } catch (thrown) {
    const error = isFetchError(thrown)
      ? thrown
      : new FetchError('unexpected', 'FETCH_LOCAL_IO', (thrown as Error)?.message ?? String(thrown), {
          cause: thrown,
        });
    const code = exitCodeFor(error, interruptedBy);
    stderr.write(describeFailure(error, code));
    const { dest } = values;
    const kept = dest === undefined || dest === '' ? 0 : await measureKeptPartials(dest);
    const resume = describeResume(error, kept, dest ?? '');
    if (resume !== undefined) stderr.write(resume);
    return code;
  } finally {
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
  }
}

export const fetchCommand: Command = defineCommand({
  name: 'fetch',
  summary: 'Download a release through the proxy into a folder, verifying every byte (init containers)',
  help: HELP,
  output: process,
  parse: parseFetchArgs,
  run: runFetch,
});
