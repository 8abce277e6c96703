/**
 * A local Google OAuth 2.0 token endpoint for the GCS credential test: it
 * takes the JWT-bearer grant a service-account key produces
 * (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`), verifies the
 * assertion's RS256 signature with the service account's public key (and its
 * issuer, audience and expiry), and issues a random access token.
 *
 * Why it also answers as https://www.googleapis.com: the installed
 * google-auth-library (9.x, through gtoken 7.1) ignores the key file's
 * `token_uri` and posts to the hard-coded
 * `https://www.googleapis.com/oauth2/v4/token`. So the endpoint is also an
 * HTTPS CONNECT proxy on 127.0.0.1 that terminates TLS for that host with a
 * certificate from a throw-away CA (generated here with openssl); the child
 * process under test gets `HTTPS_PROXY` and `NODE_EXTRA_CA_CERTS`. Nothing
 * leaves the machine: the proxy never connects anywhere, it answers itself.
 */
import { execFileSync } from 'node:child_process';
import { type KeyObject, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TLSSocket } from 'node:tls';
import { jwtVerify } from 'jose';

/** Where gtoken 7.1 sends the grant, whatever `token_uri` says. */
export const GOOGLE_TOKEN_URL = 'https://www.googleapis.com/oauth2/v4/token';
const INTERCEPTED_HOSTS = new Set([
  'www.googleapis.com',
  'oauth2.googleapis.com',
  'login.microsoftonline.com',
]);

export interface TokenExchange {
  /** 'direct' (plain HTTP to the local URL) or 'intercepted' (HTTPS through the proxy). */
  via: 'direct' | 'intercepted';
  /** The issuer of the assertion, when it verified. */
  issuer: string | undefined;
  scope: string | undefined;
  /** The access token issued, or undefined when refused. */
  accessToken: string | undefined;
  status: number;
}

export interface OAuthTokenServer {
  /** `http://127.0.0.1:<port>`: the direct token URL is `${url}/token`, the proxy is `url` too. */
  readonly url: string;
  /** PEM file of the throw-away CA, for NODE_EXTRA_CA_CERTS. */
  readonly caFile: string;
  /** A certificate (and key) from that CA for the intercepted hosts and 127.0.0.1. */
  readonly tls: { cert: Buffer; key: Buffer };
  exchanges(): readonly TokenExchange[];
  /** True when this access token was issued here and is unexpired. */
  isIssued(accessToken: string): boolean;
  close(): Promise<void>;
}

async function makeCertificates(dir: string): Promise<{ caFile: string; cert: Buffer; key: Buffer }> {
  const file = (name: string) => join(dir, name);
  const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(
    ['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=modelgate test CA', '-keyout', file('ca.key')]
      .concat(['-out', file('ca.crt'), '-addext', 'basicConstraints=critical,CA:TRUE'])
      .concat(['-addext', 'keyUsage=critical,keyCertSign']),
  );
  openssl([
    'req',
    ...ec,
    '-subj',
    '/CN=www.googleapis.com',
    '-keyout',
    file('leaf.key'),
    '-out',
    file('leaf.csr'),
  ]);
  await writeFile(
    file('leaf.ext'),
    // 127.0.0.1 too: the same certificate serves the HTTPS blob origin of the Azure test.
    `subjectAltName=${[...INTERCEPTED_HOSTS].map((h) => `DNS:${h}`).join(',')},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n`,
  );
  openssl(
    ['x509', '-req', '-in', file('leaf.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key')].concat([
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      file('leaf.ext'),
      '-out',
      file('leaf.crt'),
    ]),
  );
  return {
    caFile: file('ca.crt'),
    cert: await readFile(file('leaf.crt')),
    key: await readFile(file('leaf.key')),
  };
}

export async function startOAuthTokenServer(options: {
  /** The service account's public key: assertions signed by anything else are refused. */
  publicKey: KeyObject;
  clientEmail: string;
  /** The audiences accepted: the key's `token_uri`, and Google's fixed URL. */
  audiences: string[];
  /** An Entra ID (Azure AD) app registration whose client-credentials grant is honoured too. */
  entra?: { tenantId: string; clientId: string; clientSecret: string };
}): Promise<OAuthTokenServer> {
  const dir = await mkdtemp(join(tmpdir(), 'modelgate-oauth-'));
  const { caFile, cert, key } = await makeCertificates(dir);
  const exchanges: TokenExchange[] = [];
  const issued = new Map<string, number>();

  async function grant(req: IncomingMessage, res: ServerResponse, via: TokenExchange['via']): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    const exchange: TokenExchange = {
      via,
      issuer: undefined,
      scope: undefined,
      accessToken: undefined,
      status: 0,
    };
    exchanges.push(exchange);
    const answer = (status: number, body: Record<string, unknown>) => {
      exchange.status = status;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const path = (req.url ?? '').split('?')[0] ?? '';
    const entraPath =
      options.entra !== undefined &&
      (path.startsWith(`/${options.entra.tenantId}/`) || path.startsWith('/common/'));
    if (entraPath) {
      return entraGrant(req, path, form, exchange, answer);
    }
    if (req.method !== 'POST' || (path !== '/token' && path !== '/oauth2/v4/token')) {
      return answer(404, { error: 'not_found' });
    }
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      return answer(400, { error: 'unsupported_grant_type' });
    }
    try {
      const { payload } = await jwtVerify(form.get('assertion') ?? '', options.publicKey, {
        algorithms: ['RS256'],
        issuer: options.clientEmail,
        audience: options.audiences,
      });
      exchange.issuer = String(payload.iss);
      exchange.scope = typeof payload.scope === 'string' ? payload.scope : undefined;
    } catch (error) {
      return answer(400, { error: 'invalid_grant', error_description: String(error) });
    }
    const accessToken = `ya29.test-${randomBytes(24).toString('base64url')}`;
    issued.set(accessToken, Date.now() + 3600_000);
    exchange.accessToken = accessToken;
    answer(200, { access_token: accessToken, expires_in: 3600, token_type: 'Bearer' });
  }

  /** Entra ID: instance discovery, OpenID metadata, and the client-credentials grant. */
  function entraGrant(
    req: IncomingMessage,
    path: string,
    form: URLSearchParams,
    exchange: TokenExchange,
    answer: (status: number, body: Record<string, unknown>) => void,
  ) {
    const entra = options.entra;
    if (entra === undefined) return answer(404, { error: 'not_found' });
    const authority = `https://login.microsoftonline.com/${entra.tenantId}`;
    if (path === '/common/discovery/instance') {
      return answer(200, {
        tenant_discovery_endpoint: `${authority}/v2.0/.well-known/openid-configuration`,
        'api-version': '1.1',
        metadata: [
          {
            preferred_network: 'login.microsoftonline.com',
            preferred_cache: 'login.windows.net',
            aliases: ['login.microsoftonline.com', 'login.windows.net'],
          },
        ],
      });
    }
    if (path === `/${entra.tenantId}/v2.0/.well-known/openid-configuration`) {
      return answer(200, {
        token_endpoint: `${authority}/oauth2/v2.0/token`,
        authorization_endpoint: `${authority}/oauth2/v2.0/authorize`,
        end_session_endpoint: `${authority}/oauth2/v2.0/logout`,
        issuer: `${authority}/v2.0`,
        jwks_uri: `${authority}/discovery/v2.0/keys`,
      });
    }
    if (req.method !== 'POST' || path !== `/${entra.tenantId}/oauth2/v2.0/token`) {
      return answer(404, { error: 'not_found' });
    }
    if (form.get('grant_type') !== 'client_credentials')
      return answer(400, { error: 'unsupported_grant_type' });
    if (form.get('client_id') !== entra.clientId || form.get('client_secret') !== entra.clientSecret) {
      return answer(401, {
        error: 'invalid_client',
        error_description: 'AADSTS7000215: Invalid client secret.',
      });
    }
    exchange.issuer = entra.clientId;
    exchange.scope = form.get('scope') ?? undefined;
    const accessToken = `eyJ0eXAiOiJKV1QifQ.test-${randomBytes(24).toString('base64url')}.sig`;
    issued.set(accessToken, Date.now() + 3600_000);
    exchange.accessToken = accessToken;
    answer(200, { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, access_token: accessToken });
  }

  const onRequest = (via: TokenExchange['via']) => (req: IncomingMessage, res: ServerResponse) => {
    grant(req, res, via).catch(() => res.destroy());
  };
  // The TLS side: requests to www.googleapis.com arrive here, decrypted.
  const intercepted = createServer(onRequest('intercepted'));
  const server = createServer(onRequest('direct'));
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    const [host = '', port = ''] = (req.url ?? '').split(':');
    if (!INTERCEPTED_HOSTS.has(host) || port !== '443') {
      socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    const tls = new TLSSocket(socket, { isServer: true, cert, key });
    intercepted.emit('connection', tls);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    caFile,
    tls: { cert, key },
    exchanges: () => exchanges,
    isIssued: (token) => (issued.get(token) ?? 0) > Date.now(),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
