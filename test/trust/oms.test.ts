import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Command } from '../../src/commands/command.types.ts';
import { createVerifyCommand } from '../../src/commands/verify.ts';
import { omsBundle, omsStatement, type StatementOptions } from './test-oms.ts';

async function verify(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const command: Command = createVerifyCommand({
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  });
  const code = await command.run(args);
  return { code, stdout, stderr };
}

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
let root: string;
let publicKeyFile: string;
const weights = Buffer.from('0123456789abcdefghij');
const config = Buffer.from('{"layers":2}');

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'modelgate-oms-statement-'));
  publicKeyFile = join(root, 'signer.pem');
  await writeFile(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A model folder holding `files` and a signature over `resources` (default: the same files). */
async function signedModel(
  resources: Array<{ name: string; bytes: Buffer }>,
  options: StatementOptions = {},
  files: Record<string, Buffer> = { 'weights.bin': weights, 'config.json': config },
): Promise<{ model: string; sig: string }> {
  const model = await mkdtemp(join(root, 'model-'));
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(model, name), bytes);
  const sig = join(root, `${Math.random().toString(36).slice(2)}.sig`);
  await writeFile(sig, omsBundle(omsStatement('model', resources, options), privateKey));
  return { model, sig };
}

const both = [
  { name: 'config.json', bytes: config },
  { name: 'weights.bin', bytes: weights },
];

describe('when the signed statement is checked', () => {
  it('accepts a well-formed files statement', async () => {
    const { model, sig } = await signedModel(both);
    const result = await verify(['--oms', sig, model, '--public-key', publicKeyFile]);
    assert.equal(result.code, 0, result.stderr);
  });

  it('exits 3 when subject[0].digest.sha256 does not commit to the resource digests', async () => {
    const { model, sig } = await signedModel(both, { subjectDigest: 'a'.repeat(64) });
    const result = await verify(['--oms', sig, model, '--public-key', publicKeyFile]);
    assert.equal(result.code, 3, result.stderr);
    assert.ok(result.stderr.includes('invalid_statement'));
  });

  it('exits 1 and says why for a hash type other than sha256', async () => {
    const { model, sig } = await signedModel(both, { hashType: 'blake2b' });
    const result = await verify(['--oms', sig, model, '--public-key', publicKeyFile]);
    assert.equal(result.code, 1, result.stderr);
    assert.ok(result.stderr.includes('hash_type "blake2b" is not supported'));
  });
});

describe('when the statement uses the shards serialization', () => {
  const shards = (ranges: Array<[number, number]>) => [
    { name: 'config.json:0:12', bytes: config },
    ...ranges.map(([start, end]) => ({
      name: `weights.bin:${start}:${end}`,
      bytes: weights.subarray(start, end),
    })),
  ];

  it('accepts shards that cover every byte with the signed digests', async () => {
    const { model, sig } = await signedModel(
      shards([
        [0, 8],
        [8, 16],
        [16, 20],
      ]),
      { method: 'shards' },
    );
    const result = await verify(['--oms', sig, model, '--public-key', publicKeyFile]);
    assert.equal(result.code, 0, result.stderr);
  });

  it('exits 4 when the shards leave bytes of a file unsigned', async () => {
    const { model, sig } = await signedModel(
      shards([
        [0, 8],
        [8, 16],
      ]),
      { method: 'shards' },
    );
    const result = await verify(['--oms', sig, model, '--public-key', publicKeyFile]);
    assert.equal(result.code, 4, result.stderr);
    assert.ok(result.stderr.includes('cover 16 of 20 bytes'));
  });
});

describe('when DIR is a single file', () => {
  it('checks the file under its own name, and exits 4 when it changed', async () => {
    const { model, sig } = await signedModel([{ name: 'weights.bin', bytes: weights }]);
    const file = join(model, 'weights.bin');
    assert.equal((await verify(['--oms', sig, file, '--public-key', publicKeyFile])).code, 0);
    await writeFile(file, Buffer.concat([weights, Buffer.from('!')]));
    assert.equal((await verify(['--oms', sig, file, '--public-key', publicKeyFile])).code, 4);
  });
});

describe('when the model folder holds symlinks or git metadata', () => {
  it('refuses a symlink the statement does not allow (exit 4)', async () => {
    const { model, sig } = await signedModel(both);
    await symlink(join(model, 'config.json'), join(model, 'alias.json'));
    const result = await verify(['--oms', sig, model, '--public-key', publicKeyFile]);
    assert.equal(result.code, 4, result.stderr);
    assert.ok(result.stderr.includes('symlink not allowed: alias.json'));
  });

  it('leaves out .git at the top level, as the reference tool does, but not a nested dotfile', async () => {
    const { model, sig } = await signedModel(both);
    await mkdir(join(model, '.git'));
    await writeFile(join(model, '.git', 'HEAD'), 'ref: refs/heads/main\n');
    assert.equal((await verify(['--oms', sig, model, '--public-key', publicKeyFile])).code, 0);
    await writeFile(join(model, '.hidden'), 'x');
    assert.equal((await verify(['--oms', sig, model, '--public-key', publicKeyFile])).code, 4);
  });
});
