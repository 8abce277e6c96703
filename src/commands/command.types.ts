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
