/**
 * The Azure store's credential path beyond connection strings, run for real
 * and offline: an account configured with neither connection string nor key
 * uses DefaultAzureCredential, whose EnvironmentCredential takes a client
 * secret from AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET and
 * runs MSAL's client-credentials grant. The token endpoint is local (the
 * login host is answered on 127.0.0.1 through HTTPS_PROXY, with a throw-away
 * CA in NODE_EXTRA_CA_CERTS; see oauth-token-server.ts), and the HTTPS blob
 * origin answers 401 to any request without the bearer token it issued.
 * Each case runs in a child process (the variables are process-wide).
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { type BlobOrigin, startBlobOrigin } from '../helpers/blob-origin.ts';
import {
  GOOGLE_TOKEN_URL,
  type OAuthTokenServer,
  startOAuthTokenServer,
} from '../helpers/oauth-token-server.ts';
import { type ProbeResult, runStoreProbe } from '../helpers/run-store-probe.ts';

const ACCOUNT = 'modelgateacct';
const CONTAINER = 'models';
const BLOB = 'fraud/1.0/model.bin';

describe('Azure credentials from a client secret (DefaultAzureCredential)', () => {
  let oauth: OAuthTokenServer;
  let origin: BlobOrigin;
  const tenantId = randomUUID();
  const clientId = randomUUID();
  const clientSecret = randomBytes(24).toString('base64url');
  const bytes = randomBytes(150_000);
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  function probe(secret: string): Promise<ProbeResult> {
    return runStoreProbe({
      stores: {
        azure: {
          accounts: { [ACCOUNT]: { endpoint: `${origin.url}/${ACCOUNT}` } },
          maxSockets: 4,
          timeouts: { connectSeconds: 2, firstByteSeconds: 10, idleSeconds: 10 },
        },
      },
      location: `az://${ACCOUNT}/${CONTAINER}/${BLOB}`,
      dropEnv: /^(AZURE_|IDENTITY_|MSI_|HTTPS?_PROXY$|NO_PROXY$)/i,
      env: {
        AZURE_TENANT_ID: tenantId,
        AZURE_CLIENT_ID: clientId,
        AZURE_CLIENT_SECRET: secret,
        HTTPS_PROXY: oauth.url,
        NO_PROXY: '127.0.0.1,localhost',
        NODE_EXTRA_CA_CERTS: oauth.caFile,
      },
      timeoutMs: 90_000,
    });
  }

  before(async () => {
    oauth = await startOAuthTokenServer({
      publicKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
      clientEmail: 'unused@example.invalid',
      audiences: [GOOGLE_TOKEN_URL],
      entra: { tenantId, clientId, clientSecret },
    });
    origin = await startBlobOrigin({
      tls: oauth.tls,
      tenantId,
      authorize: (authorization) => {
        const match = /^Bearer (.+)$/.exec(authorization ?? '');
        return match !== null && oauth.isIssued(match[1] ?? '');
      },
    });
    origin.putBlob(ACCOUNT, CONTAINER, BLOB, bytes);
  });
  after(async () => {
    await origin?.close();
    await oauth?.close();
  });

  describe('when the client secret is right', () => {
    it('obtains a token for storage and sends it as the bearer on every request', async () => {
      const exchangesBefore = oauth.exchanges().length;
      const seenBefore = origin.authorizations().length;
      const result = await probe(clientSecret);
      assert.deepEqual(result, { ok: true, size: bytes.length, sha256 });
      const grants = oauth
        .exchanges()
        .slice(exchangesBefore)
        .filter((e) => e.accessToken !== undefined);
      assert.equal(grants.length, 1, 'one client-credentials grant');
      assert.equal(grants[0]?.issuer, clientId);
      assert.match(grants[0]?.scope ?? '', /https:\/\/storage\.azure\.com\/\.default/);
      const seen = origin.authorizations().slice(seenBefore);
      assert.ok(seen.length >= 2, 'properties and download reached the origin');
      assert.ok(seen.every((a) => a === `Bearer ${grants[0]?.accessToken}`));
    });
  });

  describe('when the client secret is wrong', () => {
    it('fails closed, and the origin never sees a token it issued', async () => {
      const seenBefore = origin.authorizations().length;
      const exchangesBefore = oauth.exchanges().length;
      const result = await probe('not-the-secret');
      assert.equal(result.ok, false);
      assert.ok(
        oauth
          .exchanges()
          .slice(exchangesBefore)
          .some((e) => e.status === 401),
      );
      assert.ok(
        origin
          .authorizations()
          .slice(seenBefore)
          .every((a) => a === undefined || !oauth.isIssued(a.slice(7))),
      );
    });
  });
});
