import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { configWarnings } from '../../src/config/semantics.ts';

const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

const VALID = `
stores: { file: { root: ./models } }
catalog: { dir: ./releases }
issuers:
  - name: prod
    issuer: https://oidc.example.com
    jwksFile: ./keys/issuer.jwks.json
    audiences: [modelgate]
    algorithms: [RS256]
serviceAccounts:
  - name: fraud
    issuer: prod
    subject: system:serviceaccount:fraud:inference
    grants: [{ models: ["fraud-*"], environments: [prod] }]
`;

function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, '/etc/modelgate/modelgate.yaml', env);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems.map((p) => `${p.path}: ${p.message}`);
  }
  return [];
}

describe('configuration loading', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-config-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  describe('when the file is valid', () => {
    it('fills defaults and resolves paths against the file folder', () => {
      const config = parseConfig(VALID, '/etc/modelgate/modelgate.yaml', {});
      assert.equal(config.listen.port, 8080);
      assert.equal(config.admin.port, 9464);
      assert.equal(config.transfer.readAhead, 4);
      assert.equal(config.stores.file?.root, '/etc/modelgate/models');
      assert.equal(config.issuers[0]?.jwksFile, '/etc/modelgate/keys/issuer.jwks.json');
      assert.equal(config.issuers[0]?.clockToleranceSeconds, 30);
      assert.equal(config.catalog.pollSeconds, 30);
    });

    it('replaces environment placeholders, typed when the value is one placeholder', () => {
      const text = `${VALID}\nlisten:\n  address: \${ADDR}\n  port: \${PORT:-8443}\n`;
      const config = parseConfig(text, '/x/m.yaml', { ADDR: '0.0.0.0' });
      assert.equal(config.listen.address, '0.0.0.0');
      assert.equal(config.listen.port, 8443);
    });
  });

  describe('when the file has several mistakes', () => {
    it('names every one with its path', () => {
      const text = `${VALID.replace('audiences: [modelgate]', 'audiences: []')}
listen: { port: "eighty", colour: blue }
`;
      const problems = problemsOf(text.replace('    subject: system:serviceaccount:fraud:inference\n', ''));
      assert.ok(problems.includes('issuers[0].audiences: must not be empty'), problems.join('\n'));
      assert.ok(problems.includes('listen.colour: unknown key'), problems.join('\n'));
      assert.ok(problems.includes('listen.port: must be integer'), problems.join('\n'));
      assert.ok(problems.includes('serviceAccounts[0].subject: is required'), problems.join('\n'));
    });

    it('reports unset environment variables and cross-reference errors', () => {
      const text = `${VALID}\nlisten:\n  address: \${NOPE}\n`;
      const problems = problemsOf(text);
      assert.ok(
        problems.includes('listen.address: environment variable NOPE is not set'),
        problems.join('\n'),
      );
      const semantic = problemsOf(
        VALID.replace('    issuer: prod\n    subject', '    issuer: staging\n    subject'),
      );
      assert.ok(
        semantic.includes('serviceAccounts[0].issuer: no issuer named "staging" under issuers'),
        semantic.join('\n'),
      );
    });

    it('refuses service accounts that could match the same token', () => {
      const text = `${VALID}  - name: fraud-2
    issuer: prod
    subject: system:serviceaccount:fraud:inference
    grants: []
`;
      const problems = problemsOf(text);
      assert.ok(
        problems.some((p) => p.startsWith('serviceAccounts[1]: could match the same tokens')),
        problems.join('\n'),
      );
    });

    it('refuses plain http key URLs except on loopback', () => {
      const text = VALID.replace(
        'jwksFile: ./keys/issuer.jwks.json',
        'jwksUri: http://oidc.example.com/keys',
      );
      assert.ok(problemsOf(text).some((p) => p.startsWith('issuers[0].jwksUri: must be an https: URL')));
      const loopback = VALID.replace('jwksFile: ./keys/issuer.jwks.json', 'jwksUri: http://127.0.0.1:9/keys');
      assert.deepEqual(problemsOf(loopback), []);
    });
  });

  describe('when a key is misspelt', () => {
    it('suggests the key it was probably meant to be', () => {
      const problems = problemsOf(`${VALID}\nlisten: { adress: 0.0.0.0, colour: blue }\n`);
      assert.ok(
        problems.includes('listen.adress: unknown key; did you mean "address"?'),
        problems.join('\n'),
      );
      assert.ok(problems.includes('listen.colour: unknown key'), 'no suggestion when nothing is close');
      const nested = problemsOf(VALID.replace('audiences: [modelgate]', 'audience: [modelgate]'));
      assert.ok(
        nested.includes('issuers[0].audience: unknown key; did you mean "audiences"?'),
        nested.join('\n'),
      );
    });
  });

  describe('when the file has schema mistakes and broken cross-references', () => {
    it('reports both in the same run', () => {
      // Regression: cross-reference problems appeared only after every schema problem was fixed.
      const text = VALID.replace('audiences: [modelgate]', 'audiences: []').replace(
        '    issuer: prod\n    subject',
        '    issuer: prdo\n    subject',
      );
      const problems = problemsOf(text);
      assert.ok(problems.includes('issuers[0].audiences: must not be empty'), problems.join('\n'));
      assert.ok(
        problems.includes(
          'serviceAccounts[0].issuer: no issuer named "prdo" under issuers; did you mean "prod"?',
        ),
        problems.join('\n'),
      );
    });

    it('does not crash or invent problems when whole sections have the wrong shape', () => {
      const problems = problemsOf('catalog: { dir: ./r }\nissuers: 7\nserviceAccounts: [3, { grants: 1 }]\n');
      assert.ok(problems.includes('issuers: must be array'), problems.join('\n'));
      assert.ok(!problems.some((p) => p.includes('undefined')), problems.join('\n'));
    });
  });

  describe('when grants or signers name an environment that is not configured', () => {
    const text = `${VALID.replace('environments: [prod]', 'environments: [prod, prdo, canary]')}
environments: { prod: { mode: enforce }, staging: { mode: audit } }
signers: [{ name: r, jwksFile: ./r.json, environments: [stagign] }]
`;

    it('refuses a name one typo away from a configured one, with its path and a suggestion', () => {
      const problems = problemsOf(text);
      assert.deepEqual(problems, [
        'serviceAccounts[0].grants[0].environments[1]: environment "prdo" is not configured under environments; did you mean "prod"?',
        'signers[0].environments[0]: environment "stagign" is not configured under environments; did you mean "staging"?',
      ]);
    });

    it('warns about a name far from every configured one (it gets the default policy)', () => {
      const config = parseConfig(
        text.replace('prdo, ', '').replace('[stagign]', '[staging]'),
        '/x/m.yaml',
        {},
      );
      const warnings = configWarnings(config).map((w) => `${w.path}: ${w.message}`);
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(
        warnings[0] ?? '',
        /^serviceAccounts\[0\]\.grants\[0\]\.environments\[1\]: environment "canary"/,
      );
    });
  });

  describe('when modelgate serve gets an invalid file', () => {
    it('exits 2 and prints all three mistakes with their paths', async () => {
      const file = join(dir, 'bad.yaml');
      // An unknown key, a missing required field and a wrong type.
      await writeFile(
        file,
        VALID.replace('catalog: { dir: ./releases }', 'catalog: { dir: ./releases, pollSecs: 5 }')
          .replace('  - name: fraud\n    issuer: prod\n', '  - issuer: prod\n')
          .replace('algorithms: [RS256]', 'algorithms: RS256'),
      );
      const run = spawnSync(process.execPath, [MAIN, 'serve', '--config', file], { encoding: 'utf8' });
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, /catalog\.pollSecs: unknown key/);
      assert.match(run.stderr, /serviceAccounts\[0\]\.name: is required/);
      assert.match(run.stderr, /issuers\[0\]\.algorithms: must be array/);
      const lines = run.stderr.split('\n').filter((line) => line.startsWith('  '));
      assert.equal(lines.length, 3, run.stderr);
      for (const line of lines) assert.ok(line.includes(`${file}: `), `each line names the file: ${line}`);
    });

    it('exits 2 with a clear message, not a stack, when --demo gets a configuration that is not the demo', async () => {
      // Regression: `serve --config mine.yaml --demo` ended in a raw ENOENT stack from the demo preparation.
      const mine = join(dir, 'mine', 'modelgate.yaml');
      const { mkdir, readdir } = await import('node:fs/promises');
      await mkdir(join(dir, 'mine'));
      await writeFile(mine, VALID);
      const run = spawnSync(process.execPath, [MAIN, 'serve', '--config', mine, '--demo'], {
        encoding: 'utf8',
      });
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, /--demo works only with the demo configuration/);
      assert.match(run.stderr, /drop --demo/);
      assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
      assert.ok(!(await readdir(dir)).includes('.modelgate'), 'no demo state written beside the config');
    });

    it('exits 2 with a clear message for a missing file', () => {
      const run = spawnSync(process.execPath, [MAIN, 'serve', '--config', join(dir, 'nope.yaml')], {
        encoding: 'utf8',
      });
      assert.equal(run.status, 2);
      assert.match(run.stderr, /cannot read file/);
    });
  });
});
