import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { runCli } from '../fetch/run-cli.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, FIXTURE_ISSUER, type ServeFixture } from '../helpers/serve-fixture.ts';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.ts';

const SUBJECT = 'system:serviceaccount:fraud:inference';

describe('modelgate token', () => {
  let fixture: ServeFixture;
  let proxy: ServeProcess;
  let configFile: string;
  let keyFile: string;
  let fileUrl: string;
  const bytes = Buffer.from('the weights of a small model\n');

  before(async () => {
    fixture = await createServeFixture('token');
    const keygen = await runCli(['keygen', '--out', join(fixture.dir, 'dev-issuer'), '--name', 'dev']);
    assert.equal(keygen.code, 0, keygen.stderr);
    keyFile = join(fixture.dir, 'dev-issuer', 'dev.private.jwk.json');
    const issuers = [
      {
        name: 'dev',
        issuer: FIXTURE_ISSUER,
        jwksFile: join(fixture.dir, 'dev-issuer', 'dev.jwks.json'),
        audiences: ['modelgate'],
        algorithms: ['ES256'],
        maxTokenLifetimeSeconds: 3600,
      },
    ];
    const serviceAccounts = [
      { name: 'sa', issuer: 'dev', subject: SUBJECT, grants: [{ models: ['**'], environments: ['prod'] }] },
    ];
    configFile = await fixture.writeConfig('token.yaml', { issuers, serviceAccounts });
    await writeFile(join(fixture.models, 'w.bin'), bytes);
    const manifest = buildManifest({
      model: 'tiny',
      version: '1',
      environment: 'prod',
      files: [{ path: 'w.bin', bytes, sources: ['file:w.bin'] }],
    });
    const jws = await signRelease(manifest, fixture.signer);
    await writeRelease(fixture.releases, 'tiny-1', jws);
    proxy = await startServeProcess(['--config', configFile]);
    fileUrl = `${proxy.dataUrl}/v1/models/tiny/releases/${releaseDigest(jws)}/files/w.bin`;
  });
  after(async () => {
    await proxy?.stop();
    await fixture.remove();
  });

  const mint = (...extra: string[]) =>
    runCli(['token', '--config', configFile, '--issuer', 'dev', '--key', keyFile, ...extra]);

  describe('when minting for a configured issuer and subject', () => {
    it('prints a token the real proxy accepts for the granted file', async () => {
      const run = await mint('--sub', SUBJECT, '--ttl', '5m', '--claim', 'team="fraud"');
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, '', 'no warning for a key the issuer lists');
      const token = run.stdout.trim();
      const claims = decodeJwt(token);
      assert.equal(claims.iss, FIXTURE_ISSUER);
      assert.equal(claims.sub, SUBJECT);
      assert.equal(claims.aud, 'modelgate');
      assert.equal(claims.team, 'fraud');
      assert.equal((claims.exp ?? 0) - (claims.iat ?? 0), 300);
      assert.equal(decodeProtectedHeader(token).alg, 'ES256');
      const response = await fetch(fileUrl, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(response.status, 200);
      assert.deepEqual(Buffer.from(await response.arrayBuffer()), bytes);
    });
  });

  describe('when the key is not one the issuer lists', () => {
    it('still mints, but warns that the proxy will refuse the token', async () => {
      const other = await runCli(['keygen', '--out', join(fixture.dir, 'other'), '--name', 'other']);
      assert.equal(other.code, 0, other.stderr);
      const run = await runCli([
        'token',
        '--config',
        configFile,
        '--issuer',
        'dev',
        '--key',
        join(fixture.dir, 'other', 'other.private.jwk.json'),
        '--sub',
        SUBJECT,
      ]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, /warning: kid ".+" is not in .*dev\.jwks\.json.*MG_TOKEN_KEY_UNKNOWN/);
      const response = await fetch(fileUrl, { headers: { authorization: `Bearer ${run.stdout.trim()}` } });
      assert.equal(response.status, 401);
    });
  });

  describe('when the subject is not a configured service account', () => {
    it('mints a token the proxy refuses with 403 MG_IDENTITY_UNMAPPED', async () => {
      const run = await mint('--sub', 'system:serviceaccount:other:thief');
      assert.equal(run.code, 0, run.stderr);
      const response = await fetch(fileUrl, { headers: { authorization: `Bearer ${run.stdout.trim()}` } });
      assert.equal(response.status, 403);
      const body = (await response.json()) as { code?: string; error?: { code?: string } };
      assert.equal(body.code ?? body.error?.code, 'MG_IDENTITY_UNMAPPED');
    });
  });

  describe('when --ttl exceeds the issuer maxTokenLifetimeSeconds', () => {
    it('refuses with a usage error instead of minting a token the proxy would refuse', async () => {
      const run = await mint('--sub', SUBJECT, '--ttl', '2h');
      assert.equal(run.code, 2);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, /maxTokenLifetimeSeconds/);
    });
  });

  describe('when the issuer is not in the configuration', () => {
    it('exits 2 and lists the configured issuers', async () => {
      const run = await runCli([
        'token',
        '--config',
        configFile,
        '--issuer',
        'nope',
        '--key',
        keyFile,
        '--sub',
        SUBJECT,
      ]);
      assert.equal(run.code, 2);
      assert.match(run.stderr, /no issuer named "nope".*dev/);
    });
  });

  describe('when --claim tries to replace a claim a flag sets', () => {
    it('exits 2', async () => {
      const run = await mint('--sub', SUBJECT, '--claim', 'iss=https://elsewhere');
      assert.equal(run.code, 2);
      assert.match(run.stderr, /cannot set "iss"/);
    });
  });
});
