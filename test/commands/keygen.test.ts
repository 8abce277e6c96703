import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CompactSign, calculateJwkThumbprint, compactVerify, importJWK, type JWK } from 'jose';
import { createKeygenCommand } from '../../src/commands/keygen.ts';
import { writeFileAtomic } from '../../src/keys.ts';

interface Captured {
  stdout: string;
  stderr: string;
}

async function keygen(args: string[]): Promise<{ code: number } & Captured> {
  const captured: Captured = { stdout: '', stderr: '' };
  const command = createKeygenCommand({
    stdout: { write: (text: string) => (captured.stdout += text) },
    stderr: { write: (text: string) => (captured.stderr += text) },
  });
  const code = await command.run(args);
  return { code, ...captured };
}

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'modelgate-keygen-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('when keygen writes a new ES256 key pair', () => {
  let out: string;
  let privateJwk: JWK;
  let jwks: { keys: JWK[] };

  before(async () => {
    out = join(dir, 'es256', 'keys');
    const result = await keygen(['--out', out, '--name', 'release']);
    assert.equal(result.code, 0, result.stderr);
    privateJwk = JSON.parse(await readFile(join(out, 'release.private.jwk.json'), 'utf8')) as JWK;
    jwks = JSON.parse(await readFile(join(out, 'release.jwks.json'), 'utf8')) as { keys: JWK[] };
  });

  it('makes the private key readable by its owner only', async () => {
    assert.equal((await stat(join(out, 'release.private.jwk.json'))).mode & 0o777, 0o600);
  });

  it('publishes only the public key, with kid, alg and use', () => {
    assert.equal(jwks.keys.length, 1);
    const [key] = jwks.keys;
    assert.equal(key?.d, undefined);
    assert.equal(key?.alg, 'ES256');
    assert.equal(key?.use, 'sig');
    assert.equal(key?.kid, privateJwk.kid);
  });

  it('uses the RFC 7638 thumbprint as the default kid', async () => {
    assert.equal(privateJwk.kid, await calculateJwkThumbprint(jwks.keys[0]!, 'sha256'));
  });

  it('writes a private key that the public key verifies', async () => {
    const jws = await new CompactSign(Buffer.from('x'))
      .setProtectedHeader({ alg: 'ES256' })
      .sign(await importJWK(privateJwk, 'ES256'));
    const result = await compactVerify(jws, await importJWK(jwks.keys[0]!, 'ES256'));
    assert.equal(Buffer.from(result.payload).toString(), 'x');
  });
});

describe('when the key files already exist', () => {
  it('refuses to overwrite them without --force, and replaces them with it', async () => {
    const out = join(dir, 'existing');
    assert.equal((await keygen(['--out', out])).code, 0);
    const before = await readFile(join(out, 'release.private.jwk.json'), 'utf8');

    const refused = await keygen(['--out', out]);
    assert.equal(refused.code, 1);
    assert.equal(await readFile(join(out, 'release.private.jwk.json'), 'utf8'), before);

    const forced = await keygen(['--out', out, '--force', '--alg', 'EdDSA', '--kid', 'rotated-1']);
    assert.equal(forced.code, 0, forced.stderr);
    const replaced = JSON.parse(await readFile(join(out, 'release.private.jwk.json'), 'utf8')) as JWK;
    assert.equal(replaced.kid, 'rotated-1');
    assert.equal(replaced.crv, 'Ed25519');
    assert.equal((await stat(join(out, 'release.private.jwk.json'))).mode & 0o777, 0o600);
  });
});

describe('when keygen is called wrongly', () => {
  for (const [scenario, args] of [
    ['without --out', []],
    ['with an unsupported --alg', ['--out', 'x', '--alg', 'HS256']],
    ['with a --name that is a path', ['--out', 'x', '--name', '../evil']],
    ['with an unknown option', ['--out', 'x', '--bogus']],
  ] as const) {
    it(`exits 2 ${scenario}`, async () => {
      const result = await keygen([...args]);
      assert.equal(result.code, 2);
      assert.equal(result.stderr.trim().split('\n').length, 1);
    });
  }

  it('prints help with usage, options and exit codes', async () => {
    const result = await keygen(['--help']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^Usage: modelgate keygen/);
    assert.match(result.stdout, /Exit codes:/);
  });
});

describe('when an atomic write fails', () => {
  it('leaves the existing file and no temporary file behind', async () => {
    const folder = join(dir, 'atomic');
    await mkdir(folder);
    const file = join(folder, 'key.json');
    await writeFileAtomic(file, 'first', 0o600);
    await assert.rejects(writeFileAtomic(file, 'second', 0o600, { overwrite: false }), { code: 'EEXIST' });
    assert.equal(await readFile(file, 'utf8'), 'first');
    assert.deepEqual(await readdir(folder), ['key.json']);
  });
});
