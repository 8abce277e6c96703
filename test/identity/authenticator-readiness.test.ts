/**
 * What the authenticator tells `/readyz` about its issuers, found unguarded
 * by the identity mutation run (only the server-level readiness tests reached
 * it): ready only when every issuer's keys loaded, which issuers are pending,
 * and a one-line reason per pending issuer, before and after a failed load,
 * and once the keys arrive in the background.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createAuthenticator, type TokenAuthenticator } from '../../src/identity/authenticator.ts';
import { freePort } from '../helpers/ports.ts';
import { generateTestKey } from '../helpers/tokens.ts';
import { issuerConfig, serviceAccount } from './fixtures.ts';

describe('when one issuer has keys and two have not', () => {
  let dir: string;
  let jwksFile: string;
  let missingFile: string;
  let closedPortUri: string;
  let authenticator: TokenAuthenticator;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mg-authenticator-ready-'));
    const key = await generateTestKey('RS256', 'k1');
    jwksFile = join(dir, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify({ keys: [key.publicJwk] }));
    missingFile = join(dir, 'later.json');
    closedPortUri = `http://127.0.0.1:${await freePort()}/jwks`;
    authenticator = createAuthenticator({
      issuers: [
        issuerConfig({ name: 'loaded', issuer: 'https://loaded.example.com', jwksFile }),
        // Retried in the background every cooldownSeconds (at least 1 s).
        issuerConfig({
          name: 'later',
          issuer: 'https://later.example.com',
          jwksFile: missingFile,
          cooldownSeconds: 1,
        }),
        issuerConfig({
          name: 'down',
          issuer: 'https://down.example.com',
          jwksUri: closedPortUri,
          timeoutSeconds: 2,
        }),
      ],
      serviceAccounts: [
        serviceAccount({ name: 'sa', issuer: 'loaded', subject: 'system:serviceaccount:a:b' }),
      ],
      tokenCacheEntries: 0,
    });
  });
  after(async () => {
    authenticator.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('before start, has read the key files already and names the URI issuer "keys not loaded yet"', () => {
    assert.equal(authenticator.isReady(), false);
    assert.deepEqual(authenticator.pendingIssuers(), ['later', 'down']);
    const problems = authenticator.issuerKeyProblems();
    assert.match(problems.later ?? '', /ENOENT/);
    assert.equal(problems.down, 'keys not loaded yet');
  });

  it('after start, is not ready and names only the issuers without keys, each with its reason', async () => {
    await authenticator.start();
    assert.equal(authenticator.isReady(), false, 'one issuer with keys is not enough');
    assert.deepEqual(authenticator.pendingIssuers(), ['later', 'down']);
    const problems = authenticator.issuerKeyProblems();
    assert.deepEqual(Object.keys(problems), ['later', 'down']);
    // The file error as Node reports it, nothing added (it has no cause).
    assert.equal(problems.later, `ENOENT: no such file or directory, open '${missingFile}'`);
    assert.ok(!(problems.later ?? '').includes('\n    at '), 'one line, no stack');
    // A fetch error's own message says little ("fetch failed"); its cause names the refused connection.
    assert.match(problems.down ?? '', /ECONNREFUSED/);
    assert.ok((problems.down ?? '').length <= 300);
  });

  it('once the missing key file appears, loads it in the background and drops it from the problems', async () => {
    const key = await generateTestKey('RS256', 'k2');
    await writeFile(missingFile, JSON.stringify({ keys: [key.publicJwk] }));
    const deadline = Date.now() + 10_000;
    while (authenticator.pendingIssuers().includes('later') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(authenticator.pendingIssuers(), ['down']);
    assert.deepEqual(Object.keys(authenticator.issuerKeyProblems()), ['down']);
    assert.equal(authenticator.isReady(), false);
  });
});

describe('when OIDC discovery names a plain-HTTP jwks_uri that is not on this machine', () => {
  let server: Server;
  let authenticator: TokenAuthenticator;
  let issuer: string;
  const fetched: string[] = [];

  before(async () => {
    server = createServer((req, res) => {
      fetched.push(req.url ?? '');
      res.setHeader('content-type', 'application/json');
      // Keys over plain HTTP from another host could be swapped on the way: never fetch them.
      res.end(JSON.stringify({ issuer, jwks_uri: 'http://keys.invalid/jwks' }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    authenticator = createAuthenticator({
      issuers: [issuerConfig({ name: 'oidc', issuer, discovery: true, timeoutSeconds: 2 })],
      serviceAccounts: [serviceAccount({ name: 'sa', issuer: 'oidc', subject: 'system:serviceaccount:a:b' })],
      tokenCacheEntries: 0,
    });
    await authenticator.start();
  });
  after(async () => {
    authenticator.close();
    await new Promise((resolve) => server.close(resolve));
  });

  it('refuses the document before fetching any key, and says why', () => {
    assert.deepEqual(fetched, ['/.well-known/openid-configuration']);
    assert.equal(authenticator.isReady(), false);
    assert.match(authenticator.issuerKeyProblems().oidc ?? '', /expected an https jwks_uri/);
  });
});

describe('when the reason a key file did not load is longer than a log line should be', () => {
  it('names it in at most 300 characters', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mg-authenticator-long-'));
    // ENOENT's message quotes the path: a deep one makes it longer than 300 characters.
    const deep = join(dir, 'a'.repeat(200), 'b'.repeat(200), 'jwks.json');
    const authenticator = createAuthenticator({
      issuers: [issuerConfig({ name: 'deep', issuer: 'https://deep.example.com', jwksFile: deep })],
      serviceAccounts: [serviceAccount({ name: 'sa', issuer: 'deep', subject: 'system:serviceaccount:a:b' })],
      tokenCacheEntries: 0,
    });
    try {
      const reason = authenticator.issuerKeyProblems().deep ?? '';
      assert.equal(reason.length, 300);
      assert.ok(reason.startsWith('ENOENT: no such file or directory'));
    } finally {
      authenticator.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
