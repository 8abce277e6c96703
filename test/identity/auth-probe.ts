/**
 * A tiny HTTP server that runs `authenticate(req.headersDistinct)` and answers
 * what happened as JSON, so identity tests go over real HTTP: 200
 * `{serviceAccount, subject, …}` or the error's status with `{code}` (401s
 * carry `WWW-Authenticate`, as the real server's do).
 */
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { toModelgateError } from '../../src/errors.ts';
import type { TokenAuthenticator } from '../../src/identity/authenticator.ts';

export interface AuthProbe {
  url: string;
  /** GETs the probe with these headers (`Authorization: Bearer <token>` for a string). */
  call(auth: string | Record<string, string>): Promise<ProbeResponse>;
  /**
   * Sends raw header lines (`['authorization', 'Bearer a', 'authorization', 'Bearer b']`):
   * fetch would merge repeated headers into one line.
   */
  callRaw(rawHeaders: string[]): Promise<ProbeResponse>;
  close(): Promise<void>;
}

export interface ProbeResponse {
  status: number;
  body: ProbeBody;
  /** Lowercase header names. */
  headers: Record<string, string | string[] | undefined>;
}

export interface ProbeBody {
  code?: string;
  serviceAccount?: string;
  subject?: string;
  issuerName?: string;
  namespace?: string;
  pod?: { name?: string; uid?: string };
}

export async function startAuthProbe(authenticator: TokenAuthenticator): Promise<AuthProbe> {
  // maxHeaderSize above 16 KiB so the authenticator, not Node, judges oversized tokens.
  const server = createServer({ maxHeaderSize: 64 * 1024 }, async (req, res) => {
    try {
      const principal = await authenticator.authenticate(req.headersDistinct);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(principal));
    } catch (thrown) {
      const error = toModelgateError(thrown);
      res
        .writeHead(error.status, { 'content-type': 'application/json', ...error.headers })
        .end(JSON.stringify({ code: error.code }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url,
    async call(auth) {
      const headers = typeof auth === 'string' ? { authorization: `Bearer ${auth}` } : auth;
      const response = await fetch(url, { headers });
      return {
        status: response.status,
        body: (await response.json()) as ProbeBody,
        headers: Object.fromEntries(response.headers),
      };
    },
    callRaw(rawHeaders) {
      return new Promise((resolve, reject) => {
        // Node adds no Host header to raw-array headers, and a request without one is a 400.
        const host = new URL(url).host;
        const req = request(url, { headers: ['host', host, ...rawHeaders] }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as ProbeBody,
              headers: res.headers,
            }),
          );
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
