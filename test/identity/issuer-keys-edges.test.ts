/**
 * Issuer-key edges a mutation run found unguarded, against a real HTTP
 * endpoint on 127.0.0.1 whose answers each test sets: what a failed load
 * reports (status, size limits, redirects, discovery mistakes), the exact
 * cache and cooldown boundaries, the headers sent, and SPIFFE bundle handling.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createIssuerKeys, type IssuerKeys } from '../../src/identity/issuer-keys.ts';
import { generateTestKey, jwksOf, type TestKey } from '../helpers/tokens.ts';
import { frozenClock, issuerConfig } from './fixtures.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe('issuer keys against a scripted endpoint', () => {
  let server: Server;
  let base: string;
  let handler: Handler;
  let seen: IncomingMessage[];
  let key: TestKey;
  let other: TestKey;
  const opened: IssuerKeys[] = [];

  const json =
    (body: unknown, status = 200): Handler =>
    (_req, res) => {
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
    };
  const keysFor = (fields: Parameters<typeof issuerConfig>[0], clock = frozenClock()) => {
    const keys = createIssuerKeys(issuerConfig(fields), { clock });
    opened.push(keys);
    return keys;
  };
  const lastMessage = (keys: IssuerKeys) => String((keys.lastError() as Error | undefined)?.message);

  before(async () => {
    [key, other] = await Promise.all([generateTestKey('RS256', 'k-1'), generateTestKey('RS256', 'k-2')]);
    server = createServer((req, res) => {
      seen.push(req);
      handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  beforeEach(() => {
    seen = [];
    handler = json(jwksOf([key]));
  });
  after(async () => {
    for (const keys of opened) keys.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  describe('when the endpoint answers', () => {
    it('asks for JSON key sets and counts each successful load', async () => {
      const keys = keysFor({ name: 'a', issuer: base, jwksUri: `${base}/jwks` });
      assert.equal(keys.generation(), 0);
      assert.equal(keys.isLoaded(), false);
      assert.equal(await keys.load(), true);
      assert.equal(seen[0]?.headers.accept, 'application/json, application/jwk-set+json');
      assert.equal(keys.generation(), 1);
      assert.equal(keys.lastAttemptFailed(), false);
      assert.equal(keys.lastError(), undefined);
      await keys.load();
      assert.equal(keys.generation(), 2);
    });

    it('reports a non-200 answer with the URL and status, and a redirect is not followed', async () => {
      handler = json({ error: 'nope' }, 404);
      const keys = keysFor({ name: 'b', issuer: base, jwksUri: `${base}/jwks` });
      assert.equal(await keys.load(), false);
      assert.equal(keys.lastAttemptFailed(), true);
      assert.equal(lastMessage(keys), `expected 200 from ${base}/jwks, got 404`);
      handler = (_req, res) => res.writeHead(302, { location: `${base}/elsewhere` }).end();
      seen = [];
      assert.equal(await keys.load(), false);
      assert.equal(seen.length, 1, 'the redirect was not followed');
      assert.match(lastMessage(keys), /got 302$/);
    });

    it('refuses a document declared larger than 1 MiB, and one that streams past it', async () => {
      handler = (_req, res) => {
        res.writeHead(200, { 'content-length': String(1024 * 1024 + 1) });
        res.end();
      };
      const keys = keysFor({ name: 'c', issuer: base, jwksUri: `${base}/jwks` });
      assert.equal(await keys.load(), false);
      assert.equal(lastMessage(keys), `expected at most 1048576 bytes from ${base}/jwks, got 1048577`);
      handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"keys":[],"pad":"${'x'.repeat(1024 * 1024)}"}`);
      };
      assert.equal(await keys.load(), false);
      assert.equal(lastMessage(keys), `expected at most 1048576 bytes from ${base}/jwks, got more`);
    });

    it('accepts a document of exactly 1 MiB', async () => {
      const jwks = JSON.stringify(jwksOf([key]));
      const padded = `${jwks.slice(0, -1)},"pad":"${'x'.repeat(1024 * 1024 - jwks.length - 9)}"}`;
      assert.equal(Buffer.byteLength(padded), 1024 * 1024);
      handler = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(padded);
      const keys = keysFor({ name: 'd', issuer: base, jwksUri: `${base}/jwks` });
      assert.equal(await keys.load(), true, lastMessage(keys));
    });
  });

  describe('when keys come by discovery', () => {
    it('drops a trailing slash of the issuer before the well-known path', async () => {
      handler = (req, res) =>
        req.url === '/.well-known/openid-configuration'
          ? json({ issuer: `${base}/`, jwks_uri: `${base}/jwks` })(req, res)
          : json(jwksOf([key]))(req, res);
      const keys = keysFor({ name: 'e', issuer: `${base}/`, discovery: true });
      assert.equal(await keys.load(), true, lastMessage(keys));
      assert.deepEqual(
        seen.map((r) => r.url),
        ['/.well-known/openid-configuration', '/jwks'],
      );
    });

    it('names both issuers when the document describes another one', async () => {
      handler = json({ issuer: 'https://someone-else', jwks_uri: `${base}/jwks` });
      const keys = keysFor({ name: 'f', issuer: base, discovery: true });
      assert.equal(await keys.load(), false);
      assert.equal(lastMessage(keys), `expected discovery issuer "${base}", got "https://someone-else"`);
    });

    it('refuses a document that is not an object, and a jwks_uri that is not https or loopback', async () => {
      handler = json(['not', 'an', 'object']);
      const keys = keysFor({ name: 'g', issuer: base, discovery: true });
      assert.equal(await keys.load(), false);
      assert.equal(lastMessage(keys), `expected a JSON object from ${base}/.well-known/openid-configuration`);
      handler = json({ issuer: base, jwks_uri: 'http://keys.example.com/jwks' });
      assert.equal(await keys.load(), false);
      assert.match(
        lastMessage(keys),
        /expected an https jwks_uri in .*, got "http:\/\/keys\.example\.com\/jwks"$/,
      );
      handler = json({ issuer: base });
      assert.equal(await keys.load(), false);
      assert.match(lastMessage(keys), /got undefined$/);
    });

    it('says when an issuer has no key source at all', async () => {
      const keys = keysFor({ name: 'h', issuer: base });
      assert.equal(await keys.load(), false);
      assert.equal(lastMessage(keys), 'issuer has no key source (jwksFile, jwksUri or discovery)');
    });
  });

  describe('when time passes', () => {
    it('refreshes exactly when the keys are cacheSeconds old, not a millisecond before', async () => {
      const clock = frozenClock();
      const keys = keysFor({ name: 'i', issuer: base, jwksUri: `${base}/jwks`, cacheSeconds: 60 }, clock);
      await keys.current();
      assert.equal(seen.length, 1);
      clock.set(clock() + 60_000 - 1);
      await keys.current();
      assert.equal(seen.length, 1);
      clock.set(clock() + 1);
      await keys.current();
      assert.equal(seen.length, 2);
    });

    it('retries a failed load only once the cooldown has fully passed', async () => {
      const clock = frozenClock();
      handler = json({}, 500);
      const keys = keysFor(
        { name: 'j', issuer: base, jwksUri: `${base}/jwks`, cacheSeconds: 0, cooldownSeconds: 10 },
        clock,
      );
      assert.equal(await keys.current(), undefined);
      assert.equal(seen.length, 1);
      clock.set(clock() + 10_000 - 1);
      await keys.current();
      assert.equal(seen.length, 1, 'still cooling down');
      handler = json(jwksOf([key]));
      clock.set(clock() + 1);
      assert.notEqual(await keys.current(), undefined);
      assert.equal(seen.length, 2);
      assert.equal(keys.lastAttemptFailed(), false);
    });

    it('re-fetches for an unknown kid at most once per cooldown, counted to the millisecond', async () => {
      const clock = frozenClock();
      const keys = keysFor({ name: 'k', issuer: base, jwksUri: `${base}/jwks`, cooldownSeconds: 5 }, clock);
      await keys.load();
      assert.equal(await keys.refetchForUnknownKid(), 'refreshed');
      clock.set(clock() + 5_000 - 1);
      assert.equal(await keys.refetchForUnknownKid(), 'cooling-down');
      clock.set(clock() + 1);
      handler = json({}, 500);
      assert.equal(await keys.refetchForUnknownKid(), 'failed');
      assert.equal(seen.length, 3);
    });

    it('joins a load in flight: an unknown kid then reports what that load achieved', async () => {
      let release: () => void = () => {};
      handler = (req, res) => {
        release = () => json(jwksOf([key, other]))(req, res);
      };
      const keys = keysFor({ name: 'l', issuer: base, jwksUri: `${base}/jwks` });
      const loading = keys.load();
      while (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
      const joined = keys.refetchForUnknownKid();
      release();
      assert.equal(await joined, 'refreshed');
      assert.equal(await loading, true);
      assert.equal(seen.length, 1);
    });
  });

  describe('when the endpoint serves a SPIFFE bundle', () => {
    it('uses jwt-svid keys as signing keys, drops x509-svid ones, and leaves plain key sets alone', async () => {
      const bundle = {
        spiffe_sequence: 1,
        keys: [
          { ...key.publicJwk, use: 'jwt-svid' },
          { ...other.publicJwk, use: 'x509-svid' },
        ],
      };
      handler = json(bundle);
      const keys = keysFor({ name: 'm', issuer: base, jwksUri: `${base}/jwks` });
      const lookup = await keys.current();
      assert.ok(lookup !== undefined);
      await lookup({ alg: 'RS256', kid: 'k-1' });
      await assert.rejects(lookup({ alg: 'RS256', kid: 'k-2' }));
    });
  });
});
