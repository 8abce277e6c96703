/**
 * `modelgate fetch --break-glass-file` against a real `modelgate serve`
 * process: a workload whose service account has no grant for the model
 * fetches one release with a break-glass token issued by
 * `modelgate break-glass`, and is refused when that token has expired.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import type { Clock } from '../../src/clock.ts';
import { createBreakGlassCommand } from '../../src/commands/break-glass.ts';
import { FETCH_EXIT } from '../../src/commands/fetch.ts';
import {
  buildManifest,
  createSigner,
  releaseDigest,
  signRelease,
  writeRelease,
} from '../helpers/releases.ts';
import { generateTestKey, mintKubernetesToken, writeJwksFile } from '../helpers/tokens.ts';
import {
  createKeyDir,
  generateTestKey as generateBreakGlassKey,
  type KeyDir,
} from '../policy/break-glass-keys.ts';
import { seededBytes } from './fake-proxy.ts';
import { type ProxyProcess, scrapeMetric, startProxyProcess } from './proxy-process.ts';
import { runCli } from './run-cli.ts';

const ISSUER = 'https://oidc.test.modelgate.invalid/clusters/break-glass';
const MODEL = 'fraud-detector';
const VERSION = '2026.11.29';
const HOUR = 3600_000;
const files = [
  { path: 'model.bin', bytes: seededBytes(3 * 1024 * 1024 + 17, 31), chunkSize: 1024 * 1024 },
  { path: 'vocab/labels.txt', bytes: Buffer.from('fraud\nlegit\n'), chunkSize: null },
];

describe('modelgate fetch with a break-glass token, through a running proxy', { timeout: 180_000 }, () => {
  let work: string;
  let keys: KeyDir;
  let breakGlassKeyFile: string;
  let proxy: ProxyProcess;
  let tokenFile: string;
  let digest: string;

  /** Issues a break-glass token with the real `modelgate break-glass` command, as on-call would. */
  async function issue(clock?: Clock): Promise<string> {
    let out = '';
    const command = createBreakGlassCommand({
      stdout: (text) => {
        out += text;
      },
      stderr: () => {},
      ...(clock === undefined ? {} : { clock }),
    });
    const code = await command.run([
      '--key',
      breakGlassKeyFile,
      '--incident',
      'INC-77',
      '--reason',
      'rollback while the grant pipeline is down',
      '--service-account',
      'fraud-inference',
      '--model',
      MODEL,
      '--release',
      digest,
      '--ttl',
      '1h',
      '--json',
    ]);
    assert.equal(code, 0);
    return (JSON.parse(out) as { token: string }).token;
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'modelgate-fetch-break-glass-'));
    keys = await createKeyDir();
    const root = join(work, 'models');
    const catalog = join(work, 'releases');
    await Promise.all([mkdir(root), mkdir(catalog)]);
    const signer = await createSigner(keys.dir, 'release-pipeline');
    const issuerKey = await generateTestKey('ES256');
    const issuerJwks = await writeJwksFile(keys.dir, [issuerKey], 'cluster.jwks.json');
    const written = await keys.write('break-glass', await generateBreakGlassKey('break-glass-1'));
    breakGlassKeyFile = written.privateFile;

    const withSources = files.map((f) => ({ ...f, sources: [`file:${MODEL}/${f.path}`] }));
    for (const f of files) {
      await mkdir(join(root, MODEL, 'vocab'), { recursive: true });
      await writeFile(join(root, MODEL, f.path), f.bytes);
    }
    const jws = await signRelease(
      buildManifest({ model: MODEL, version: VERSION, environment: 'prod', files: withSources }),
      signer,
    );
    await writeRelease(catalog, `${MODEL}-${VERSION}`, jws);
    digest = releaseDigest(jws);

    const configFile = join(work, 'modelgate.yaml');
    await writeFile(
      configFile,
      stringify({
        listen: { address: '127.0.0.1', port: 0 },
        admin: { address: '127.0.0.1', port: 0 },
        stores: { file: { root } },
        catalog: { dir: catalog, pollSeconds: 0 },
        issuers: [
          {
            name: 'cluster',
            issuer: ISSUER,
            jwksFile: issuerJwks,
            audiences: ['modelgate'],
            algorithms: ['ES256'],
          },
        ],
        // The workload is known, but granted another model only: fraud-detector is not granted.
        serviceAccounts: [
          {
            name: 'fraud-inference',
            issuer: 'cluster',
            subject: 'system:serviceaccount:fraud:inference',
            grants: [{ models: ['churn-*'], environments: ['prod'] }],
          },
        ],
        signers: [{ name: 'release-pipeline', jwksFile: signer.jwksFile, environments: ['prod'] }],
        environments: { prod: { mode: 'enforce', digestRefsOnly: true } },
        breakGlass: { jwksFile: written.jwksFile, maxTtlSeconds: 14400, incidentPattern: '^INC-[0-9]+$' },
        limits: { shutdownGraceSeconds: 1 },
        logging: { level: 'info' },
      }),
    );
    tokenFile = join(work, 'token');
    await writeFile(tokenFile, await mintKubernetesToken(issuerKey, { issuer: ISSUER }));
    proxy = await startProxyProcess(configFile);
  });

  after(async () => {
    await proxy?.stop();
    await keys?.remove();
    await rm(work, { recursive: true, force: true });
  });

  const fetchArgs = (dest: string, ...extra: string[]) => [
    'fetch',
    '--proxy',
    proxy.dataUrl,
    '--model',
    MODEL,
    '--release',
    digest,
    '--dest',
    dest,
    '--token-file',
    tokenFile,
    ...extra,
  ];

  async function assertAllFiles(dest: string): Promise<void> {
    for (const file of files) {
      assert.ok((await readFile(join(dest, file.path))).equals(file.bytes), `${file.path} differs`);
    }
  }

  describe('when the grant is missing and no break-glass token is given', () => {
    it('exits 10 with MG_NOT_GRANTED', async () => {
      const dest = await mkdtemp(join(work, 'dest-'));
      const run = await runCli(fetchArgs(dest));
      assert.equal(run.code, FETCH_EXIT.authRefused, run.stderr);
      assert.match(run.stderr, /MG_NOT_GRANTED/);
      assert.deepEqual(await readdir(dest), []);
    });
  });

  describe('when the grant is missing and --break-glass-file holds a valid token', () => {
    it('fetches every file verified, and the proxy counts the break-glass use', async () => {
      const dest = await mkdtemp(join(work, 'dest-'));
      const file = join(work, 'break-glass.jwt');
      await writeFile(file, `  ${await issue()}\n\n`);
      const before = await scrapeMetric(proxy.adminUrl, 'modelgate_break_glass_requests_total', {
        incident: 'INC-77',
      });
      const run = await runCli(fetchArgs(dest, '--break-glass-file', file));
      assert.equal(run.code, FETCH_EXIT.ok, run.stderr);
      await assertAllFiles(dest);
      const record = JSON.parse(await readFile(join(dest, '.modelgate-release.json'), 'utf8'));
      assert.equal(record.releaseDigest, digest);
      // The manifest and both files each went through the break-glass path.
      const after = await scrapeMetric(proxy.adminUrl, 'modelgate_break_glass_requests_total', {
        incident: 'INC-77',
      });
      assert.ok(after - before >= 3, `expected >= 3 break-glass requests, got ${after - before}`);
    });

    it('takes the file from MODELGATE_BREAK_GLASS_FILE when the flag is not given', async () => {
      const dest = await mkdtemp(join(work, 'dest-'));
      const file = join(work, 'break-glass-env.jwt');
      await writeFile(file, await issue());
      const run = await runCli(fetchArgs(dest), { env: { MODELGATE_BREAK_GLASS_FILE: file } });
      assert.equal(run.code, FETCH_EXIT.ok, run.stderr);
      await assertAllFiles(dest);
    });
  });

  describe('when the break-glass token has expired', () => {
    it('exits 10 with MG_BREAK_GLASS_EXPIRED and writes no file', async () => {
      const dest = await mkdtemp(join(work, 'dest-'));
      const file = join(work, 'expired.jwt');
      await writeFile(file, await issue(() => Date.now() - 3 * HOUR));
      const run = await runCli(fetchArgs(dest, '--break-glass-file', file));
      assert.equal(run.code, FETCH_EXIT.authRefused, run.stderr);
      assert.match(run.stderr, /MG_BREAK_GLASS_EXPIRED, HTTP 403/);
      assert.deepEqual(await readdir(dest), []);
    });
  });

  describe('when the break-glass file is missing or empty', () => {
    for (const [name, content] of [
      ['missing', undefined],
      ['empty', ' \n'],
    ] as const) {
      it(`exits 2 with FETCH_BREAK_GLASS_UNREADABLE when it is ${name}, before any request`, async () => {
        const dest = await mkdtemp(join(work, 'dest-'));
        const file = join(work, `${name}.jwt`);
        if (content !== undefined) await writeFile(file, content);
        const run = await runCli(fetchArgs(dest, '--break-glass-file', file));
        assert.equal(run.code, FETCH_EXIT.usage, run.stderr);
        assert.match(run.stderr, /FETCH_BREAK_GLASS_UNREADABLE/);
        assert.deepEqual(await readdir(dest), []);
      });
    }
  });
});
