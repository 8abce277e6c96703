import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import type { Clock } from '../../src/clock.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type App, createApp } from '../../src/server/app.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import {
  buildManifest,
  createSigner,
  releaseDigest,
  signRelease,
  type TestFile,
  type TestSigner,
} from './releases.ts';
import { generateTestKey, mintKubernetesToken, type TestKey, writeJwksFile } from './tokens.ts';

export const ISSUER = 'https://issuer.test.modelgate.invalid';

/** A log line as pino wrote it. */
export type LogLine = Record<string, unknown> & { msg: string; level: string };

export interface Harness {
  dir: string;
  /** The file store root: `file:X` sources live at `root/X`. */
  root: string;
  catalogDir: string;
  url: string;
  adminUrl: string;
  app: App;
  logs: LogLine[];
  signer: TestSigner;
  issuerKey: TestKey;
  /** A Kubernetes-shaped token for `system:serviceaccount:NAMESPACE:SA` (default fraud:inference). */
  token(options?: { namespace?: string; serviceAccount?: string; lifetimeSeconds?: number }): Promise<string>;
  /**
   * Writes the files under the file store root (at `file:` sources named
   * `MODEL/VERSION/PATH` unless given), signs the manifest (or writes it
   * unsigned), reloads the catalog, and returns the release digest.
   */
  addRelease(input: ReleaseInput): Promise<{ digest: string; jws: string }>;
  /** Overwrites a file in the file store root. */
  writeSource(relativePath: string, bytes: Buffer): Promise<void>;
  /** GET/HEAD through the proxy with the default token unless `token` is given (null = none). */
  request(
    path: string,
    init?: { method?: string; headers?: Record<string, string>; token?: string | null },
  ): Promise<Response>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
}

export interface ReleaseInput {
  model: string;
  version: string;
  environment?: string;
  files: Array<Omit<TestFile, 'sources'> & { sources?: string[]; sourceBytes?: Buffer }>;
  /** `signer` (default), `unsigned` (a .json manifest), or another TestSigner. */
  signedBy?: 'signer' | 'unsigned' | TestSigner;
  provenance?: Record<string, string>;
  /** The release digest this one was derived from (lineage). */
  parent?: string;
}

export interface HarnessOptions {
  /** Merged over the generated configuration (top-level keys replace). */
  config?: Record<string, unknown>;
  environments?: Record<string, unknown>;
  grants?: Array<{ models: string[]; environments: string[] }>;
  clock?: Clock;
  /** Extra signers `{name, environments}` created and configured. */
  signers?: Array<{ name: string; environments: string[] }>;
}

/** Starts a real proxy in this process on 127.0.0.1:0 with a file store, an issuer and a signer. */
export async function startHarness(
  options: HarnessOptions = {},
): Promise<Harness & { extraSigners: TestSigner[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'modelgate-test-'));
  const root = join(dir, 'models');
  const catalogDir = join(dir, 'releases');
  const keysDir = join(dir, 'keys');
  await Promise.all([mkdir(root), mkdir(catalogDir), mkdir(keysDir)]);
  const signer = await createSigner(keysDir, 'release');
  const extraSigners = await Promise.all((options.signers ?? []).map((s) => createSigner(keysDir, s.name)));
  const issuerKey = await generateTestKey('RS256');
  const issuerJwks = await writeJwksFile(keysDir, [issuerKey], 'issuer.jwks.json');
  const config = {
    listen: { address: '127.0.0.1', port: 0 },
    admin: { address: '127.0.0.1', port: 0 },
    stores: { file: { root } },
    catalog: { dir: catalogDir, pollSeconds: 0 },
    issuers: [
      { name: 'test', issuer: ISSUER, jwksFile: issuerJwks, audiences: ['modelgate'], algorithms: ['RS256'] },
    ],
    serviceAccounts: [
      {
        name: 'fraud-inference',
        issuer: 'test',
        subject: 'system:serviceaccount:fraud:inference',
        grants: options.grants ?? [{ models: ['fraud-*', 'team/**'], environments: ['prod', 'staging'] }],
      },
      {
        name: 'other-team',
        issuer: 'test',
        subject: 'system:serviceaccount:other:inference',
        grants: [{ models: ['other-*'], environments: ['prod'] }],
      },
    ],
    signers: [
      { name: 'release', jwksFile: signer.jwksFile, environments: ['prod', 'staging'] },
      ...extraSigners.map((s, i) => ({
        name: s.name,
        jwksFile: s.jwksFile,
        environments: options.signers![i]!.environments,
      })),
    ],
    environments: options.environments ?? { prod: { mode: 'enforce', digestRefsOnly: false } },
    transfer: { retryBackoffMs: 10 },
    logging: { level: 'debug' },
    ...options.config,
  };
  const configFile = join(dir, 'modelgate.yaml');
  await writeFile(configFile, stringify(config));
  const parsed = parseConfig(stringify(config), configFile);
  const logs: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  const metrics = createMetrics({ defaultMetrics: false });
  const app = await createApp({
    config: parsed,
    logger,
    metrics,
    ...(options.clock ? { clock: options.clock } : {}),
  });
  const { dataUrl, adminUrl } = await app.start();
  const defaultToken = await mintKubernetesToken(issuerKey, { issuer: ISSUER });

  const harness: Harness & { extraSigners: TestSigner[] } = {
    dir,
    root,
    catalogDir,
    url: dataUrl,
    adminUrl,
    app,
    logs,
    signer,
    issuerKey,
    extraSigners,
    token: (o = {}) =>
      mintKubernetesToken(issuerKey, {
        issuer: ISSUER,
        ...(o.namespace ? { namespace: o.namespace } : {}),
        ...(o.serviceAccount ? { serviceAccount: o.serviceAccount } : {}),
        ...(o.lifetimeSeconds ? { lifetimeSeconds: o.lifetimeSeconds } : {}),
      }),
    async writeSource(relativePath, bytes) {
      const path = join(root, relativePath);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, bytes);
    },
    async addRelease(input) {
      const files = input.files.map((f) => ({
        path: f.path,
        bytes: f.bytes,
        chunkSize: f.chunkSize === undefined ? 1024 * 1024 : f.chunkSize,
        sources: f.sources ?? [`file:${input.model}/${input.version}/${f.path}`],
      }));
      for (const [i, f] of files.entries()) {
        const local = f.sources.find((s) => s.startsWith('file:'));
        if (local) await harness.writeSource(local.slice(5), input.files[i]!.sourceBytes ?? f.bytes);
      }
      const manifest = buildManifest({
        model: input.model,
        version: input.version,
        environment: input.environment ?? 'prod',
        files,
        ...(input.provenance ? { provenance: input.provenance } : {}),
      });
      if (input.parent !== undefined) manifest.parent = input.parent;
      const name = `${input.model.replaceAll('/', '_')}-${input.version}`;
      let jws: string;
      let digest: string;
      if (input.signedBy === 'unsigned') {
        jws = JSON.stringify(manifest);
        await writeFile(join(catalogDir, `${name}.json`), jws);
        const { sha256Digest } = await import('../../src/catalog/signature.ts');
        digest = sha256Digest(Buffer.from(jws));
      } else {
        jws = await signRelease(
          manifest,
          input.signedBy && input.signedBy !== 'signer' ? input.signedBy : signer,
        );
        await writeFile(join(catalogDir, `${name}.jws`), jws);
        digest = releaseDigest(jws);
      }
      await app.reload();
      return { digest, jws };
    },
    async request(path, init = {}) {
      const headers: Record<string, string> = { ...init.headers };
      const token = init.token === undefined ? defaultToken : init.token;
      if (token !== null) headers.authorization = `Bearer ${token}`;
      return fetch(`${dataUrl}${path}`, { method: init.method ?? 'GET', headers });
    },
    async metric(name, labels = {}) {
      const metric = metrics.registry.getSingleMetric(name);
      if (!metric) throw new Error(`no metric ${name}`);
      const { values } = await metric.get();
      return values
        .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
        .filter((v) => !('metricName' in v) || v.metricName === name || v.metricName === undefined)
        .reduce((sum, v) => sum + v.value, 0);
    },
    async stop() {
      await app.shutdown(0);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return harness;
}

/** Deterministic pseudo-random bytes (fast; good enough to make every chunk distinct). */
export function randomBytesSeeded(length: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  for (let i = length - (length % 4); i < length; i++) out[i] = i & 0xff;
  return out;
}
