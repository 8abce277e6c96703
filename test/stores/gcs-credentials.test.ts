/**
 * The GCS store's credential path, run for real and offline: a
 * service-account key file (an RSA key generated here) makes the SDK's
 * google-auth-library sign a JWT-bearer assertion and exchange it for an
 * access token at a local OAuth endpoint that verifies the signature; the GCS
 * test server answers 401 to any request without exactly that bearer token.
 * Each case runs in a child process (HTTPS_PROXY and NODE_EXTRA_CA_CERTS are
 * process-wide; see oauth-token-server.ts for why a proxy is needed at all).
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type GcsServer, startGcsServer } from '../helpers/gcs-server.ts';
import {
  GOOGLE_TOKEN_URL,
  type OAuthTokenServer,
  startOAuthTokenServer,
} from '../helpers/oauth-token-server.ts';
import { type ProbeResult, runStoreProbe } from '../helpers/run-store-probe.ts';

const CLIENT_EMAIL = 'modelgate-reader@test-project.iam.gserviceaccount.com';
const BUCKET = 'models';
const NAME = 'fraud/1.0/model.bin';

describe('GCS credentials from a service-account key file', () => {
  let dir: string;
  let gcs: GcsServer;
  let oauth: OAuthTokenServer;
  let keyFile: string;
  let strangerKeyFile: string;
  const bytes = randomBytes(200_000);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const authorizations: Array<string | undefined> = [];

  function serviceAccountKey(privateKeyPem: string, tokenUri: string): string {
    return JSON.stringify({
      type: 'service_account',
      project_id: 'test-project',
      private_key_id: randomBytes(20).toString('hex'),
      private_key: privateKeyPem,
      client_email: CLIENT_EMAIL,
      client_id: '100000000000000000001',
      token_uri: tokenUri,
    });
  }

  function probe(keyFilename: string | undefined): Promise<ProbeResult> {
    return runStoreProbe({
      stores: {
        gcs: {
          projectId: 'test-project',
          apiEndpoint: gcs.url,
          ...(keyFilename === undefined ? {} : { keyFilename }),
          maxSockets: 4,
          timeouts: { connectSeconds: 2, firstByteSeconds: 10, idleSeconds: 10 },
        },
      },
      location: `gs://${BUCKET}/${NAME}`,
      dropEnv: /^(GOOGLE_|GCLOUD_|HTTPS?_PROXY$|NO_PROXY$)/i,
      env: {
        HTTPS_PROXY: oauth.url,
        NO_PROXY: '127.0.0.1,localhost',
        NODE_EXTRA_CA_CERTS: oauth.caFile,
        // No metadata server: a missing key must not fall back to probing 169.254.169.254.
        METADATA_SERVER_DETECTION: 'none',
      },
      timeoutMs: 60_000,
    });
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-gcs-credentials-'));
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
    oauth = await startOAuthTokenServer({
      publicKey,
      clientEmail: CLIENT_EMAIL,
      audiences: [GOOGLE_TOKEN_URL],
    });
    const pem = (key: typeof privateKey) => key.export({ type: 'pkcs8', format: 'pem' }).toString();
    keyFile = join(dir, 'sa.json');
    await writeFile(keyFile, serviceAccountKey(pem(privateKey), `${oauth.url}/token`));
    strangerKeyFile = join(dir, 'stranger.json');
    await writeFile(strangerKeyFile, serviceAccountKey(pem(stranger.privateKey), `${oauth.url}/token`));
    gcs = await startGcsServer({
      authorize: (authorization) => {
        authorizations.push(authorization);
        const match = /^Bearer (.+)$/.exec(authorization ?? '');
        return match !== null && oauth.isIssued(match[1] ?? '');
      },
    });
    gcs.putObject(BUCKET, NAME, bytes);
  });
  after(async () => {
    await gcs?.close();
    await oauth?.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('when the key file belongs to the service account the token endpoint knows', () => {
    it('exchanges a signed assertion for a token and sends it as the bearer on every request', async () => {
      const exchangesBefore = oauth.exchanges().length;
      const seenBefore = authorizations.length;
      const result = await probe(keyFile);
      assert.deepEqual(result, { ok: true, size: bytes.length, sha256 });
      const exchanges = oauth.exchanges().slice(exchangesBefore);
      assert.equal(exchanges.length, 1, 'one JWT-bearer exchange');
      assert.equal(exchanges[0]?.status, 200);
      assert.equal(exchanges[0]?.issuer, CLIENT_EMAIL);
      assert.match(exchanges[0]?.scope ?? '', /devstorage/);
      const seen = authorizations.slice(seenBefore);
      assert.ok(seen.length >= 2, 'metadata and media requests reached the server');
      assert.ok(seen.every((a) => a === `Bearer ${exchanges[0]?.accessToken}`));
    });
  });

  describe('when the key file holds a key the token endpoint does not know', () => {
    it('fails closed: the assertion is refused and the server is never asked without a token', async () => {
      const exchangesBefore = oauth.exchanges().length;
      const seenBefore = authorizations.length;
      const result = await probe(strangerKeyFile);
      assert.equal(result.ok, false);
      assert.ok(
        oauth
          .exchanges()
          .slice(exchangesBefore)
          .every((e) => e.status === 400),
      );
      assert.ok(oauth.exchanges().length > exchangesBefore, 'the SDK tried the exchange');
      assert.ok(authorizations.slice(seenBefore).every((a) => a !== undefined && !oauth.isIssued(a)));
    });
  });

  describe('when no key file is configured on a loopback endpoint', () => {
    it('sends no Authorization header, and the server refuses with 401 (MG_SOURCE_FAILED)', async () => {
      const seenBefore = authorizations.length;
      const result = await probe(undefined);
      assert.equal(result.ok, false);
      assert.equal(result.code, 'MG_SOURCE_FAILED', result.message);
      const seen = authorizations.slice(seenBefore);
      assert.ok(seen.length >= 1);
      assert.ok(seen.every((a) => a === undefined));
    });
  });
});
