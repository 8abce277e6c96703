import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  isValidFilePath,
  isValidModelName,
  isValidVersion,
  ManifestError,
  validateManifest,
} from '../../src/catalog/manifest.ts';

const HEX = 'a'.repeat(64);
const MiB = 1024 * 1024;

/** A valid manifest; each case below breaks one rule of SPEC §1. */
function validManifest(): Record<string, unknown> {
  return {
    schema: 'modelgate/release/v1',
    model: 'team/fraud-detector',
    version: '2026.11.3+build-7',
    environment: 'prod',
    created: '2026-11-25T10:00:00Z',
    provenance: { source: 'git+https://example.com/ml/fraud@3f2a9c1', builder: 'ci/release' },
    files: [
      {
        path: 'model.safetensors',
        size: 3 * MiB + 5,
        digest: `sha256:${HEX}`,
        chunkSize: MiB,
        chunks: [HEX, HEX, HEX, HEX],
        sources: ['s3://ml-models/fraud/model.safetensors', 'gs://ml-mirror/fraud/model.safetensors'],
      },
      {
        path: 'config/tokenizer.json',
        size: 10,
        digest: `sha256:${HEX}`,
        sources: ['az://mlmodels/models/fraud/tokenizer.json', 'file:fraud/2026.11.3/config/tokenizer.json'],
      },
      {
        path: 'empty.bin',
        size: 0,
        digest: `sha256:${HEX}`,
        chunkSize: MiB,
        chunks: [],
        sources: ['file:e'],
      },
    ],
  };
}

function file(manifest: Record<string, unknown>, i: number): Record<string, unknown> {
  return (manifest.files as Record<string, unknown>[])[i]!;
}

function problemsOf(value: unknown): { path: string; message: string }[] {
  try {
    validateManifest(value);
  } catch (error) {
    assert.ok(error instanceof ManifestError, `expected a ManifestError, got ${String(error)}`);
    return error.problems;
  }
  assert.fail('expected the manifest to be rejected');
}

function assertRejectedAt(value: unknown, path: string): void {
  const paths = problemsOf(value).map((p) => p.path);
  assert.ok(paths.includes(path), `expected a problem at ${path}, got ${JSON.stringify(paths)}`);
}

const cases: Array<[string, (m: Record<string, unknown>) => void, string]> = [
  ['the schema is another version', (m) => (m.schema = 'modelgate/release/v2'), 'schema'],
  ['the model has an uppercase letter', (m) => (m.model = 'Fraud'), 'model'],
  ['the model has an empty segment', (m) => (m.model = 'team//fraud'), 'model'],
  ['the model ends with a dash', (m) => (m.model = 'fraud-'), 'model'],
  ['the model is longer than 255 characters', (m) => (m.model = 'a'.repeat(256)), 'model'],
  ['the version contains a slash', (m) => (m.version = '1.0/2'), 'version'],
  ['the version is empty', (m) => (m.version = ''), 'version'],
  ['the version is ".."', (m) => (m.version = '..'), 'version'],
  ['the version is longer than 128 characters', (m) => (m.version = '1'.repeat(129)), 'version'],
  ['the environment has an uppercase letter', (m) => (m.environment = 'Prod'), 'environment'],
  ['created is not RFC 3339', (m) => (m.created = '2026-11-25 10:00'), 'created'],
  ['created has month 13', (m) => (m.created = '2026-13-01T00:00:00Z'), 'created'],
  ['created is 30 February', (m) => (m.created = '2026-02-30T00:00:00Z'), 'created'],
  ['a provenance value is not a string', (m) => (m.provenance = { buildId: 8812 }), 'provenance.buildId'],
  ['there is an unknown top-level key', (m) => (m.signature = 'x'), 'signature'],
  ['files is empty', (m) => (m.files = []), 'files'],
  ['a path is absolute', (m) => (file(m, 0).path = '/etc/passwd'), 'files[0].path'],
  ['a path has a ".." segment', (m) => (file(m, 0).path = 'a/../../b'), 'files[0].path'],
  ['a path has a "." segment', (m) => (file(m, 0).path = './a'), 'files[0].path'],
  ['a path has an empty segment', (m) => (file(m, 0).path = 'a//b'), 'files[0].path'],
  ['a path has a trailing slash', (m) => (file(m, 0).path = 'a/'), 'files[0].path'],
  ['a path has a backslash', (m) => (file(m, 0).path = 'a\\b'), 'files[0].path'],
  ['a path has a NUL', (m) => (file(m, 0).path = 'a\0b'), 'files[0].path'],
  ['two files share a path', (m) => (file(m, 1).path = 'model.safetensors'), 'files[1].path'],
  ['a size is negative', (m) => (file(m, 1).size = -1), 'files[1].size'],
  ['a size is fractional', (m) => (file(m, 1).size = 1.5), 'files[1].size'],
  ['a size is beyond 2^53-1', (m) => (file(m, 1).size = 2 ** 53), 'files[1].size'],
  ['a digest is uppercase hex', (m) => (file(m, 1).digest = `sha256:${'A'.repeat(64)}`), 'files[1].digest'],
  ['a digest is another algorithm', (m) => (file(m, 1).digest = `sha512:${HEX}`), 'files[1].digest'],
  ['a chunk size is not a power of two', (m) => (file(m, 0).chunkSize = 3 * MiB), 'files[0].chunkSize'],
  ['a chunk size is below 1 MiB', (m) => (file(m, 0).chunkSize = 512 * 1024), 'files[0].chunkSize'],
  ['a chunk size is above 1 GiB', (m) => (file(m, 0).chunkSize = 2048 * MiB), 'files[0].chunkSize'],
  ['chunks come without a chunk size', (m) => delete file(m, 0).chunkSize, 'files[0].chunkSize'],
  ['a chunk size comes without chunks', (m) => delete file(m, 0).chunks, 'files[0].chunks'],
  ['a chunk is missing', (m) => (file(m, 0).chunks = [HEX, HEX, HEX]), 'files[0].chunks'],
  ['there is one chunk too many', (m) => (file(m, 0).chunks = [HEX, HEX, HEX, HEX, HEX]), 'files[0].chunks'],
  ['an empty file lists one chunk', (m) => (file(m, 2).chunks = [HEX]), 'files[2].chunks'],
  ['a chunk digest is short', (m) => (file(m, 0).chunks = [HEX, HEX, HEX, 'abc']), 'files[0].chunks[3]'],
  ['sources is empty', (m) => (file(m, 0).sources = []), 'files[0].sources'],
  ['a source has an unknown scheme', (m) => (file(m, 0).sources = ['http://x/y']), 'files[0].sources[0]'],
  ['an s3 source has no key', (m) => (file(m, 0).sources = ['s3://bucket/']), 'files[0].sources[0]'],
  ['an s3 bucket is malformed', (m) => (file(m, 0).sources = ['s3://B/key']), 'files[0].sources[0]'],
  [
    'an az source has no blob',
    (m) => (file(m, 0).sources = ['az://account/container']),
    'files[0].sources[0]',
  ],
  ['a file source climbs out', (m) => (file(m, 1).sources = ['file:../etc/passwd']), 'files[1].sources[0]'],
  ['a file source is absolute', (m) => (file(m, 1).sources = ['file:/etc/passwd']), 'files[1].sources[0]'],
  ['a file entry has an unknown key', (m) => (file(m, 1).mode = 'rw'), 'files[1].mode'],
  ['a file entry lacks its digest', (m) => delete file(m, 1).digest, 'files[1].digest'],
];

describe('when a manifest follows every rule of SPEC §1', () => {
  it('returns it, including an empty file with zero chunks', () => {
    const manifest = validManifest();
    assert.equal(validateManifest(manifest), manifest);
  });
});

describe('when a manifest breaks one rule', () => {
  for (const [scenario, breakIt, path] of cases) {
    it(`reports ${path} when ${scenario}`, () => {
      const manifest = validManifest();
      breakIt(manifest);
      assertRejectedAt(manifest, path);
    });
  }
});

describe('when a manifest breaks several rules', () => {
  it('lists every problem with its path and a readable message', () => {
    const manifest = validManifest();
    manifest.version = 'a/b';
    file(manifest, 1).digest = 'sha256:xyz';
    file(manifest, 2).path = '../x';
    const problems = problemsOf(manifest);
    assert.deepEqual(problems.map((p) => p.path).sort(), ['files[1].digest', 'files[2].path', 'version']);
    const digest = problems.find((p) => p.path === 'files[1].digest');
    assert.equal(digest?.message, 'must be sha256: followed by 64 lowercase hex');
  });
});

describe('when the value is not an object', () => {
  it('rejects it at the root', () => {
    assertRejectedAt([], '');
    assertRejectedAt(null, '');
  });
});

describe('when the router validates URL input', () => {
  it('accepts names, versions and paths the manifest accepts and refuses the rest', () => {
    assert.equal(isValidModelName('team/fraud-detector'), true);
    assert.equal(isValidModelName('team/Fraud'), false);
    assert.equal(isValidModelName(''), false);
    assert.equal(isValidVersion('2026.11.3'), true);
    assert.equal(isValidVersion('sha256:abc'), false);
    assert.equal(isValidVersion('.'), false);
    assert.equal(isValidFilePath('a/b.bin'), true);
    assert.equal(isValidFilePath('a/../b'), false);
    assert.equal(isValidFilePath('a%2fb'), true);
  });
});
