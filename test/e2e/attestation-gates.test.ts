import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createAttestCommand } from '../../src/commands/attest.ts';
import { type Harness, startHarness } from '../helpers/proxy.ts';

/**
 * Attestation gates, lineage and exceptions through a real proxy: the same
 * decision `modelgate report` and the admission webhook make, applied to
 * every request (docs/attestations.md).
 */

const SCAN = 'https://modelgate.dev/attestation/scan/v1';
const PROVENANCE = 'https://slsa.dev/provenance/v1';
const BUILDER = 'https://ci.example/release';
// Real time: the tokens the harness mints are checked against the same injected clock.
const START = Date.now();
const EXPIRES = new Date(START + 10 * 60_000).toISOString();

const quiet = { stdout: { write: () => true }, stderr: { write: () => true } };

function pem(dir: string, name: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privateFile: join(dir, `${name}.key.pem`),
    publicFile: join(dir, `${name}.pub.pem`),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

describe('attestation gates through the proxy', () => {
  let h: Harness;
  let now = START;
  let keysDir: string;
  let n = 0;
  const attestors = { scanner: pem('', 'scanner'), ci: pem('', 'ci'), stranger: pem('', 'stranger') };

  async function attest(
    model: string,
    digest: string,
    type: string,
    predicate: unknown,
    by: keyof typeof attestors,
  ) {
    const file = join(keysDir, `predicate-${n++}.json`);
    await writeFile(file, JSON.stringify(predicate));
    const out = join(h.catalogDir, 'attestations', `${model}-${n}.json`);
    const args = ['--release', `${model}@${digest}`, '--predicate-type', type, '--predicate', file];
    assert.equal(
      await createAttestCommand(quiet).run([...args, '--key', attestors[by].privateFile, '--out', out]),
      0,
    );
  }

  const provenance = (parents: string[] = [], builder = BUILDER) => ({
    buildDefinition: { resolvedDependencies: parents.map((d) => ({ digest: { sha256: d.slice(7) } })) },
    runDetails: { builder: { id: builder } },
  });

  async function release(model: string, extra: { parent?: string; environment?: string } = {}) {
    return (
      await h.addRelease({
        model,
        version: '1',
        ...(extra.environment ? { environment: extra.environment } : {}),
        ...(extra.parent ? { parent: extra.parent } : {}),
        files: [{ path: 'model.bin', bytes: Buffer.from(`weights of ${model}`) }],
      })
    ).digest;
  }

  const get = (model: string, digest: string) =>
    h.request(`/v1/models/${model}/releases/${digest}/files/model.bin`);
  async function codeOf(response: Response): Promise<string | undefined> {
    if (response.ok) {
      await response.arrayBuffer();
      return undefined;
    }
    return ((await response.json()) as { error: { code: string } }).error.code;
  }

  before(async () => {
    // Keys first: the harness writes its config with the attestors' key paths.
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    keysDir = await mkdtemp(join(tmpdir(), 'modelgate-attestors-'));
    for (const [name, key] of Object.entries(attestors)) {
      key.privateFile = join(keysDir, `${name}.key.pem`);
      key.publicFile = join(keysDir, `${name}.pub.pem`);
      await writeFile(key.privateFile, key.privatePem);
      await writeFile(key.publicFile, key.publicPem);
    }
    h = await startHarness({
      clock: () => now,
      grants: [{ models: ['fraud-*', 'audit-*'], environments: ['prod', 'staging'] }],
      environments: {
        prod: {
          mode: 'enforce',
          digestRefsOnly: true,
          requiredAttestations: [
            {
              name: 'provenance',
              predicateType: PROVENANCE,
              attestors: ['ci'],
              conditions: [{ path: 'predicate.runDetails.builder.id', equals: BUILDER }],
            },
            {
              name: 'scan',
              predicateType: SCAN,
              attestors: ['scanner'],
              conditions: [{ path: 'predicate.result', in: ['pass'] }],
            },
          ],
          lineage: { requireParentFor: ['*-int8'], parentEnvironments: ['prod'] },
        },
        staging: {
          mode: 'audit',
          requiredAttestations: [{ name: 'scan', predicateType: SCAN, attestors: ['scanner'] }],
        },
      },
      config: {
        attestors: [
          { name: 'scanner', publicKeyFile: attestors.scanner.publicFile },
          { name: 'ci', publicKeyFile: attestors.ci.publicFile },
        ],
        exceptions: [
          {
            id: 'EXC-12',
            owner: 'ml-platform',
            justification: 'scanner outage, manual review done',
            environment: 'prod',
            models: ['fraud-waived'],
            waive: ['scan'],
            created: new Date(START - 86_400_000).toISOString(),
            expires: EXPIRES,
          },
        ],
      },
    });
    await mkdir(join(h.catalogDir, 'attestations'), { recursive: true });
  });

  after(async () => {
    await h.stop();
  });

  describe('in an enforce environment requiring provenance (builder condition) and a scan', () => {
    it('serves a release that has both', async () => {
      const digest = await release('fraud-good');
      await attest('fraud-good', digest, PROVENANCE, provenance(), 'ci');
      await attest('fraud-good', digest, SCAN, { result: 'pass' }, 'scanner');
      await h.app.reload();
      const response = await get('fraud-good', digest);
      assert.equal(response.status, 200, await response.clone().text());
      assert.equal(await codeOf(response), undefined);
      assert.equal(
        await h.metric('modelgate_retrievals_total', { environment: 'prod', verified: 'true' }),
        1,
      );
    });

    it('refuses a release without the scan with 403 MG_ATTESTATION_MISSING', async () => {
      const digest = await release('fraud-noscan');
      await attest('fraud-noscan', digest, PROVENANCE, provenance(), 'ci');
      await h.app.reload();
      const response = await get('fraud-noscan', digest);
      assert.equal(response.status, 403);
      assert.equal(await codeOf(response), 'MG_ATTESTATION_MISSING');
    });

    it('refuses a failing scan with 403 MG_ATTESTATION_CONDITION', async () => {
      const digest = await release('fraud-failing');
      await attest('fraud-failing', digest, PROVENANCE, provenance(), 'ci');
      await attest('fraud-failing', digest, SCAN, { result: 'fail' }, 'scanner');
      await h.app.reload();
      assert.equal(await codeOf(await get('fraud-failing', digest)), 'MG_ATTESTATION_CONDITION');
    });

    it('refuses a scan signed by a key that is not an attestor', async () => {
      const digest = await release('fraud-forged');
      await attest('fraud-forged', digest, PROVENANCE, provenance(), 'ci');
      await attest('fraud-forged', digest, SCAN, { result: 'pass' }, 'stranger');
      await h.app.reload();
      const response = await get('fraud-forged', digest);
      assert.equal(response.status, 403);
      assert.equal(await codeOf(response), 'MG_ATTESTATION_MISSING');
      assert.ok(
        (await h.metric('modelgate_catalog_rejected_total', { reason: 'attestation_unverified' })) >= 1,
      );
    });

    it('counts every refusal as a policy violation of the environment', async () => {
      assert.equal(
        await h.metric('modelgate_policy_violations_total', {
          environment: 'prod',
          violation: 'attestation_missing',
          mode: 'enforce',
        }),
        2,
      );
      assert.equal(
        await h.metric('modelgate_policy_violations_total', {
          environment: 'prod',
          violation: 'attestation_condition',
          mode: 'enforce',
        }),
        1,
      );
    });
  });

  describe('in an audit environment', () => {
    it('serves a release lacking its scan, counts the violation and the unverified retrieval', async () => {
      const digest = await release('audit-model', { environment: 'staging' });
      const response = await get('audit-model', digest);
      assert.equal(response.status, 200);
      await response.arrayBuffer();
      assert.equal(
        await h.metric('modelgate_policy_violations_total', {
          environment: 'staging',
          violation: 'attestation_missing',
          mode: 'audit',
        }),
        1,
      );
      assert.equal(
        await h.metric('modelgate_retrievals_total', { environment: 'staging', verified: 'false' }),
        1,
      );
    });
  });

  describe('lineage', () => {
    let original: string;
    before(async () => {
      original = await release('fraud-base');
      await attest('fraud-base', original, PROVENANCE, provenance(), 'ci');
      await attest('fraud-base', original, SCAN, { result: 'pass' }, 'scanner');
      await h.app.reload();
    });

    it('serves a quantized release naming its parent with provenance, and shows the chain on the manifest', async () => {
      const digest = await release('fraud-int8', { parent: original });
      await attest('fraud-int8', digest, PROVENANCE, provenance([original]), 'ci');
      await attest('fraud-int8', digest, SCAN, { result: 'pass' }, 'scanner');
      await h.app.reload();
      assert.equal((await get('fraud-int8', digest)).status, 200);
      const manifest = await h.request(`/v1/models/fraud-int8/releases/${digest}`);
      assert.equal(manifest.headers.get('modelgate-release-lineage'), `${digest}, ${original}`);
    });

    it('refuses the same without the provenance naming the parent, with MG_LINEAGE_BROKEN', async () => {
      const digest = await release('fraud-orphan-int8', { parent: original });
      await attest('fraud-orphan-int8', digest, PROVENANCE, provenance([]), 'ci');
      await attest('fraud-orphan-int8', digest, SCAN, { result: 'pass' }, 'scanner');
      await h.app.reload();
      assert.equal(await codeOf(await get('fraud-orphan-int8', digest)), 'MG_LINEAGE_BROKEN');
    });

    it('refuses a release whose parent is not in the catalog', async () => {
      const missing = `sha256:${'c'.repeat(64)}`;
      const digest = await release('fraud-lost-int8', { parent: missing });
      await attest('fraud-lost-int8', digest, PROVENANCE, provenance([missing]), 'ci');
      await attest('fraud-lost-int8', digest, SCAN, { result: 'pass' }, 'scanner');
      await h.app.reload();
      assert.equal(await codeOf(await get('fraud-lost-int8', digest)), 'MG_LINEAGE_BROKEN');
    });
  });

  describe('an exception waiving the scan', () => {
    it('serves the release until the exception expires, with its id in the audit line, and refuses it after', async () => {
      const digest = await release('fraud-waived');
      await attest('fraud-waived', digest, PROVENANCE, provenance(), 'ci');
      await h.app.reload();
      const response = await get('fraud-waived', digest);
      assert.equal(response.status, 200);
      await response.arrayBuffer();
      const line = h.logs.findLast((l) => l.event === 'retrieval' && l.release === digest);
      assert.deepEqual(line?.exceptions, ['EXC-12']);
      assert.equal(await h.metric('modelgate_exception_requests_total', { id: 'EXC-12' }), 1);
      now = Date.parse(EXPIRES);
      assert.equal(await codeOf(await get('fraud-waived', digest)), 'MG_ATTESTATION_MISSING');
      now = START;
    });
  });
});
