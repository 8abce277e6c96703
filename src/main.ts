#!/usr/bin/env node
import { attestCommand } from './commands/attest.ts';
import { breakGlassCommand } from './commands/break-glass.ts';
import type { Command } from './commands/command.types.ts';
import { fetchCommand } from './commands/fetch.ts';
import { intakeCommand } from './commands/intake.ts';
import { keygenCommand } from './commands/keygen.ts';
import { reportCommand } from './commands/report.ts';
import { serveCommand } from './commands/serve.ts';
import { signCommand } from './commands/sign.ts';
import { tokenCommand } from './commands/token.ts';
import { verifyCommand } from './commands/verify.ts';

const commands: Command[] = [
  serveCommand,
  fetchCommand,
  keygenCommand,
  signCommand,
  verifyCommand,
  intakeCommand,
  attestCommand,
  reportCommand,
  breakGlassCommand,
  tokenCommand,
];

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `Usage: modelgate COMMAND [options]

An identity-aware model retrieval proxy: verified workload identity, grants,
and fail-closed byte verification against signed release manifests.

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run 'modelgate COMMAND --help' for a command's options and exit codes.
`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    process.stdout.write('modelgate 0.1.0\n');
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`modelgate: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // A finished command ends the process even if a pool keeps a socket open; the delay lets logs flush.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (error: unknown) => {
    process.stderr.write(
      `modelgate: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
