import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { loadSigner, verifyRelease } from '../../src/catalog/signature.ts';
import type { Command } from '../../src/commands/command.types.ts';
import { createIntakeCommand } from '../../src/commands/intake.ts';
import { createKeygenCommand } from '../../src/commands/keygen.ts';
import { createVerifyCommand } from '../../src/commands/verify.ts';
import { parseBundle } from '../../src/trust/bundle.ts';
import { createVerifier } from '../../src/trust/verifier.ts';
import { makeRoot } from '../trust/test-pki.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'oms');

async function run(
  factory: typeof createVerifyCommand,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const command: Command = factory({
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  });
  const code = await command.run(args);
  return { code, stdout, stderr };
}

interface Method {
  folder: string;
  trust: () => string[];
  wrong: Array<[string, () => string[]]>;
  method: 'key' | 'certificate' | 'sigstore';
  identity: string;
  issuer?: string;
}

const keys = (file: string) => join(FIXTURES, 'keys', file);
const publicGood = join(FIXTURES, 'sigstore-public-good.trusted_root.json');
const IBM = 'https://sigstore.verify.ibm.com/oauth2';

let root: string;
let otherCa: string;
let otherKey: string;

const METHODS: Method[] = [
  {
    folder: 'v1.1.0-elliptic-key',
    trust: () => ['--public-key', keys('signing-key-pub.pem')],
    wrong: [['key', () => ['--public-key', otherKey]]],
    method: 'key',
    identity: 'sha256:e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e',
  },
  {
    folder: 'v1.1.0-certificate',
    trust: () => ['--ca-file', keys('ca-cert.pem')],
    wrong: [
      ['CA', () => ['--ca-file', otherCa]],
      ['key', () => ['--public-key', keys('signing-key-pub.pem')]],
    ],
    method: 'certificate',
    identity: 'CN=intermediate-ca',
    issuer: 'CN=root-ca',
  },
  {
    folder: 'v1.1.0-sigstore',
    trust: () => ['--identity', 'stefanb@us.ibm.com', '--oidc-issuer', IBM, '--trusted-root', publicGood],
    wrong: [
      [
        'identity',
        () => ['--identity', 'mallory@us.ibm.com', '--oidc-issuer', IBM, '--trusted-root', publicGood],
      ],
      [
        'issuer',
        () => [
          '--identity',
          'stefanb@us.ibm.com',
          '--oidc-issuer',
          'https://accounts.google.com',
          '--trusted-root',
          publicGood,
        ],
      ],
    ],
    method: 'sigstore',
    identity: 'stefanb@us.ibm.com',
    issuer: IBM,
  },
];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'modelgate-oms-'));
  const { generateKeyPairSync } = await import('node:crypto');
  otherKey = join(root, 'other-key.pem');
  await writeFile(
    otherKey,
    generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }),
  );
  // A CA that did not issue the fixture's chain (the fixture's intermediate would be a valid anchor).
  otherCa = makeRoot(root, 'other-ca').certFile;
  const keygen = await run(createKeygenCommand, ['--out', join(root, 'keys'), '--name', 'intake']);
  assert.equal(keygen.code, 0, keygen.stderr);
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

for (const method of METHODS) {
  describe(`when the ${method.method} fixture ${method.folder} is verified with verify --oms`, () => {
    let model: string;
    let sig: string;

    beforeEach(async () => {
      model = await mkdtemp(join(root, `${method.folder}-`));
      await cp(join(FIXTURES, method.folder), model, { recursive: true });
      sig = join(model, 'model.sig');
    });

    const verify = (trust: string[], extra: string[] = []) =>
      run(createVerifyCommand, ['--oms', sig, model, ...trust, ...extra]);

    it('exits 0 with the trust of the fixtures README and prints method, identity and files', async () => {
      const result = await verify(method.trust(), ['--ignore-path', join(model, 'ignore-me')]);
      assert.equal(result.code, 0, result.stderr);
      assert.ok(result.stdout.includes(`(oms/v1.0, ${method.method})`));
      assert.ok(result.stdout.includes(method.identity));
      assert.ok(result.stdout.includes('files        2 match'));
    });

    it('takes --ignore-path relative to the current folder', async () => {
      const result = await verify(method.trust(), [
        '--ignore-path',
        relative(process.cwd(), join(model, 'ignore-me')),
      ]);
      assert.equal(result.code, 0, result.stderr);
    });

    it('exits 4 when a file the signature does not list is present (ignore-me, not ignored)', async () => {
      const result = await verify(method.trust());
      assert.equal(result.code, 4, result.stderr);
      assert.ok(result.stderr.includes('unlisted: ignore-me'));
    });

    it('exits 4 when one byte of signme-1 changed', async () => {
      const file = join(model, 'signme-1');
      const bytes = await readFile(file);
      bytes[0] = (bytes[0] ?? 0) ^ 1;
      await writeFile(file, bytes);
      const result = await verify(method.trust(), ['--ignore-path', join(model, 'ignore-me')]);
      assert.equal(result.code, 4, result.stderr);
      assert.ok(result.stderr.includes('changed: signme-1'));
    });

    it('exits 4 when a file is added, and 0 when it is passed as --ignore-path', async () => {
      await mkdir(join(model, 'extra'));
      await writeFile(join(model, 'extra', 'added.bin'), 'not signed');
      const ignoreMe = ['--ignore-path', join(model, 'ignore-me')];
      const added = await verify(method.trust(), ignoreMe);
      assert.equal(added.code, 4, added.stderr);
      assert.ok(added.stderr.includes('unlisted: extra/added.bin'));
      const ignored = await verify(method.trust(), [...ignoreMe, '--ignore-path', join(model, 'extra')]);
      assert.equal(ignored.code, 0, ignored.stderr);
    });

    it('exits 4 when a signed file is missing', async () => {
      await rm(join(model, 'signme-2'));
      const result = await verify(method.trust(), ['--ignore-path', join(model, 'ignore-me')]);
      assert.equal(result.code, 4, result.stderr);
      assert.ok(result.stderr.includes('missing: signme-2'));
    });

    it('exits 3 when the statement payload changed and the signature was kept', async () => {
      const bundle = JSON.parse(await readFile(sig, 'utf8'));
      const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString());
      statement.predicate.resources[0].digest = '0'.repeat(64);
      bundle.dsseEnvelope.payload = Buffer.from(JSON.stringify(statement)).toString('base64');
      await writeFile(sig, JSON.stringify(bundle));
      const result = await verify(method.trust(), ['--ignore-path', join(model, 'ignore-me')]);
      assert.equal(result.code, 3, result.stderr);
    });

    for (const [what, trust] of method.wrong) {
      it(`exits 3 against the wrong ${what}`, async () => {
        const result = await verify(trust(), ['--ignore-path', join(model, 'ignore-me')]);
        assert.equal(result.code, 3, result.stderr);
      });
    }
  });

  describe(`when the ${method.method} fixture ${method.folder} goes through intake`, () => {
    let out: string;
    const model = join(FIXTURES, method.folder);
    const intakeArgs = (trust: string[]) => [
      model,
      '--oms',
      join(model, 'model.sig'),
      '--model',
      'ngc/demo',
      '--version',
      method.method,
      '--environment',
      'prod',
      '--source-prefix',
      'file:ngc/demo',
      '--key',
      join(root, 'keys', 'intake.private.jwk.json'),
      '--out',
      out,
      '--chunk-size',
      '1MiB',
      '--ignore-path',
      join(model, 'ignore-me'),
      ...trust,
    ];

    beforeEach(async () => {
      out = await mkdtemp(join(root, 'out-'));
    });

    it('writes a chunked release whose manifest carries the verified upstream evidence', async () => {
      const result = await run(createIntakeCommand, intakeArgs(method.trust()));
      assert.equal(result.code, 0, result.stderr);
      const jws = await readFile(join(out, `ngc_demo-${method.method}.jws`), 'utf8');
      const signer = await loadSigner({
        name: 'intake',
        jwksFile: join(root, 'keys', 'intake.jwks.json'),
        environments: ['prod'],
      });
      const { manifest } = await verifyRelease(jws, [signer]);
      assert.deepEqual(
        manifest.files.map((file) => [file.path, file.chunkSize, file.chunks?.length, file.sources]),
        [
          ['signme-1', 1024 * 1024, 1, ['file:ngc/demo/signme-1']],
          ['signme-2', 1024 * 1024, 1, ['file:ngc/demo/signme-2']],
        ],
      );
      const upstream = manifest.upstream;
      assert.ok(upstream);
      assert.equal(upstream.format, 'oms/v1.0');
      assert.equal(upstream.method, method.method);
      assert.equal(upstream.identity, method.identity);
      assert.equal(upstream.issuer, method.issuer);
      // The evidence is the bundle itself: it verifies again with the same trust.
      const original = JSON.parse(await readFile(join(model, 'model.sig'), 'utf8'));
      assert.deepEqual(upstream.bundle, original);
    });

    it('writes nothing and exits 3 against the wrong trust', async () => {
      const [, trust] = method.wrong[0] ?? ['', () => []];
      const result = await run(createIntakeCommand, intakeArgs(trust()));
      assert.equal(result.code, 3, result.stderr);
      assert.deepEqual(await readdir(out), []);
    });
  });
}

describe('when intake is given a model with an unsigned extra file', () => {
  it('writes nothing and exits 4', async () => {
    const model = await mkdtemp(join(root, 'intake-extra-'));
    await cp(join(FIXTURES, 'v1.1.0-elliptic-key'), model, { recursive: true });
    await writeFile(join(model, 'extra.bin'), 'x');
    const out = await mkdtemp(join(root, 'out-'));
    const result = await run(createIntakeCommand, [
      model,
      '--oms',
      join(model, 'model.sig'),
      '--model',
      'm',
      '--version',
      '1',
      '--environment',
      'prod',
      '--source-prefix',
      'file:m',
      '--key',
      join(root, 'keys', 'intake.private.jwk.json'),
      '--out',
      out,
      '--public-key',
      keys('signing-key-pub.pem'),
      '--ignore-path',
      join(model, 'ignore-me'),
    ]);
    assert.equal(result.code, 4, result.stderr);
    assert.deepEqual(await readdir(out), []);
  });
});

describe('when the trust flags are wrong', () => {
  const sig = join(FIXTURES, 'v1.1.0-elliptic-key', 'model.sig');
  const model = join(FIXTURES, 'v1.1.0-elliptic-key');
  it('exits 2 without any trust, with two kinds of trust, or with an incomplete keyless trust', async () => {
    assert.equal((await run(createVerifyCommand, ['--oms', sig, model])).code, 2);
    const two = ['--public-key', keys('signing-key-pub.pem'), '--ca-file', keys('ca-cert.pem')];
    assert.equal((await run(createVerifyCommand, ['--oms', sig, model, ...two])).code, 2);
    assert.equal((await run(createVerifyCommand, ['--oms', sig, model, '--identity', 'x'])).code, 2);
    assert.equal(
      (await run(createVerifyCommand, [model, '--public-key', keys('signing-key-pub.pem')])).code,
      2,
    );
  });

  it('exits 1 when the trust file cannot be read', async () => {
    const result = await run(createVerifyCommand, [
      '--oms',
      sig,
      model,
      '--public-key',
      join(root, 'missing.pem'),
    ]);
    assert.equal(result.code, 1, result.stderr);
  });
});

describe('when the upstream evidence is verified again later', () => {
  it('verifies the stored bundle with a verifier built from a signer spec', async () => {
    const verifier = await createVerifier(
      { name: 'ngc', certificate: { caFile: 'keys/ca-cert.pem' } },
      FIXTURES,
    );
    const bundle = parseBundle(await readFile(join(FIXTURES, 'v1.1.0-certificate', 'model.sig')));
    const verified = await verifier.verify({ kind: 'bundle', bundle });
    assert.equal(verified.identity, 'CN=intermediate-ca');
  });
});
