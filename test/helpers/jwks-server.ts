/**
 * A real JWKS / OIDC discovery endpoint on 127.0.0.1 for tests.
 *
 * Serves `GET {issuerPath}/.well-known/openid-configuration` (naming
 * `issuer` and `jwks_uri`) and `GET /keys` (the JWKS). Tests change the keys
 * while it runs, count fetches, slow it down, make it fail, or stop and
 * restart it on the same port to simulate an issuer outage.
 *
 * ```ts
 * const jwks = await startJwksServer({ keys: [key] });
 * // issuer config: { issuer: jwks.issuer, jwksUri: jwks.jwksUri } or { issuer: jwks.issuer, discovery: true }
 * after(() => jwks.close());
 * ```
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jwksOf, type TestKey } from './tokens.ts';

export interface JwksServerOptions {
  /** Keys served at start. */
  keys?: readonly TestKey[];
  /** Path of the issuer under the origin, e.g. `/id/ABC123` (EKS-style); default none. */
  issuerPath?: string;
  /** Milliseconds to wait before answering each request. */
  delayMs?: number;
}

export interface JwksServer {
  /** `http://127.0.0.1:<port><issuerPath>`: use as the issuer's `iss` and for discovery. */
  readonly issuer: string;
  /** `http://127.0.0.1:<port>/keys`. */
  readonly jwksUri: string;
  /** Replaces the served keys (rotation). */
  setKeys(keys: readonly TestKey[]): void;
  addKey(key: TestKey): void;
  removeKey(kid: string): void;
  /** Requests to `/keys` so far. */
  keyFetches(): number;
  /** Requests to the discovery document so far. */
  discoveryFetches(): number;
  /** Delay every answer by this many milliseconds (0 for none). */
  setDelay(ms: number): void;
  /** Answer every request with this HTTP status instead (undefined to serve normally). */
  setFailure(status: number | undefined): void;
  /** Closes the listener and every open connection: fetches now get ECONNREFUSED. */
  stop(): Promise<void>;
  /** Listens again on the same port after `stop()`. */
  restart(): Promise<void>;
  /** Stops for good; safe to call twice. */
  close(): Promise<void>;
}

/** Starts a JWKS server on 127.0.0.1, port 0. */
export async function startJwksServer(options: JwksServerOptions = {}): Promise<JwksServer> {
  let keys: TestKey[] = [...(options.keys ?? [])];
  let delayMs = options.delayMs ?? 0;
  let failure: number | undefined;
  let keyCount = 0;
  let discoveryCount = 0;
  const issuerPath = options.issuerPath ?? '';
  let origin = '';

  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const isKeys = req.method === 'GET' && path === '/keys';
    const isDiscovery = req.method === 'GET' && path === `${issuerPath}/.well-known/openid-configuration`;
    if (isKeys) keyCount++;
    if (isDiscovery) discoveryCount++;
    const answer = () => {
      if (res.destroyed) return;
      if (failure !== undefined) {
        res.writeHead(failure, { 'content-type': 'text/plain' }).end('failure injected by test');
      } else if (isKeys) {
        res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify(jwksOf(keys)));
      } else if (isDiscovery) {
        const document = {
          issuer: `${origin}${issuerPath}`,
          jwks_uri: `${origin}/keys`,
          response_types_supported: ['id_token'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256', 'ES256', 'EdDSA'],
        };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(document));
      } else {
        res.writeHead(404).end();
      }
    };
    if (delayMs > 0) setTimeout(answer, delayMs).unref();
    else answer();
  });

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      server.closeAllConnections();
    });

  await listen(0);
  const { port } = server.address() as AddressInfo;
  origin = `http://127.0.0.1:${port}`;

  return {
    issuer: `${origin}${issuerPath}`,
    jwksUri: `${origin}/keys`,
    setKeys(next) {
      keys = [...next];
    },
    addKey(key) {
      keys.push(key);
    },
    removeKey(kid) {
      keys = keys.filter((key) => key.kid !== kid);
    },
    keyFetches: () => keyCount,
    discoveryFetches: () => discoveryCount,
    setDelay(ms) {
      delayMs = ms;
    },
    setFailure(status) {
      failure = status;
    },
    stop,
    restart: () => listen(port),
    close: stop,
  };
}
