import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createEnvironmentPolicy } from '../../src/policy/environments.ts';
import { createReadiness } from '../../src/server/readiness.ts';
import { createStores, type StoreSet } from '../../src/stores/index.ts';
import { createLogger } from '../../src/telemetry/logger.ts';

const timeouts = { connectSeconds: 1, firstByteSeconds: 1, idleSeconds: 1 };

describe('readiness probes', () => {
  let dir: string;
  let stores: StoreSet;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelgate-readiness-cache-'));
    await mkdir(join(dir, 'models'));
    await mkdir(join(dir, 'releases'));
    stores = await createStores({ file: { root: join(dir, 'models'), timeouts } });
  });
  after(async () => {
    await stores.close();
    await rm(dir, { recursive: true, force: true });
  });

  function rig() {
    let now = 1_000_000;
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const readiness = createReadiness({
      configSource: join(dir, 'modelgate.yaml'),
      // Catalog and authenticator are exercised end to end in readiness.test.ts; here only the probes matter.
      catalog: { isLoaded: () => true, all: () => [] },
      catalogDir: join(dir, 'releases'),
      authenticator: { pendingIssuers: () => [], issuerKeyProblems: () => ({}) },
      stores,
      policy: createEnvironmentPolicy({ environments: {} }),
      draining: () => false,
      logger: createLogger({ destination }),
      clock: () => now,
    });
    return { readiness, lines, advance: (ms: number) => (now += ms) };
  }

  describe('when the store root disappears after a probe', () => {
    it('answers from the cached result for a few seconds, then from a fresh probe, logging the failure once', async () => {
      const { readiness, lines, advance } = rig();
      assert.equal((await readiness.check()).ready, true);
      await rm(join(dir, 'models'), { recursive: true });

      advance(1000);
      readiness.report();
      await new Promise((resolve) => setTimeout(resolve, 50));
      const cached = readiness.report();
      assert.equal(cached.ready, true, 'within the cache window /readyz does not probe the store again');

      advance(5000);
      const stale = readiness.report();
      assert.equal(stale.ready, true, 'a stale result is answered while one refresh runs');
      await new Promise((resolve) => setTimeout(resolve, 50));
      const fresh = readiness.report();
      assert.equal(fresh.ready, false);
      assert.match(String(fresh.checks['store:file']?.detail), /ENOENT/);

      advance(6000);
      readiness.report();
      await new Promise((resolve) => setTimeout(resolve, 50));
      const failures = lines.filter((l) => l.event === 'readiness_failed');
      assert.equal(failures.length, 1, 'the same failure is logged once, not on every probe');

      await mkdir(join(dir, 'models'));
      advance(6000);
      assert.equal((await readiness.check()).ready, true);
      assert.equal(lines.filter((l) => l.event === 'readiness_recovered').length, 1);
    });
  });
});
