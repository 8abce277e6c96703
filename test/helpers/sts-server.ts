/**
 * A local AWS STS endpoint on 127.0.0.1 answering `AssumeRoleWithWebIdentity`
 * (the awsQuery protocol: a form-encoded POST, an XML answer), for the
 * web-identity credential test: the SDK reads AWS_WEB_IDENTITY_TOKEN_FILE and
 * AWS_ROLE_ARN, and AWS_ENDPOINT_URL_STS points its STS client here. The
 * server issues temporary credentials only for the expected token and role,
 * and registers them with the SigV4 origin so it accepts requests signed with
 * them (and nothing else).
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { OriginCredentials } from './sigv4-origin.ts';

export interface StsCall {
  action: string | null;
  roleArn: string | null;
  roleSessionName: string | null;
  webIdentityToken: string | null;
  /** 200 when credentials were issued, else the status answered. */
  status: number;
}

export interface StsServer {
  readonly url: string;
  calls(): readonly StsCall[];
  /** The temporary credentials issued so far. */
  issued(): readonly OriginCredentials[];
  close(): Promise<void>;
}

export async function startStsServer(options: {
  expectedToken: string;
  expectedRoleArn: string;
  onIssue: (credentials: OriginCredentials) => void;
}): Promise<StsServer> {
  const calls: StsCall[] = [];
  const issued: OriginCredentials[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const query = new URLSearchParams(req.url?.split('?')[1] ?? '');
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const field = (name: string) => form.get(name) ?? query.get(name);
      const call: StsCall = {
        action: field('Action'),
        roleArn: field('RoleArn'),
        roleSessionName: field('RoleSessionName'),
        webIdentityToken: field('WebIdentityToken'),
        status: 0,
      };
      calls.push(call);
      const fail = (status: number, code: string) => {
        call.status = status;
        const body = `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${code}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>`;
        res.writeHead(status, { 'content-type': 'text/xml' }).end(body);
      };
      if (req.method !== 'POST' || call.action !== 'AssumeRoleWithWebIdentity') {
        return fail(400, 'InvalidAction');
      }
      if (call.webIdentityToken !== options.expectedToken) return fail(400, 'InvalidIdentityToken');
      if (call.roleArn !== options.expectedRoleArn) return fail(403, 'AccessDenied');
      const credentials: OriginCredentials = {
        accessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
        secretAccessKey: randomBytes(30).toString('base64'),
        sessionToken: randomBytes(48).toString('base64'),
      };
      issued.push(credentials);
      options.onIssue(credentials);
      call.status = 200;
      const expiration = new Date(Date.now() + 3600_000).toISOString();
      const body = `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:modelgate:modelgate</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>${call.roleArn}/${call.roleSessionName ?? 'session'}</Arn>
      <AssumedRoleId>AROATEST:${call.roleSessionName ?? 'session'}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>${credentials.accessKeyId}</AccessKeyId>
      <SecretAccessKey>${credentials.secretAccessKey}</SecretAccessKey>
      <SessionToken>${credentials.sessionToken}</SessionToken>
      <Expiration>${expiration}</Expiration>
    </Credentials>
    <Audience>sts.amazonaws.com</Audience>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>`;
      res.writeHead(200, { 'content-type': 'text/xml' }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls: () => calls,
    issued: () => issued,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
