import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseArgs } from 'node:util';
import { defineCommand, EXIT, UsageError } from '../../src/commands/command.types.ts';

const HELP = 'Usage: modelgate probe --level N\n';

/** A tiny command on the shared skeleton; `body` is what its run does with `--level`. */
function probe(body: (level: string | undefined) => Promise<number> | number) {
  const captured = { stdout: '', stderr: '' };
  const command = defineCommand({
    name: 'probe',
    summary: 'a command for the tests',
    help: HELP,
    output: {
      stdout: { write: (text: string) => (captured.stdout += text) },
      stderr: { write: (text: string) => (captured.stderr += text) },
    },
    parse: (args) =>
      parseArgs({ args, options: { level: { type: 'string' }, help: { type: 'boolean', short: 'h' } } })
        .values,
    run: async (values, fail) => {
      const code = await body(values.level);
      return code === EXIT.failure ? fail(code, 'the probe failed') : code;
    },
  });
  return { command, captured };
}

describe('when a flag is unknown', () => {
  it('exits 2 with one line naming the command and pointing at its --help, without running', async () => {
    let ran = false;
    const { command, captured } = probe(() => {
      ran = true;
      return EXIT.ok;
    });
    assert.equal(await command.run(['--nope']), EXIT.usage);
    assert.equal(ran, false);
    assert.match(captured.stderr, /^modelgate probe: .*'--nope'.* \(see modelgate probe --help\)\n$/);
    assert.equal(captured.stdout, '');
  });
});

describe('when --help is given', () => {
  it('prints the help on stdout and exits 0 without running', async () => {
    let ran = false;
    const { command, captured } = probe(() => {
      ran = true;
      return EXIT.failure;
    });
    assert.equal(await command.run(['-h', '--level', '3']), EXIT.ok);
    assert.equal(ran, false);
    assert.equal(captured.stdout, HELP);
    assert.equal(captured.stderr, '');
  });
});

describe('when the body calls fail', () => {
  it('prints "modelgate NAME: message" on stderr and returns that exit code', async () => {
    const { command, captured } = probe(() => EXIT.failure);
    assert.equal(await command.run(['--level', '3']), EXIT.failure);
    assert.equal(captured.stderr, 'modelgate probe: the probe failed\n');
  });
});

describe('when the body throws a UsageError while checking a flag value', () => {
  it('exits 2 with the same pointer at --help as a parse error', async () => {
    const { command, captured } = probe((level) => {
      throw new UsageError(`--level: expected a number, got ${level}`);
    });
    assert.equal(await command.run(['--level', 'high']), EXIT.usage);
    assert.equal(
      captured.stderr,
      'modelgate probe: --level: expected a number, got high (see modelgate probe --help)\n',
    );
  });
});

describe('when the body throws anything else', () => {
  it('lets the error through rather than calling it a usage error', async () => {
    const { command, captured } = probe(() => {
      throw new TypeError('a bug');
    });
    await assert.rejects(command.run(['--level', '3']), TypeError);
    assert.equal(captured.stderr, '');
  });
});
