import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { digestBytes } from '../../src/catalog/file-digest.ts';
import { loadSigner, verifyRelease } from '../../src/catalog/signature.ts';
import type { Command } from '../../src/commands/command.types.ts';
import { createKeygenCommand } from '../../src/commands/keygen.ts';
import { createSignCommand } from '../../src/commands/sign.ts';
import { createVerifyCommand } from '../../src/commands/verify.ts';
import { releaseDigest } from '../helpers/releases.ts';

type Factory = typeof createSignCommand;

async function run(
  factory: Factory,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const command: Command = factory({
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  });
  const code = await command.run(args);
  return { code, stdout, stderr };
}

const MiB = 1024 * 1024;

let root: string;
let modelDir: string;
let keys: string;
let out: string;
let weights: Buffer;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'modelgate-sign-'));
  keys = join(root, 'keys');
  out = join(root, 'releases');
  modelDir = join(root, 'model');
  await mkdir(out);
  await mkdir(join(modelDir, 'weights'), { recursive: true });
  await mkdir(join(modelDir, '.git'));
  weights = randomBytes(3.5 * MiB);
  await writeFile(join(modelDir, 'weights', 'model.bin'), weights);
  await writeFile(join(modelDir, 'config.json'), '{"layers": 2}');
  await writeFile(join(modelDir, 'empty.txt'), '');
  await writeFile(join(modelDir, '.DS_Store'), 'skipped');
  await writeFile(join(modelDir, '.git', 'HEAD'), 'skipped');
  // A symlink to a file inside the folder is followed.
  await symlink(join(modelDir, 'config.json'), join(modelDir, 'alias.json'));
  for (const name of ['release', 'other']) {
    const result = await run(createKeygenCommand, ['--out', keys, '--name', name]);
    assert.equal(result.code, 0, result.stderr);
  }
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

function signArgs(extra: string[] = []): string[] {
  return [
    modelDir,
    '--key',
    join(keys, 'release.private.jwk.json'),
    '--model',
    'team/fraud-detector',
    '--version',
    '1.0.0',
    '--environment',
    'prod',
    '--source-prefix',
    's3://ml-models/fraud/1.0.0',
    '--source-prefix',
    'file:fraud/1.0.0',
    '--chunk-size',
    '1MiB',
    '--out',
    out,
    '--provenance',
    'builder=ci/release',
    '--provenance',
    'buildId=8812',
    ...extra,
  ];
}

describe('when a model folder is signed and the release verified', () => {
  let jwsFile: string;
  let jws: string;
  let signed: { code: number; stdout: string; stderr: string };

  before(async () => {
    signed = await run(createSignCommand, signArgs());
    jwsFile = join(out, 'team_fraud-detector-1.0.0.jws');
    jws = await readFile(jwsFile, 'utf8');
  });

  it('writes MODEL-VERSION.jws and prints it with the release digest', () => {
    assert.equal(signed.code, 0, signed.stderr);
    assert.ok(signed.stdout.includes(jwsFile));
    assert.ok(signed.stdout.includes(`team/fraud-detector@${releaseDigest(jws)}`));
  });

  it('lists every regular file, sorted, skipping dotfiles, with whole-file and chunk digests', async () => {
    const signer = await loadSigner({
      name: 'release',
      jwksFile: join(keys, 'release.jwks.json'),
      environments: ['prod'],
    });
    const { manifest, trust } = await verifyRelease(jws, [signer]);
    assert.equal(trust, 'trusted');
    assert.deepEqual(
      manifest.files.map((f) => f.path),
      ['alias.json', 'config.json', 'empty.txt', 'weights/model.bin'],
    );
    const model = manifest.files[3]!;
    const expected = digestBytes(weights, MiB);
    assert.equal(model.size, weights.length);
    assert.equal(model.digest, expected.digest);
    assert.equal(model.chunkSize, MiB);
    assert.deepEqual(model.chunks, expected.chunks);
    assert.equal(model.chunks?.length, 4);
    assert.deepEqual(model.sources, [
      's3://ml-models/fraud/1.0.0/weights/model.bin',
      'file:fraud/1.0.0/weights/model.bin',
    ]);
    assert.deepEqual(manifest.files[2]!.chunks, []);
    assert.deepEqual(manifest.provenance, { builder: 'ci/release', buildId: '8812' });
  });

  it('verify exits 0 and prints the digest, signer, model and file list', async () => {
    const result = await run(createVerifyCommand, [jwsFile, '--jwks', join(keys, 'release.jwks.json')]);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(result.stdout.includes(releaseDigest(jws)));
    assert.ok(result.stdout.includes(join(keys, 'release.jwks.json')));
    assert.match(result.stdout, /version +1\.0\.0/);
    assert.match(result.stdout, /environment +prod/);
    assert.match(result.stdout, /weights\/model\.bin +3670016 +sha256:[0-9a-f]{64} +4 chunks of 1 MiB/);
  });

  it('verify exits 1 with unknown_signer against another key', async () => {
    const result = await run(createVerifyCommand, [jwsFile, '--jwks', join(keys, 'other.jwks.json')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^modelgate verify: unknown_signer: /);
  });

  it('verify exits 1 with bad_signature when the payload was edited', async () => {
    const [header, payload, signature] = jws.trim().split('.');
    const edited = Buffer.from(payload!, 'base64url').toString().replace('"1.0.0"', '"1.0.1"');
    const tampered = join(root, 'tampered.jws');
    await writeFile(tampered, `${header}.${Buffer.from(edited).toString('base64url')}.${signature}`);
    const result = await run(createVerifyCommand, [tampered, '--jwks', join(keys, 'release.jwks.json')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^modelgate verify: bad_signature: /);
  });

  it('verify prints an unsigned .json manifest but exits 1', async () => {
    const unsigned = join(root, 'unsigned.json');
    await writeFile(unsigned, Buffer.from(jws.split('.')[1]!, 'base64url'));
    const result = await run(createVerifyCommand, [unsigned]);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /UNSIGNED/);
    assert.match(result.stderr, /^modelgate verify: unsigned: /);
  });

  it('refuses to replace the release file without --force', async () => {
    const again = await run(createSignCommand, signArgs());
    assert.equal(again.code, 1);
    assert.equal(await readFile(jwsFile, 'utf8'), jws);
    const forced = await run(createSignCommand, signArgs(['--force', '--created', '2027-01-01T00:00:00Z']));
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(await readFile(jwsFile, 'utf8'), jws);
  });
});

describe('when the model folder has a symlink leaving it', () => {
  it('refuses to sign', async () => {
    const dir = join(root, 'escaping');
    await mkdir(dir);
    await writeFile(join(dir, 'model.bin'), 'x');
    await writeFile(join(root, 'secret.txt'), 'outside');
    await symlink(join(root, 'secret.txt'), join(dir, 'leak.txt'));
    const result = await run(createSignCommand, [
      dir,
      '--key',
      join(keys, 'release.private.jwk.json'),
      '--model',
      'escaping',
      '--version',
      '1',
      '--environment',
      'prod',
      '--source-prefix',
      'file:escaping/1',
      '--out',
      out,
    ]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim().split('\n').length, 1);
  });
});

describe('when sign or verify is called wrongly', () => {
  const cases: Array<[string, Factory, () => string[]]> = [
    [
      'sign without --model',
      createSignCommand,
      () => signArgs().filter((a) => a !== '--model' && a !== 'team/fraud-detector'),
    ],
    [
      'sign with a chunk size that is not a power of two',
      createSignCommand,
      () => signArgs(['--chunk-size', '3MiB']),
    ],
    ['sign with a chunk size below 1 MiB', createSignCommand, () => signArgs(['--chunk-size', '4096'])],
    ['sign with an uppercase model name', createSignCommand, () => signArgs(['--model', 'Fraud'])],
    ['sign with a malformed --provenance', createSignCommand, () => signArgs(['--provenance', 'novalue'])],
    ['verify without --jwks for a .jws', createVerifyCommand, () => [join(root, 'x.jws')]],
    ['verify without a file', createVerifyCommand, () => ['--jwks', 'x']],
  ];
  for (const [scenario, factory, args] of cases) {
    it(`exits 2 for ${scenario}`, async () => {
      const result = await run(factory, args());
      assert.equal(result.code, 2);
      assert.equal(result.stderr.trim().split('\n').length, 1);
    });
  }

  it('exits 1 when --source-prefix makes an invalid source', async () => {
    const result = await run(
      createSignCommand,
      signArgs(['--source-prefix', 'http://example.com/x', '--force']),
    );
    assert.equal(result.code, 1);
  });
});
