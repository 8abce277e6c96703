/**
 * `modelgate fetch` against the real proxy, both run as black-box child
 * processes (`node src/main.ts serve|fetch`), with the fault proxy from
 * test/helpers in between where a transfer must break at a known point.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { FETCH_EXIT } from '../../src/commands/fetch.ts';
import type { ReleaseRecord } from '../../src/fetch/fetch-release.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import {
  buildManifest,
  createSigner,
  releaseDigest,
  signRelease,
  type TestSigner,
  writeRelease,
} from '../helpers/releases.ts';
import { generateTestKey, mintKubernetesToken, writeJwksFile } from '../helpers/tokens.ts';
import { seededBytes } from './fake-proxy.ts';
import { freePort, type ProxyProcess, scrapeMetric, startProxyProcess } from './proxy-process.ts';
import { runCli } from './run-cli.ts';

const MiB = 1024 * 1024;
const ISSUER = 'https://oidc.test.modelgate.invalid/clusters/test';

const MODEL = 'fraud-detector';
const VERSION = '2026.11.3';
const files = [
  { path: 'model.safetensors', bytes: seededBytes(24 * MiB + 4321, 11), chunkSize: MiB },
  { path: 'config.json', bytes: Buffer.from('{"layers": 12, "hidden": 768}\n'), chunkSize: MiB },
  { path: 'tokenizer/vocab.txt', bytes: seededBytes(200_000, 12), chunkSize: null },
];
const big = files[0]!;

async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

describe('modelgate fetch through a running proxy', { timeout: 240_000 }, () => {
  let work: string;
  let configFile: string;
  let proxy: ProxyProcess;
  let tokenFile: string;
  let digest: string;
  let tamperedDigest: string;
  let signer: TestSigner;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'modelgate-fetch-e2e-'));
    const root = join(work, 'models');
    const catalog = join(work, 'releases');
    const keys = join(work, 'keys');
    await Promise.all([mkdir(root), mkdir(catalog), mkdir(keys)]);
    signer = await createSigner(keys, 'release-pipeline');
    const issuerKey = await generateTestKey('ES256');
    const issuerJwks = await writeJwksFile(keys, [issuerKey], 'cluster.jwks.json');

    const place = async (source: string, bytes: Buffer) => {
      await mkdir(dirname(join(root, source)), { recursive: true });
      await writeFile(join(root, source), bytes);
    };
    const withSources = files.map((f) => ({ ...f, sources: [`file:${MODEL}/${VERSION}/${f.path}`] }));
    for (const f of withSources) await place(f.sources[0]!.slice(5), f.bytes);
    const jws = await signRelease(
      buildManifest({ model: MODEL, version: VERSION, environment: 'prod', files: withSources }),
      signer,
    );
    await writeRelease(catalog, `${MODEL}-${VERSION}`, jws);
    digest = releaseDigest(jws);

    // Signed over the right bytes, then the bytes in the store change: the chunk at 1 MiB no longer matches.
    const good = seededBytes(3 * MiB, 21);
    const tampered = Buffer.from(good);
    tampered[MiB + 100]! ^= 0xff;
    await place('fraud-tampered/1.0.0/model.bin', tampered);
    const tamperedJws = await signRelease(
      buildManifest({
        model: 'fraud-tampered',
        version: '1.0.0',
        environment: 'prod',
        files: [
          {
            path: 'model.bin',
            bytes: good,
            chunkSize: MiB,
            sources: ['file:fraud-tampered/1.0.0/model.bin'],
          },
        ],
      }),
      signer,
    );
    await writeRelease(catalog, 'fraud-tampered-1.0.0', tamperedJws);
    tamperedDigest = releaseDigest(tamperedJws);

    configFile = join(work, 'modelgate.yaml');
    await writeFile(
      configFile,
      stringify({
        // A fixed port: the resume test restarts the proxy on the same one.
        listen: { address: '127.0.0.1', port: await freePort() },
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
        serviceAccounts: [
          {
            name: 'fraud-inference',
            issuer: 'cluster',
            subject: 'system:serviceaccount:fraud:inference',
            grants: [{ models: ['fraud-*'], environments: ['prod'] }],
          },
        ],
        signers: [{ name: 'release-pipeline', jwksFile: signer.jwksFile, environments: ['prod'] }],
        environments: { prod: { mode: 'enforce', digestRefsOnly: false } },
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
    await rm(work, { recursive: true, force: true });
  });

  const newDest = () => mkdtemp(join(work, 'dest-'));
  const fetchArgs = (dest: string, overrides: Record<string, string> = {}) =>
    Object.entries({
      proxy: proxy.dataUrl,
      model: MODEL,
      release: VERSION,
      dest,
      'token-file': tokenFile,
      ...overrides,
    }).flatMap(([flag, value]) => [`--${flag}`, value]);

  async function assertAllFiles(dest: string): Promise<void> {
    for (const file of files) {
      assert.ok((await readFile(join(dest, file.path))).equals(file.bytes), `${file.path} differs`);
    }
  }

  describe('when the release is fetched into an empty folder', () => {
    let dest: string;

    it('downloads every file with the right bytes and writes .modelgate-release.json', async () => {
      dest = await newDest();
      const run = await runCli(['fetch', ...fetchArgs(dest)]);
      assert.equal(run.code, FETCH_EXIT.ok, run.stderr);
      await assertAllFiles(dest);
      const record = JSON.parse(
        await readFile(join(dest, '.modelgate-release.json'), 'utf8'),
      ) as ReleaseRecord;
      assert.equal(record.releaseDigest, digest);
      assert.equal(record.model, MODEL);
      assert.equal(record.version, VERSION);
      assert.equal(record.environment, 'prod');
      assert.equal(record.signer, 'release-pipeline');
      assert.deepEqual(record.files.map((f) => f.path).sort(), files.map((f) => f.path).sort());
      assert.ok(!(await exists(join(dest, '.modelgate-tmp'))));
    });

    it('downloads nothing the second time: no file request reaches the proxy', async () => {
      const fileRequestsBefore = await scrapeMetric(proxy.adminUrl, 'modelgate_requests_total', {
        route: 'file',
      });
      assert.ok(
        fileRequestsBefore >= files.length,
        `expected file requests counted, got ${fileRequestsBefore}`,
      );
      const run = await runCli(['fetch', ...fetchArgs(dest, { release: digest })]);
      assert.equal(run.code, FETCH_EXIT.ok, run.stderr);
      const statuses = run.events.filter((e) => e.event === 'file').map((e) => e.status);
      assert.deepEqual(
        statuses,
        files.map(() => 'present'),
      );
      const fileRequestsAfter = await scrapeMetric(proxy.adminUrl, 'modelgate_requests_total', {
        route: 'file',
      });
      assert.equal(fileRequestsAfter, fileRequestsBefore);
      await assertAllFiles(dest);
    });
  });

  describe('when the source bytes were changed after signing', () => {
    it('exits 12 and leaves no file in the destination', async () => {
      const dest = await newDest();
      const run = await runCli([
        'fetch',
        ...fetchArgs(dest, { model: 'fraud-tampered', release: tamperedDigest, retries: '2' }),
      ]);
      assert.equal(run.code, FETCH_EXIT.integrity, run.stderr);
      assert.match(run.stderr, /MG_DIGEST_MISMATCH|FETCH_(CHUNK|DIGEST)_MISMATCH/);
      assert.ok(!(await exists(join(dest, 'model.bin'))));
      assert.ok(!(await exists(join(dest, '.modelgate-tmp', 'model.bin.partial'))));
      assert.ok(!(await exists(join(dest, '.modelgate-release.json'))));
    });
  });

  describe('when the token is not one the proxy trusts', () => {
    it('exits 10 without retrying', async () => {
      const dest = await newDest();
      const stranger = await generateTestKey('ES256');
      const wrongToken = join(work, 'wrong-token');
      await writeFile(wrongToken, await mintKubernetesToken(stranger, { issuer: ISSUER }));
      const run = await runCli(['fetch', ...fetchArgs(dest, { 'token-file': wrongToken })]);
      assert.equal(run.code, FETCH_EXIT.authRefused, run.stderr);
      assert.match(run.stderr, /MG_TOKEN_[A-Z_]+/);
      assert.equal(run.events.filter((e) => e.event === 'retry').length, 0);
      assert.deepEqual(await readdir(dest), []);
    });
  });

  describe('when the release does not exist', () => {
    it('exits 11', async () => {
      const run = await runCli(['fetch', ...fetchArgs(await newDest(), { release: '0.0.0' })]);
      assert.equal(run.code, FETCH_EXIT.notFound, run.stderr);
      assert.match(run.stderr, /MG_RELEASE_NOT_FOUND|MG_MODEL_NOT_FOUND/);
    });
  });

  describe('when the connection breaks mid-file', () => {
    let faults: FaultProxy;

    before(async () => {
      faults = await startFaultProxy({ port: Number(new URL(proxy.dataUrl).port) });
    });
    after(async () => {
      await faults.close();
    });

    /** Lets the next connections carry 8 MiB, then hold them open with nothing more sent. */
    function stallAtEightMiB(): void {
      faults.setDefault({ stallAfterBytes: 8 * MiB });
    }

    it('resumes from the verified chunks after the proxy is killed and restarted on the same port', async () => {
      const dest = await newDest();
      stallAtEightMiB();
      const running = runCli([
        'fetch',
        ...fetchArgs(dest, { proxy: faults.url, release: digest, retries: '8' }),
      ]);
      await waitFor('the transfer to stall', () => faults.connections().some((c) => c.faulted));
      faults.setDefault({});

      await proxy.kill();
      faults.cutAll();
      await sleep(300);
      proxy = await startProxyProcess(configFile);

      const run = await running;
      assert.equal(run.code, FETCH_EXIT.ok, run.stderr);
      await assertAllFiles(dest);
      const result = run.events.find((e) => e.event === 'file' && e.path === big.path)!;
      const resumedFrom = Number(result.resumedFrom);
      assert.ok(resumedFrom >= 4 * MiB, `expected a resume from the verified chunks, got ${resumedFrom}`);
      assert.equal(resumedFrom % MiB, 0);
      assert.ok(run.events.some((e) => e.event === 'retry' && e.path === big.path));
      // The restarted proxy served only what was missing, not the whole file again.
      const served = await scrapeMetric(proxy.adminUrl, 'modelgate_bytes_served_total');
      assert.ok(served > 0, 'the restarted proxy served the rest of the file');
      assert.ok(
        served <= big.bytes.length - resumedFrom,
        `served ${served} bytes after resuming at ${resumedFrom}`,
      );
    });

    it('resumes from the partial file after the fetch process itself is killed', async () => {
      const dest = await newDest();
      const partial = join(dest, '.modelgate-tmp', `${big.path}.partial`);
      stallAtEightMiB();
      let child: ChildProcess | undefined;
      const first = runCli(['fetch', ...fetchArgs(dest, { proxy: faults.url, release: digest })], {
        onSpawn: (c) => {
          child = c;
        },
      });
      await waitFor('the transfer to stall', () => faults.connections().some((c) => c.faulted && c.open));
      await waitFor(
        'verified bytes on disk',
        async () => ((await stat(partial).catch(() => null))?.size ?? 0) >= 4 * MiB,
      );
      child!.kill('SIGKILL');
      const killed = await first;
      assert.equal(killed.signal, 'SIGKILL');
      faults.setDefault({});
      faults.cutAll();
      assert.ok(!(await exists(join(dest, big.path))), 'no final file after a killed fetch');

      const second = await runCli(['fetch', ...fetchArgs(dest, { proxy: faults.url, release: digest })]);
      assert.equal(second.code, FETCH_EXIT.ok, second.stderr);
      await assertAllFiles(dest);
      const result = second.events.find((e) => e.event === 'file' && e.path === big.path)!;
      assert.ok(Number(result.resumedFrom) >= 4 * MiB, `resumedFrom ${result.resumedFrom}`);
      assert.ok(Number(result.transferred) <= big.bytes.length - Number(result.resumedFrom));
    });
  });
});
