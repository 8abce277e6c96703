import assert from 'node:assert/strict';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createIntakeCommand } from '../../src/commands/intake.ts';
import { parseIdentityHeader } from '../../src/release-headers.ts';
import { type Harness, startHarness } from '../helpers/proxy.ts';

/**
 * Third-party models signed with OMS, taken in with `modelgate intake` and
 * served by a real proxy that re-verifies the upstream evidence at load
 * (upstreamSigners): the manifest response and the audit line name the
 * upstream method and identity (README "Trust").
 */

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'oms');
const keys = (file: string) => join(FIXTURES, 'keys', file);
const IBM = 'https://sigstore.verify.ibm.com/oauth2';
const quiet = { stdout: { write: () => true }, stderr: { write: () => true } };

const CASES = [
  {
    folder: 'v1.1.0-elliptic-key',
    model: 'vendor/key-llm',
    method: 'key',
    trust: ['--public-key', keys('signing-key-pub.pem')],
  },
  {
    folder: 'v1.1.0-certificate',
    model: 'vendor/cert-llm',
    method: 'certificate',
    trust: ['--ca-file', keys('ca-cert.pem')],
  },
  {
    folder: 'v1.1.0-sigstore',
    model: 'vendor/keyless-llm',
    method: 'sigstore',
    trust: [
      '--identity',
      'stefanb@us.ibm.com',
      '--oidc-issuer',
      IBM,
      '--trusted-root',
      join(FIXTURES, 'sigstore-public-good.trusted_root.json'),
    ],
  },
] as const;

describe('OMS-signed models taken in and served', () => {
  let h: Harness;
  const digests = new Map<string, string>();

  before(async () => {
    h = await startHarness({
      grants: [{ models: ['vendor/**'], environments: ['prod'] }],
      config: {
        upstreamSigners: [
          { name: 'vendor-key', publicKeyFile: keys('signing-key-pub.pem'), models: ['vendor/key-*'] },
          { name: 'vendor-ca', certificate: { caFile: keys('ca-cert.pem') }, models: ['vendor/cert-*'] },
          {
            name: 'vendor-keyless',
            sigstore: {
              trustedRoot: join(FIXTURES, 'sigstore-public-good.trusted_root.json'),
              identities: [{ issuer: IBM, subject: 'stefanb@us.ibm.com' }],
            },
            models: ['vendor/keyless-*'],
          },
        ],
      },
    });
    const keyFile = join(h.dir, 'release.private.jwk.json');
    await writeFile(keyFile, JSON.stringify(h.signer.privateJwk));
    for (const c of CASES) {
      const dir = join(FIXTURES, c.folder);
      // The store holds the vendor's files where the release's sources point.
      await cp(dir, join(h.root, c.model), { recursive: true });
      const code = await createIntakeCommand(quiet).run([
        dir,
        '--oms',
        join(dir, 'model.sig'),
        '--ignore-path',
        join(dir, 'ignore-me'),
        '--model',
        c.model,
        '--version',
        '1',
        '--environment',
        'prod',
        '--source-prefix',
        `file:${c.model}`,
        '--key',
        keyFile,
        '--out',
        h.catalogDir,
        ...c.trust,
      ]);
      assert.equal(code, 0, `intake of ${c.folder}`);
    }
    await h.app.reload();
    for (const c of CASES)
      digests.set(c.model, h.app.catalog.resolve(c.model, { kind: 'version', version: '1' }).digest);
  });

  after(async () => {
    await h.stop();
  });

  for (const c of CASES) {
    it(`serves the ${c.method} fixture with the upstream method and identity on the manifest and the audit line`, async () => {
      const digest = digests.get(c.model) ?? '';
      const manifest = await h.request(`/v1/models/${c.model}/releases/${digest}`);
      assert.equal(manifest.status, 200);
      const upstream = parseIdentityHeader(manifest.headers.get('modelgate-release-upstream') ?? undefined);
      assert.equal(upstream?.method, c.method);
      assert.equal(upstream?.format, 'oms/v1.0');
      assert.ok((upstream?.identity ?? '').length > 0);
      const file = await h.request(`/v1/models/${c.model}/releases/${digest}/files/signme-1`);
      assert.equal(file.status, 200);
      const body = Buffer.from(await file.arrayBuffer());
      assert.ok(body.equals(await readFile(join(FIXTURES, c.folder, 'signme-1'))));
      const line = h.logs.findLast(
        (l) => l.event === 'retrieval' && l.release === digest && l.file === 'signme-1',
      );
      assert.equal((line?.upstream as { method?: string } | undefined)?.method, c.method);
      assert.equal((line?.upstream as { identity?: string } | undefined)?.identity, upstream?.identity);
    });
  }
});
