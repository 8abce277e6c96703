import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ContainerUnderReview, PodUnderReview } from '../../src/admission/admission.types.ts';
import { extractReferences } from '../../src/admission/references.ts';
import { parseConfig } from '../../src/config/load.ts';

const DIGEST = `sha256:${'0a'.repeat(32)}`;

function pod(
  annotations: Record<string, unknown>,
  containers: Partial<ContainerUnderReview>[] = [],
): PodUnderReview {
  return {
    namespace: 'fraud',
    serviceAccount: 'inference',
    annotations,
    containers: containers.map((c, i) => ({
      kind: 'initContainers',
      name: `c${i}`,
      image: '',
      argv: [],
      ...c,
    })),
  };
}

describe('reading model references from a Pod', () => {
  describe('when the annotation lists references', () => {
    it('reads digests, and reads @version and :tag entries as version references', () => {
      const refs = extractReferences(
        pod({
          'modelgate.dev/models': ` fraud-detector@${DIGEST}, team/churn@2026.1 ,fraud-detector:latest`,
        }),
      );
      assert.deepEqual(
        refs.map((r) => (r.ok ? [r.model, r.ref] : r.problem)),
        [
          ['fraud-detector', { kind: 'digest', digest: DIGEST }],
          ['team/churn', { kind: 'version', version: '2026.1' }],
          ['fraud-detector', { kind: 'version', version: 'latest' }],
        ],
      );
    });

    it('reports a bare model name, a short digest and a bad model name as problems', () => {
      const refs = extractReferences(pod({ 'modelgate.dev/models': 'fraud-detector,m@sha256:abc,Bad@1.0' }));
      assert.deepEqual(
        refs.map((r) => r.ok),
        [false, false, false],
      );
    });
  });

  describe('when containers run modelgate fetch', () => {
    it('reads --model/--release in split and = forms, after the modelgate executable or as first argument', () => {
      const refs = extractReferences(
        pod({}, [
          { argv: ['fetch', '--model', 'a', '--release', DIGEST] },
          { argv: ['/usr/local/bin/modelgate', 'fetch', '--model=b', '--release=1.0'] },
          { argv: ['python', 'serve.py', '--model', 'not-a-fetch'] },
        ]),
      );
      assert.deepEqual(
        refs.map((r) => (r.ok ? `${r.source} ${r.model}` : r.problem)),
        ['initContainers[c0] a', 'initContainers[c1] b'],
      );
    });

    it('reads modelgate:// storage URIs a KServe storage container gets as arguments', () => {
      const refs = extractReferences(
        pod({}, [
          {
            name: 'storage-initializer',
            argv: [
              '/bin/sh',
              '-c',
              'script',
              'modelgate-storage',
              `modelgate://team/fraud@${DIGEST}`,
              '/mnt/models',
            ],
          },
        ]),
      );
      assert.equal(refs.length, 1);
      assert.ok(refs[0]?.ok);
      assert.equal(refs[0].model, 'team/fraud');
      assert.deepEqual(refs[0].ref, { kind: 'digest', digest: DIGEST });
    });

    it('refuses a repeated --model and a fetch hidden in a shell line (fail closed)', () => {
      const refs = extractReferences(
        pod({}, [
          { argv: ['fetch', '--model', 'a', '--model', 'b', '--release', DIGEST] },
          { argv: ['sh', '-c', `modelgate fetch --model a --release ${DIGEST}`] },
        ]),
      );
      assert.deepEqual(
        refs.map((r) => r.ok),
        [false, false],
      );
      assert.match(refs[1]?.ok === false ? refs[1].problem : '', /shell line/);
    });
  });
});

describe('the admission configuration', () => {
  const base = {
    catalog: { dir: '/tmp' },
    issuers: [
      {
        name: 'k',
        issuer: 'https://k.example',
        jwksFile: '/tmp/k.json',
        audiences: ['m'],
        algorithms: ['ES256'],
        kubernetes: true,
      },
    ],
    serviceAccounts: [],
  };

  it('refuses an admission listener without TLS', () => {
    assert.throws(
      () => parseConfig(JSON.stringify({ ...base, admission: { port: 8443 } }), '/tmp/modelgate.yaml', {}),
      /admission.*tls/s,
    );
  });

  it('fills defaults: 0.0.0.0:8443, requireModels false, issuers not kubernetes unless marked', () => {
    const config = parseConfig(
      JSON.stringify({ ...base, admission: { tls: { cert: 'a.crt', key: 'a.key' } } }),
      '/tmp/modelgate.yaml',
      {},
    );
    assert.deepEqual(config.admission, {
      address: '0.0.0.0',
      port: 8443,
      requireModels: false,
      tls: { cert: 'a.crt', key: 'a.key' },
    });
    assert.equal(config.issuers[0]?.kubernetes, true);
  });
});
