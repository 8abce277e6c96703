import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { freePort } from '../helpers/ports.ts';

const README = new URL('../../README.md', import.meta.url);
const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

/** One marked fenced block of the README's "Your first release" section. */
type Step = { kind: 'run' | 'background'; text: string } | { kind: 'file'; name: string; text: string };

/**
 * The blocks the reader pastes, in order: each fenced block right after a
 * `<!-- first-release: run | background | file NAME -->` marker.
 */
function extractSteps(markdown: string): Step[] {
  const start = markdown.indexOf('\n## Your first release');
  assert.ok(start >= 0, 'README has a "Your first release" section');
  const end = markdown.indexOf('\n## ', start + 1);
  const section = markdown.slice(start, end === -1 ? undefined : end);
  const steps: Step[] = [];
  const block = /<!-- first-release: (run|background|file ([^\s]+)) -->\n```[a-z]*\n([\s\S]*?)\n```/g;
  for (const match of section.matchAll(block)) {
    const text = match[3] ?? '';
    if (match[1]?.startsWith('file')) steps.push({ kind: 'file', name: match[2] ?? '', text: `${text}\n` });
    else steps.push({ kind: match[1] === 'background' ? 'background' : 'run', text });
  }
  return steps;
}

function runStep(script: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 60_000) {
  return new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn('bash', ['-eu', '-o', 'pipefail', '-c', script], { cwd, env });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('the README "Your first release" walkthrough', () => {
  const background: ChildProcess[] = [];
  let dir = '';
  after(async () => {
    for (const child of background) if (child.exitCode === null) child.kill('SIGKILL');
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('keygen, sign, config, serve, token and fetch, pasted in order, deliver the original bytes', async () => {
    const steps = extractSteps(await readFile(README, 'utf8'));
    const all = steps.map((s) => s.text).join('\n');
    for (const command of ['keygen', 'sign', 'serve', 'token', 'fetch']) {
      assert.match(
        all,
        new RegExp(`^modelgate ${command} `, 'm'),
        `the walkthrough runs modelgate ${command}`,
      );
    }
    assert.ok(
      steps.some((s) => s.kind === 'file'),
      'the walkthrough writes a configuration file',
    );

    dir = await mkdtemp(join(tmpdir(), 'modelgate-first-release-'));
    // `modelgate` on PATH, as after installing the CLI (the README's alias does the same in a shell).
    const bin = join(dir, '.bin');
    await mkdir(bin);
    await writeFile(join(bin, 'modelgate'), `#!/bin/sh\nexec "${process.execPath}" "${MAIN}" "$@"\n`);
    await chmod(join(bin, 'modelgate'), 0o755);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: `${bin}:${process.env.PATH ?? ''}`,
      MODELGATE_PORT: String(await freePort()),
      MODELGATE_ADMIN_PORT: String(await freePort()),
    };
    delete env.MODELGATE_TOKEN;

    let transcript = '';
    for (const step of steps) {
      if (step.kind === 'file') {
        await writeFile(join(dir, step.name), step.text);
        continue;
      }
      if (step.kind === 'background') {
        const child = spawn('bash', ['-eu', '-c', `exec ${step.text}`], { cwd: dir, env, stdio: 'ignore' });
        background.push(child);
        continue;
      }
      const { code, output } = await runStep(step.text, dir, env);
      transcript += `$ ${step.text}\n${output}`;
      assert.equal(code, 0, `step failed:\n${transcript}`);
    }

    const original = join(dir, 'models', 'my-model');
    const fetched = join(dir, 'fetched');
    const names = (await readdir(original)).sort();
    assert.ok(names.length >= 2);
    for (const name of names) {
      assert.deepEqual(await readFile(join(fetched, name)), await readFile(join(original, name)), name);
    }
    const server = background[0];
    assert.ok(server);
    server.kill('SIGTERM');
    const [code] = (await once(server, 'exit')) as [number | null];
    assert.equal(code, 0, 'serve shuts down cleanly on SIGTERM');
  });
});
