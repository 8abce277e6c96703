/**
 * The S3 store's credential chain, run for real and offline: with no
 * `credentials` in the configuration the SDK's default chain applies, so the
 * store is configured exactly as in production and the environment decides.
 * Every case runs in a child process of its own (the AWS_* variables are
 * process-wide), against an origin that verifies SigV4 signatures and a local
 * STS endpoint for the web-identity flow (AssumeRoleWithWebIdentity).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ProbeResult, runStoreProbe } from '../helpers/run-store-probe.ts';
import { type SigV4Origin, startSigV4Origin } from '../helpers/sigv4-origin.ts';
import { type StsServer, startStsServer } from '../helpers/sts-server.ts';

const ROLE_ARN = 'arn:aws:iam::123456789012:role/modelgate-reader';
const BUCKET = 'models';
const KEY = 'fraud/1.0/model.bin';

describe('S3 credentials from the default chain', () => {
  let dir: string;
  let origin: SigV4Origin;
  let sts: StsServer;
  let tokenFile: string;
  const bytes = randomBytes(300_000);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const webIdentityToken = `eyJhbGciOiJSUzI1NiJ9.${randomBytes(24).toString('base64url')}.sig`;

  /** Runs the probe with only these AWS_* variables (none inherited) and no shared config files or IMDS. */
  function probe(env: Record<string, string>): Promise<ProbeResult> {
    return runStoreProbe({
      stores: {
        s3: {
          region: 'us-east-1',
          endpoint: origin.url,
          forcePathStyle: true,
          maxSockets: 4,
          timeouts: { connectSeconds: 2, firstByteSeconds: 10, idleSeconds: 10 },
        },
      },
      location: `s3://${BUCKET}/${KEY}`,
      dropEnv: /^AWS_/,
      env: {
        AWS_CONFIG_FILE: join(dir, 'no-config'),
        AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-credentials'),
        AWS_EC2_METADATA_DISABLED: 'true',
        ...env,
      },
      timeoutMs: 60_000,
    });
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-s3-credentials-'));
    tokenFile = join(dir, 'token');
    await writeFile(tokenFile, webIdentityToken);
    origin = await startSigV4Origin();
    origin.addCredentials({ accessKeyId: 'AKIDENVIRONMENT01', secretAccessKey: 'env-secret-0123456789' });
    origin.putObject(BUCKET, KEY, bytes);
    sts = await startStsServer({
      expectedToken: webIdentityToken,
      expectedRoleArn: ROLE_ARN,
      onIssue: (credentials) => origin.addCredentials(credentials),
    });
  });
  after(async () => {
    await origin?.close();
    await sts?.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('when AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set', () => {
    it('signs every request with them, and the verifying origin serves the object', async () => {
      const before = origin.requests().length;
      const result = await probe({
        AWS_ACCESS_KEY_ID: 'AKIDENVIRONMENT01',
        AWS_SECRET_ACCESS_KEY: 'env-secret-0123456789',
      });
      assert.deepEqual(result, { ok: true, size: bytes.length, sha256 });
      const seen = origin.requests().slice(before);
      assert.ok(seen.length >= 2, 'a HEAD and a GET reached the origin');
      assert.ok(seen.every((r) => r.accessKeyId === 'AKIDENVIRONMENT01' && r.verdict === 'ok'));
    });
  });

  describe('when the environment holds a wrong secret for a known key', () => {
    it('is refused by the origin: the signature is really checked', async () => {
      const before = origin.requests().length;
      const result = await probe({
        AWS_ACCESS_KEY_ID: 'AKIDENVIRONMENT01',
        AWS_SECRET_ACCESS_KEY: 'not-the-secret',
      });
      assert.equal(result.ok, false);
      assert.equal(result.code, 'MG_SOURCE_FAILED', result.message);
      const seen = origin.requests().slice(before);
      assert.ok(seen.length >= 1);
      assert.ok(seen.every((r) => r.verdict === 'SignatureDoesNotMatch'));
    });
  });

  describe('when a web-identity token file and a role ARN are set (IRSA)', () => {
    it('exchanges the token at STS and signs with the temporary credentials and session token', async () => {
      const before = origin.requests().length;
      const callsBefore = sts.calls().length;
      const result = await probe({
        AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
        AWS_ROLE_ARN: ROLE_ARN,
        AWS_ROLE_SESSION_NAME: 'modelgate-test',
        AWS_ENDPOINT_URL_STS: sts.url,
      });
      assert.deepEqual(result, { ok: true, size: bytes.length, sha256 });
      const calls = sts.calls().slice(callsBefore);
      assert.equal(calls.length, 1, 'one AssumeRoleWithWebIdentity call');
      assert.deepEqual(
        { ...calls[0], status: calls[0]?.status },
        {
          action: 'AssumeRoleWithWebIdentity',
          roleArn: ROLE_ARN,
          roleSessionName: 'modelgate-test',
          webIdentityToken,
          status: 200,
        },
      );
      const issued = sts.issued().at(-1);
      const seen = origin.requests().slice(before);
      assert.ok(seen.length >= 2);
      // The origin checked the signature with the issued secret and the session token (see sigv4-origin.ts).
      assert.ok(seen.every((r) => r.accessKeyId === issued?.accessKeyId && r.verdict === 'ok'));
    });

    it('fails closed when STS refuses the token, and sends the origin nothing signed', async () => {
      const wrongToken = join(dir, 'wrong-token');
      await writeFile(wrongToken, 'not-the-token');
      const before = origin.requests().length;
      const result = await probe({
        AWS_WEB_IDENTITY_TOKEN_FILE: wrongToken,
        AWS_ROLE_ARN: ROLE_ARN,
        AWS_ENDPOINT_URL_STS: sts.url,
      });
      assert.equal(result.ok, false);
      assert.equal(sts.calls().at(-1)?.status, 400);
      assert.ok(
        origin
          .requests()
          .slice(before)
          .every((r) => r.verdict !== 'ok'),
      );
    });
  });
});
