import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CelInput, isCelError, run } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { parseAllDocuments } from 'yaml';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ADMISSION = join(REPO, 'deploy', 'kubernetes', 'admission');
const DIGEST = `sha256:${'5c'.repeat(32)}`;

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are read field by field.
type Manifest = Record<string, any>;

async function documentsOf(file: string): Promise<Manifest[]> {
  return parseAllDocuments(await readFile(join(ADMISSION, file), 'utf8')).map(
    (doc) => doc.toJS() as Manifest,
  );
}

/** JSON → CEL input: objects become maps, so `has()` and `in` behave as on Kubernetes' unstructured objects. */
function toCel(value: unknown): CelInput {
  if (Array.isArray(value)) return value.map(toCel);
  if (typeof value === 'object' && value !== null)
    return new Map(Object.entries(value).map(([k, v]) => [k, toCel(v)]));
  return value as CelInput;
}

interface Verdict {
  allowed: boolean;
  messages: string[];
}

/**
 * Evaluates the policy as the API server does: each variable in order (later
 * ones see earlier ones as `variables.<name>`), then every validation; an
 * expression that errors counts as a failure (failurePolicy: Fail).
 */
function evaluate(policy: Manifest, pod: Manifest): Verdict {
  const variables = new Map<string, CelInput>();
  const bindings = () => ({ object: toCel(pod), variables: variables as unknown as CelInput });
  for (const variable of policy.spec.variables as Manifest[]) {
    const value = run(variable.expression, bindings(), { funcs: strings });
    if (isCelError(value))
      return { allowed: false, messages: [`variable ${variable.name}: ${value.message}`] };
    variables.set(variable.name, value as CelInput);
  }
  const messages: string[] = [];
  for (const validation of policy.spec.validations as Manifest[]) {
    const result = run(validation.expression, bindings(), { funcs: strings });
    if (isCelError(result)) messages.push(`error: ${result.message}`);
    else if (result !== true) messages.push(validation.message);
  }
  return { allowed: messages.length === 0, messages };
}

function pod(spec: Manifest, annotations?: Record<string, string>): Manifest {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', namespace: 'fraud', ...(annotations ? { annotations } : {}) },
    spec: { containers: [{ name: 'server', image: 'server:1' }], ...spec },
  };
}

const fetchInit = (release: string, form: 'split' | 'equals' = 'split', prefix: string[] = []) => ({
  name: 'fetch-model',
  image: 'modelgate:0.1.0',
  ...(prefix.length > 0 ? { command: prefix } : {}),
  args:
    form === 'split'
      ? [
          'fetch',
          '--proxy',
          'http://modelgate:8080',
          '--model',
          'fraud-detector',
          '--release',
          release,
          '--dest',
          '/models',
        ]
      : ['fetch', '--model=fraud-detector', `--release=${release}`, '--dest=/models'],
});

describe('the CEL ValidatingAdmissionPolicy (deploy/kubernetes/admission)', async () => {
  const [policy] = (await documentsOf('validating-admission-policy.yaml')).filter(
    (d) => d.kind === 'ValidatingAdmissionPolicy',
  );
  assert.ok(policy, 'the file holds a ValidatingAdmissionPolicy');
  const storage = (await documentsOf('kserve-storage-container.yaml'))[0]?.spec.container;
  const kservePod = (uri: string) =>
    pod({
      initContainers: [
        {
          name: 'storage-initializer',
          image: storage.image,
          command: storage.command,
          args: [uri, '/mnt/models'],
        },
      ],
    });

  describe('when every reference is pinned by digest', () => {
    const pods: Array<[string, Manifest]> = [
      ['annotation with two entries', pod({}, { 'modelgate.dev/models': `a@${DIGEST}, team/b@${DIGEST}` })],
      ['fetch init container, split flags', pod({ initContainers: [fetchInit(DIGEST)] })],
      ['fetch init container, = flags', pod({ initContainers: [fetchInit(DIGEST, 'equals')] })],
      [
        'fetch run by the modelgate executable',
        pod({ initContainers: [fetchInit(DIGEST, 'split', ['/usr/local/bin/modelgate'])] }),
      ],
      ['KServe storage initializer', kservePod(`modelgate://fraud-detector@${DIGEST}`)],
      ['no model at all', pod({})],
      [
        'another program taking --release 1.0',
        pod({ containers: [{ name: 's', args: ['serve', '--release', '1.0'] }] }),
      ],
    ];
    for (const [what, sample] of pods) {
      it(`admits a Pod with ${what}`, () => {
        assert.deepEqual(evaluate(policy, sample), { allowed: true, messages: [] });
      });
    }

    it('admits the example inference Pod', async () => {
      const docs = parseAllDocuments(
        await readFile(join(REPO, 'deploy/kubernetes/examples/inference-pod.yaml'), 'utf8'),
      );
      const example = docs.map((d) => d.toJS() as Manifest).find((d) => d.kind === 'Pod');
      assert.ok(example);
      assert.equal(evaluate(policy, example).allowed, true);
    });
  });

  describe('when a reference is mutable', () => {
    const pods: Array<[string, Manifest, RegExp]> = [
      [
        'an annotation entry with a version',
        pod({}, { 'modelgate.dev/models': `a@${DIGEST},b@1.0` }),
        /annotation/,
      ],
      [
        'an annotation entry with a tag',
        pod({}, { 'modelgate.dev/models': 'fraud-detector:latest' }),
        /annotation/,
      ],
      [
        'an annotation entry with a short digest',
        pod({}, { 'modelgate.dev/models': 'a@sha256:5c5c' }),
        /annotation/,
      ],
      ['fetch --release 1.0', pod({ initContainers: [fetchInit('1.0')] }), /--release/],
      ['fetch --release=latest', pod({ initContainers: [fetchInit('latest', 'equals')] }), /--release/],
      [
        'a second fetch init container with a version',
        pod({ initContainers: [fetchInit(DIGEST), { ...fetchInit('2.0'), name: 'fetch-second' }] }),
        /--release/,
      ],
      [
        'fetch run by the modelgate executable with a version',
        pod({ initContainers: [fetchInit('1.0', 'split', ['modelgate'])] }),
        /--release/,
      ],
      ['a KServe storage URI with a version', kservePod('modelgate://fraud-detector@1.0'), /storage URIs/],
    ];
    for (const [what, sample, message] of pods) {
      it(`refuses a Pod with ${what}`, () => {
        const verdict = evaluate(policy, sample);
        assert.equal(verdict.allowed, false);
        assert.ok(
          verdict.messages.some((m) => message.test(m)),
          verdict.messages.join('\n'),
        );
      });
    }
  });
});
