import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const KUBERNETES = join(REPO, 'deploy', 'kubernetes');

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes manifests are checked field by field below.
type Manifest = Record<string, any>;

/** `kubectl kustomize DIR` (offline: kustomize builds from the files, no cluster is contacted). */
function build(dir: string): Manifest[] {
  const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.error, undefined, `kubectl kustomize needs kubectl on PATH: ${String(run.error)}`);
  assert.equal(run.status, 0, run.stderr);
  return parseAllDocuments(run.stdout)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((doc): doc is Manifest => doc !== null);
}

describe('the kustomize base', () => {
  // Regression: the base shipped the catalog ConfigMap with `data: {}`, so re-applying the base
  // replaced the releases the pipeline had written into the same object with nothing.
  for (const target of ['base', 'overlays/production']) {
    describe(`when built from ${target}`, () => {
      const docs = build(join(KUBERNETES, target));

      it('contains no catalog ConfigMap for `kubectl apply` to overwrite', () => {
        const catalog = docs.filter(
          (d) =>
            d.kind === 'ConfigMap' &&
            (String(d.metadata?.name).startsWith('modelgate-catalog') ||
              d.metadata?.labels?.['app.kubernetes.io/component'] === 'catalog'),
        );
        assert.deepEqual(
          catalog.map((d) => d.metadata?.name),
          [],
        );
      });

      it('mounts the catalog ConfigMap by its fixed name, not optional (no pod starts without it)', () => {
        const deployment = docs.find((d) => d.kind === 'Deployment');
        const volume = deployment?.spec?.template?.spec?.volumes?.find(
          (v: Manifest) => v.configMap?.name === 'modelgate-catalog',
        );
        assert.ok(volume, 'the Deployment mounts modelgate-catalog');
        assert.notEqual(volume.configMap.optional, true);
        assert.equal(deployment?.metadata?.namespace, 'modelgate');
      });
    });
  }

  it('keeps the catalog ConfigMap, empty, in its own file for a one-time `kubectl create`', async () => {
    const text = await readFile(join(KUBERNETES, 'catalog', 'catalog-configmap.yaml'), 'utf8');
    const [doc] = parseAllDocuments(text).map((d) => d.toJS() as Manifest);
    assert.equal(doc?.kind, 'ConfigMap');
    assert.equal(doc?.metadata?.name, 'modelgate-catalog');
    assert.equal(doc?.metadata?.namespace, 'modelgate');
    assert.match(text, /kubectl create -f deploy\/kubernetes\/catalog\/catalog-configmap\.yaml/);
  });
});
