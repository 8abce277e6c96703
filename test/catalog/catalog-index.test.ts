import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  buildIndex,
  countByEnvironment,
  releasesWithFileIn,
  resolveInIndex,
} from '../../src/catalog/catalog-index.ts';
import type { Manifest, Release, ReleaseTrust } from '../../src/catalog/release.types.ts';
import { isModelgateError } from '../../src/errors.ts';

function release(
  model: string,
  version: string,
  digestChar: string,
  options: { trust?: ReleaseTrust; environment?: string; fileDigest?: string; sourceFile?: string } = {},
): Release {
  const file = {
    path: 'model.bin',
    size: 1,
    digest: `sha256:${(options.fileDigest ?? 'f').repeat(64)}`,
    sources: ['file:model.bin'],
  };
  const manifest: Manifest = {
    schema: 'modelgate/release/v1',
    model,
    version,
    environment: options.environment ?? 'prod',
    created: '2026-11-25T10:00:00Z',
    files: [file],
  };
  return {
    model,
    version,
    environment: manifest.environment,
    digest: `sha256:${digestChar.repeat(64)}`,
    payload: Buffer.from(JSON.stringify(manifest)),
    manifest,
    signer: options.trust === 'unsigned' ? null : 'ci',
    trust: options.trust ?? 'trusted',
    sourceFile: options.sourceFile ?? `/catalog/${model}-${version}-${digestChar}.jws`,
    files: new Map([[file.path, file]]),
  };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isModelgateError(error) ? error.code : 'not a ModelgateError';
  }
  return undefined;
}

describe('catalog index (pure)', () => {
  it('resolves a version and a digest of the same release', () => {
    const a = release('fraud', '1', 'a');
    const { index, conflicts } = buildIndex([a]);
    assert.equal(resolveInIndex(index, 'fraud', { kind: 'version', version: '1' }), a);
    assert.equal(resolveInIndex(index, 'fraud', { kind: 'digest', digest: a.digest }), a);
    assert.deepEqual(conflicts, []);
  });

  it('tells an unknown model from an unknown release', () => {
    const { index } = buildIndex([release('fraud', '1', 'a')]);
    assert.equal(
      codeOf(() => resolveInIndex(index, 'other', { kind: 'version', version: '1' })),
      'MG_MODEL_NOT_FOUND',
    );
    assert.equal(
      codeOf(() => resolveInIndex(index, 'fraud', { kind: 'version', version: '2' })),
      'MG_RELEASE_NOT_FOUND',
    );
    assert.equal(
      codeOf(() => resolveInIndex(index, 'fraud', { kind: 'digest', digest: `sha256:${'b'.repeat(64)}` })),
      'MG_RELEASE_NOT_FOUND',
    );
  });

  it('does not resolve a digest of another model’s release', () => {
    const other = release('other', '1', 'b');
    const { index } = buildIndex([release('fraud', '1', 'a'), other]);
    assert.equal(
      codeOf(() => resolveInIndex(index, 'fraud', { kind: 'digest', digest: other.digest })),
      'MG_RELEASE_NOT_FOUND',
    );
  });

  describe('when two different manifests claim one version', () => {
    it('reports the conflict with both files, answers 409 by version and still resolves each digest', () => {
      const a = release('fraud', '1', 'a');
      const b = release('fraud', '1', 'b');
      const { index, conflicts } = buildIndex([a, b]);
      assert.deepEqual(conflicts, [{ model: 'fraud', version: '1', files: [a.sourceFile, b.sourceFile] }]);
      assert.equal(
        codeOf(() => resolveInIndex(index, 'fraud', { kind: 'version', version: '1' })),
        'MG_RELEASE_CONFLICT',
      );
      assert.equal(resolveInIndex(index, 'fraud', { kind: 'digest', digest: b.digest }), b);
    });
  });

  describe('when one payload is in the catalog twice', () => {
    it('keeps the most trusted copy, whatever the order, and reports no conflict', () => {
      const unsigned = release('fraud', '1', 'a', { trust: 'unsigned', sourceFile: '/c/a.json' });
      const signed = release('fraud', '1', 'a', { sourceFile: '/c/a.jws' });
      for (const order of [
        [unsigned, signed],
        [signed, unsigned],
      ]) {
        const { index, conflicts } = buildIndex(order);
        assert.equal(index.all.length, 1);
        assert.equal(resolveInIndex(index, 'fraud', { kind: 'version', version: '1' }).trust, 'trusted');
        assert.deepEqual(conflicts, []);
      }
    });
  });

  it('finds every release of a model listing a file digest, and none of other models', () => {
    const a = release('fraud', '1', 'a', { fileDigest: 'c' });
    const b = release('fraud', '2', 'b', { fileDigest: 'c' });
    const other = release('other', '1', 'd', { fileDigest: 'c' });
    const { index } = buildIndex([a, b, other]);
    const found = releasesWithFileIn(index, 'fraud', `sha256:${'c'.repeat(64)}`).map(
      (entry) => entry.release,
    );
    assert.deepEqual(found, [a, b]);
    assert.deepEqual(releasesWithFileIn(index, 'fraud', `sha256:${'e'.repeat(64)}`), []);
  });

  it('counts releases per environment', () => {
    const { index } = buildIndex([
      release('a', '1', 'a', { environment: 'prod' }),
      release('b', '1', 'b', { environment: 'prod' }),
      release('c', '1', 'c', { environment: 'staging' }),
    ]);
    assert.deepEqual(
      [...countByEnvironment(index)],
      [
        ['prod', 2],
        ['staging', 1],
      ],
    );
  });
});
