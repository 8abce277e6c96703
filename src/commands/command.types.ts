/** A `modelgate` subcommand. `run` returns the process exit code; it never calls process.exit itself. */
export interface Command {
  readonly name: string;
  /** One line for `modelgate --help`. */
  readonly summary: string;
  /** Full text for `modelgate NAME --help`: usage, options, exit codes. */
  readonly help: string;
  run(args: string[]): Promise<number>;
}

/** Exit codes shared by every command (documented in the README). */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
} as const;

/** Where a command writes: stdout for results and help, stderr for one-line failures. */
export interface CommandIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/** Prints `modelgate NAME: message` on stderr and returns `code` (the exit code). */
export type Fail = (code: number, message: string) => number;

/**
 * A wrong or missing flag found while checking the parsed arguments (e.g. deep
 * in a duration or claim parser): `defineCommand` turns it into exit 2 with a
 * pointer at `--help`, the same answer as a flag `parseArgs` rejects.
 */
export class UsageError extends Error {}

/**
 * The shape every command shares: parse the arguments (a parse error is a
 * usage error pointing at `--help`), answer `--help`, then run the body with
 * a `fail` that names the command. A `UsageError` thrown by the body is a
 * usage error too, so checks on flag values can live beside the parsing
 * without catching. Keeps each command file to what it does.
 */
export function defineCommand<P extends { help?: boolean | undefined }>(spec: {
  name: string;
  summary: string;
  help: string;
  output: CommandIo;
  parse(args: string[]): P;
  run(parsed: P, fail: Fail): Promise<number>;
}): Command {
  const fail: Fail = (code, message) => {
    spec.output.stderr.write(`modelgate ${spec.name}: ${message}\n`);
    return code;
  };
  return {
    name: spec.name,
    summary: spec.summary,
    help: spec.help,
    async run(args: string[]): Promise<number> {
      const usage = (error: unknown) =>
        fail(EXIT.usage, `${(error as Error).message} (see modelgate ${spec.name} --help)`);
      let parsed: P;
      try {
        parsed = spec.parse(args);
      } catch (error) {
        return usage(error);
      }
      if (parsed.help) {
        spec.output.stdout.write(spec.help);
        return EXIT.ok;
      }
      try {
        return await spec.run(parsed, fail);
      } catch (error) {
        if (error instanceof UsageError) return usage(error);
        throw error;
      }
    },
  };
}
