import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCatalog } from '../../src/catalog/catalog.ts';
import type { Catalog } from '../../src/catalog/catalog.types.ts';
import type { Manifest } from '../../src/catalog/release.types.ts';
import type { CatalogSigner } from '../../src/catalog/release-verifier.ts';
import { canonicalJson } from '../../src/catalog/signature.ts';
import { isModelgateError } from '../../src/errors.ts';
import { KeyFileError } from '../../src/keys.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.ts';
import {
  buildManifest,
  createSigner,
  releaseDigest,
  signRelease,
  type TestSigner,
  writeRelease,
} from '../helpers/releases.ts';

interface LogLine {
  level: string;
  msg: string;
  file?: string;
  reason?: string;
  [key: string]: unknown;
}

interface Harness {
  dir: string;
  catalog: Catalog;
  metrics: Metrics;
  lines: LogLine[];
}

let root: string;
let trusted: TestSigner;
let stranger: TestSigner;
let signerConfigs: CatalogSigner[];
const catalogs: Catalog[] = [];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'modelgate-catalog-'));
  const keys = join(root, 'keys');
  await mkdir(keys);
  trusted = await createSigner(keys, 'release');
  stranger = await createSigner(keys, 'stranger');
  signerConfigs = [{ name: 'release-pipeline', jwksFile: trusted.jwksFile, environments: ['prod'] }];
});

after(async () => {
  for (const catalog of catalogs) catalog.stop();
  await rm(root, { recursive: true, force: true });
});

let harnessCount = 0;

/** A catalog over a fresh folder, with logs captured as parsed JSON lines and its own metrics registry. */
async function createHarness(signers: CatalogSigner[] = signerConfigs): Promise<Harness> {
  const dir = join(root, `catalog-${harnessCount++}`);
  await mkdir(dir);
  const lines: LogLine[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) },
  });
  const metrics = createMetrics({ defaultMetrics: false });
  const catalog = createCatalog({ config: { dir, pollSeconds: 0 }, signers, logger, metrics });
  catalogs.push(catalog);
  return { dir, catalog, metrics, lines };
}

function manifestOf(
  model: string,
  version: string,
  environment = 'prod',
  content = `${model}@${version}`,
): Manifest {
  return buildManifest({
    model,
    version,
    environment,
    files: [
      { path: 'model.bin', bytes: Buffer.from(content), sources: [`file:${model}/${version}/model.bin`] },
      {
        path: 'config.json',
        bytes: Buffer.from('{}'),
        chunkSize: null,
        sources: [`file:${model}/config.json`],
      },
    ],
  });
}

/** Label values → value of one metric, e.g. `{ bad_signature: 1 }`. */
async function metricValues(metrics: Metrics, name: string): Promise<Record<string, number>> {
  const metric = metrics.registry.getSingleMetric(name);
  assert.ok(metric, `metric ${name} is registered`);
  const data = await metric.get();
  return Object.fromEntries(data.values.map((v) => [Object.values(v.labels).join(','), v.value]));
}

function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(isModelgateError(error), `expected a ModelgateError, got ${String(error)}`);
    return error.code;
  }
  assert.fail('expected an error');
}

function rejectionLines(lines: LogLine[]): LogLine[] {
  return lines.filter((line) => line.msg === 'catalog file rejected');
}

describe('when the folder holds two good releases among three bad files', () => {
  let h: Harness;
  let good1: string;
  let good2: string;

  before(async () => {
    h = await createHarness();
    good1 = await signRelease(manifestOf('fraud-detector', '1.0'), trusted);
    good2 = await signRelease(manifestOf('team/ranker', '2.0'), trusted);
    await writeRelease(h.dir, 'fraud-detector-1.0', good1);
    await writeRelease(h.dir, 'team_ranker-2.0', good2);
    const tampered = await signRelease(manifestOf('fraud-detector', '1.1'), trusted);
    const [header, , signature] = tampered.split('.');
    const swapped = Buffer.from(canonicalJson(manifestOf('fraud-detector', '1.1', 'prod', 'evil'))).toString(
      'base64url',
    );
    await writeRelease(h.dir, 'tampered', `${header}.${swapped}.${signature}`);
    await writeRelease(
      h.dir,
      'unknown-key',
      await signRelease(manifestOf('fraud-detector', '1.2'), stranger),
    );
    await writeRelease(h.dir, 'broken.json', '{"schema": "modelgate/release/v1",');
    // Ignored: dotfiles (e.g. a ConfigMap's ..data, editor swap files) and other extensions.
    await writeRelease(h.dir, '.hidden.jws', 'garbage');
    await writeFile(join(h.dir, 'README.txt'), 'not a release');
    await h.catalog.start();
  });

  it('resolves exactly the two good releases', () => {
    assert.equal(h.catalog.isLoaded(), true);
    assert.deepEqual(
      h.catalog
        .all()
        .map((r) => r.digest)
        .sort(),
      [releaseDigest(good1), releaseDigest(good2)].sort(),
    );
    const release = h.catalog.resolve('fraud-detector', { kind: 'version', version: '1.0' });
    assert.equal(release.digest, releaseDigest(good1));
    assert.equal(release.trust, 'trusted');
    assert.equal(release.signer, 'release-pipeline');
    assert.equal(release.files.get('model.bin')?.size, 'fraud-detector@1.0'.length);
    const ranker = h.catalog.resolve('team/ranker', { kind: 'digest', digest: releaseDigest(good2) });
    assert.equal(ranker.version, '2.0');
  });

  it('does not resolve the tampered or unknown-key versions', () => {
    assert.equal(
      errorCode(() => h.catalog.resolve('fraud-detector', { kind: 'version', version: '1.1' })),
      'MG_RELEASE_NOT_FOUND',
    );
    assert.equal(
      errorCode(() => h.catalog.resolve('fraud-detector', { kind: 'version', version: '1.2' })),
      'MG_RELEASE_NOT_FOUND',
    );
  });

  it('logs each rejection at warn with the file and reason', () => {
    const rejected = rejectionLines(h.lines);
    assert.equal(rejected.length, 3);
    assert.ok(rejected.every((line) => line.level === 'warn'));
    assert.deepEqual(rejected.map((line) => [line.file, line.reason]).sort(), [
      [join(h.dir, 'broken.json'), 'invalid_json'],
      [join(h.dir, 'tampered.jws'), 'bad_signature'],
      [join(h.dir, 'unknown-key.jws'), 'unknown_signer'],
    ]);
  });

  it('counts each rejection by reason and the releases by environment', async () => {
    assert.deepEqual(await metricValues(h.metrics, 'modelgate_catalog_rejected_total'), {
      bad_signature: 1,
      unknown_signer: 1,
      invalid_json: 1,
    });
    assert.deepEqual(await metricValues(h.metrics, 'modelgate_catalog_releases'), { prod: 2 });
  });

  it('does not count or log the same unchanged bad files again on the next scan', async () => {
    const report = await h.catalog.reload();
    assert.equal(report.rejected.length, 3);
    assert.equal(rejectionLines(h.lines).length, 3);
    assert.equal((await metricValues(h.metrics, 'modelgate_catalog_rejected_total')).bad_signature, 1);
  });

  it('counts a bad file again when its content changes', async () => {
    await writeRelease(h.dir, 'broken.json', '[1, 2');
    await h.catalog.reload();
    assert.equal((await metricValues(h.metrics, 'modelgate_catalog_rejected_total')).invalid_json, 2);
  });
});

describe('when two different manifests claim the same model and version', () => {
  let h: Harness;
  let first: string;
  let second: string;

  before(async () => {
    h = await createHarness();
    first = await signRelease(manifestOf('fraud-detector', '3.0', 'prod', 'one'), trusted);
    second = await signRelease(manifestOf('fraud-detector', '3.0', 'prod', 'two'), trusted);
    await writeRelease(h.dir, 'a', first);
    await writeRelease(h.dir, 'b', second);
    // The same release copied under another name is the same release, not a conflict.
    const other = await signRelease(manifestOf('fraud-detector', '4.0'), trusted);
    await writeRelease(h.dir, 'c', other);
    await writeRelease(h.dir, 'c-copy', other);
  });

  it('answers 409 for that version and reports the conflict', async () => {
    const report = await h.catalog.start();
    assert.deepEqual(report.conflicts, [
      { model: 'fraud-detector', version: '3.0', files: [join(h.dir, 'a.jws'), join(h.dir, 'b.jws')] },
    ]);
    try {
      h.catalog.resolve('fraud-detector', { kind: 'version', version: '3.0' });
      assert.fail('expected a conflict');
    } catch (error) {
      assert.ok(isModelgateError(error, 'MG_RELEASE_CONFLICT'));
      assert.equal(error.status, 409);
    }
  });

  it('still resolves each manifest by its digest', () => {
    for (const jws of [first, second]) {
      const release = h.catalog.resolve('fraud-detector', { kind: 'digest', digest: releaseDigest(jws) });
      assert.equal(release.digest, releaseDigest(jws));
    }
  });

  it('resolves the copied release by version', () => {
    assert.equal(h.catalog.resolve('fraud-detector', { kind: 'version', version: '4.0' }).version, '4.0');
    assert.equal(h.catalog.all().length, 3);
  });

  it('resolves the version again once one manifest is removed', async () => {
    await unlink(join(h.dir, 'b.jws'));
    const report = await h.catalog.reload();
    assert.deepEqual(report.conflicts, []);
    const release = h.catalog.resolve('fraud-detector', { kind: 'version', version: '3.0' });
    assert.equal(release.digest, releaseDigest(first));
  });
});

describe('when a release is looked up by something that does not exist', () => {
  let h: Harness;
  let ranker: string;

  before(async () => {
    h = await createHarness();
    await writeRelease(h.dir, 'fraud', await signRelease(manifestOf('fraud-detector', '1.0'), trusted));
    ranker = await signRelease(manifestOf('ranker', '1.0'), trusted);
    await writeRelease(h.dir, 'ranker', ranker);
    await h.catalog.start();
  });

  it('answers MG_MODEL_NOT_FOUND for an unknown model', () => {
    assert.equal(
      errorCode(() => h.catalog.resolve('nope', { kind: 'version', version: '1.0' })),
      'MG_MODEL_NOT_FOUND',
    );
  });

  it('answers MG_RELEASE_NOT_FOUND for an unknown version or digest', () => {
    assert.equal(
      errorCode(() => h.catalog.resolve('fraud-detector', { kind: 'version', version: '9' })),
      'MG_RELEASE_NOT_FOUND',
    );
    const digest = `sha256:${'0'.repeat(64)}`;
    assert.equal(
      errorCode(() => h.catalog.resolve('fraud-detector', { kind: 'digest', digest })),
      'MG_RELEASE_NOT_FOUND',
    );
  });

  it("answers MG_RELEASE_NOT_FOUND for another model's release digest", () => {
    const digest = releaseDigest(ranker);
    assert.equal(
      errorCode(() => h.catalog.resolve('fraud-detector', { kind: 'digest', digest })),
      'MG_RELEASE_NOT_FOUND',
    );
  });

  it('finds releases by file digest only within the model', () => {
    const release = h.catalog.resolve('ranker', { kind: 'version', version: '1.0' });
    const fileDigest = release.files.get('model.bin')!.digest;
    const found = h.catalog.releasesWithFile('ranker', fileDigest);
    assert.deepEqual(
      found.map((entry) => [entry.release.digest, entry.file.path]),
      [[release.digest, 'model.bin']],
    );
    assert.deepEqual(h.catalog.releasesWithFile('fraud-detector', fileDigest), []);
    // Both releases list the same config.json bytes.
    const shared = release.files.get('config.json')!.digest;
    assert.equal(h.catalog.releasesWithFile('fraud-detector', shared).length, 1);
  });
});

describe('when releases are signed for another environment or not at all', () => {
  it('loads them as untrusted_signer and unsigned', async () => {
    const h = await createHarness();
    await writeRelease(
      h.dir,
      'staging',
      await signRelease(manifestOf('fraud-detector', '1.0', 'staging'), trusted),
    );
    const unsigned = `${JSON.stringify(manifestOf('fraud-detector', '2.0', 'dev'), null, 2)}\n`;
    await writeRelease(h.dir, 'dev.json', unsigned);
    await h.catalog.start();
    const staging = h.catalog.resolve('fraud-detector', { kind: 'version', version: '1.0' });
    assert.equal(staging.trust, 'untrusted_signer');
    assert.equal(staging.signer, 'release-pipeline');
    const dev = h.catalog.resolve('fraud-detector', { kind: 'version', version: '2.0' });
    assert.equal(dev.trust, 'unsigned');
    assert.equal(dev.signer, null);
    assert.deepEqual(dev.payload, Buffer.from(unsigned));
    assert.deepEqual(await metricValues(h.metrics, 'modelgate_catalog_releases'), { staging: 1, dev: 1 });
  });
});

describe('when files are added and removed between scans', () => {
  it('picks up the new release and drops the removed one, and the gauge follows', async () => {
    const h = await createHarness();
    const old = await signRelease(manifestOf('fraud-detector', '1.0'), trusted);
    await writeRelease(h.dir, 'old', old);
    await writeRelease(h.dir, 'staging', await signRelease(manifestOf('ranker', '1.0', 'staging'), trusted));
    await h.catalog.start();
    const kept = h.catalog.resolve('fraud-detector', { kind: 'version', version: '1.0' });

    const fresh = await signRelease(manifestOf('fraud-detector', '2.0'), trusted);
    await writeRelease(h.dir, 'new', fresh);
    await unlink(join(h.dir, 'staging.jws'));
    const report = await h.catalog.reload();

    assert.equal(report.loaded, 2);
    assert.equal(
      h.catalog.resolve('fraud-detector', { kind: 'version', version: '2.0' }).digest,
      releaseDigest(fresh),
    );
    assert.equal(
      errorCode(() => h.catalog.resolve('ranker', { kind: 'version', version: '1.0' })),
      'MG_MODEL_NOT_FOUND',
    );
    // The unchanged file was not re-verified: the same object comes back.
    assert.equal(h.catalog.resolve('fraud-detector', { kind: 'version', version: '1.0' }), kept);
    assert.deepEqual(await metricValues(h.metrics, 'modelgate_catalog_releases'), { prod: 2 });
  });
});

describe('when the catalog folder becomes unreadable', () => {
  it('keeps the last good catalog and logs an error', async () => {
    const h = await createHarness();
    const jws = await signRelease(manifestOf('fraud-detector', '1.0'), trusted);
    await writeRelease(h.dir, 'release', jws);
    await h.catalog.start();
    await rename(h.dir, `${h.dir}.moved`);
    try {
      await h.catalog.reload();
      assert.equal(h.catalog.isLoaded(), true);
      assert.equal(
        h.catalog.resolve('fraud-detector', { kind: 'version', version: '1.0' }).digest,
        releaseDigest(jws),
      );
      assert.ok(h.lines.some((line) => line.level === 'error' && line.code === 'ENOENT'));
    } finally {
      await rename(`${h.dir}.moved`, h.dir);
    }
  });
});

describe('when the catalog folder is missing at start', () => {
  it('starts empty and not loaded, then loads once the folder appears', async () => {
    const h = await createHarness();
    await rm(h.dir, { recursive: true });
    const report = await h.catalog.start();
    assert.equal(report.loaded, 0);
    assert.equal(h.catalog.isLoaded(), false);
    assert.equal(
      errorCode(() => h.catalog.resolve('fraud-detector', { kind: 'version', version: '1.0' })),
      'MG_MODEL_NOT_FOUND',
    );

    await mkdir(h.dir);
    await writeRelease(h.dir, 'release', await signRelease(manifestOf('fraud-detector', '1.0'), trusted));
    await h.catalog.reload();
    assert.equal(h.catalog.isLoaded(), true);
    assert.equal(h.catalog.all().length, 1);
  });
});

describe('when a signer key file is missing at start', () => {
  it('fails start-up naming the file', async () => {
    const missing = join(root, 'keys', 'missing.jwks.json');
    const h = await createHarness([{ name: 'gone', jwksFile: missing, environments: ['prod'] }]);
    await assert.rejects(
      h.catalog.start(),
      (error: unknown) => error instanceof KeyFileError && error.file === missing,
    );
  });
});

describe('when a signer adds a key and the catalog reloads', () => {
  it('re-verifies releases that named the new key', async () => {
    const keys = join(root, 'rotating');
    await mkdir(keys);
    const jwksFile = join(keys, 'release.jwks.json');
    await copyFile(trusted.jwksFile, jwksFile);
    const h = await createHarness([{ name: 'rotating', jwksFile, environments: ['prod'] }]);
    await writeRelease(h.dir, 'next-key', await signRelease(manifestOf('fraud-detector', '5.0'), stranger));
    const before = await h.catalog.start();
    assert.deepEqual(
      before.rejected.map((r) => r.reason),
      ['unknown_signer'],
    );

    const current = JSON.parse(await readFile(jwksFile, 'utf8')) as { keys: unknown[] };
    const added = JSON.parse(await readFile(stranger.jwksFile, 'utf8')) as { keys: unknown[] };
    await writeFile(jwksFile, JSON.stringify({ keys: [...current.keys, ...added.keys] }));
    const after = await h.catalog.reload();
    assert.deepEqual(after.rejected, []);
    assert.equal(h.catalog.resolve('fraud-detector', { kind: 'version', version: '5.0' }).trust, 'trusted');
  });
});

describe('when the catalog polls', () => {
  it('loads a release dropped into the folder without a reload call', async () => {
    const dir = join(root, 'polled');
    await mkdir(dir);
    const logger = createLogger({ level: 'silent' });
    const metrics = createMetrics({ defaultMetrics: false });
    const catalog = createCatalog({
      config: { dir, pollSeconds: 0.02 },
      signers: signerConfigs,
      logger,
      metrics,
    });
    catalogs.push(catalog);
    await catalog.start();
    assert.equal(catalog.all().length, 0);
    await writeRelease(dir, 'release', await signRelease(manifestOf('fraud-detector', '1.0'), trusted));
    const deadline = Date.now() + 5000;
    while (catalog.all().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(catalog.all().length, 1);
    catalog.stop();
  });
});
