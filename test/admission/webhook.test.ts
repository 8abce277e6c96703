import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { sha256Digest } from '../../src/catalog/signature.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type App, createApp } from '../../src/server/app.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.ts';
import { buildManifest, releaseDigest, signRelease, writeRelease } from '../helpers/releases.ts';
import { createServeFixture, type ServeFixture } from '../helpers/serve-fixture.ts';
import { podReview, postReview, writeSelfSignedCert } from './webhook-fixture.ts';

const UNKNOWN = `sha256:${'ab'.repeat(32)}`;

function fetchContainer(name: string, model: string, release: string, form: 'split' | 'equals' = 'split') {
  const args =
    form === 'split'
      ? [
          'fetch',
          '--proxy',
          'http://modelgate.modelgate:8080',
          '--model',
          model,
          '--release',
          release,
          '--dest',
          '/models',
        ]
      : [
          'fetch',
          '--proxy=http://modelgate.modelgate:8080',
          `--model=${model}`,
          `--release=${release}`,
          '--dest=/models',
        ];
  return { name, image: 'registry.example.com/platform/modelgate:0.1.0', args };
}

describe('the admission webhook', () => {
  let fixture: ServeFixture;
  let app: App;
  let metrics: Metrics;
  let url: string;
  let ca: Buffer;
  let signed: string;
  let unsigned: string;
  let stagingUnsigned: string;
  let uid = 0;

  const post = async (environment: string, review: Record<string, unknown>) => {
    const result = await postReview(url, `/validate/pods/${environment}`, JSON.stringify(review), ca);
    return result;
  };
  const nextUid = () => `0f9b2c1e-7d4a-4c55-8a1b-${String(++uid).padStart(12, '0')}`;

  before(async () => {
    fixture = await createServeFixture('admission');
    const manifest = (version: string, environment = 'prod') =>
      buildManifest({
        model: 'fraud-detector',
        version,
        environment,
        files: [{ path: 'model.bin', bytes: Buffer.from(`weights ${version}`), sources: ['file:model.bin'] }],
      });
    const jws = await signRelease(manifest('1.0'), fixture.signer);
    await writeRelease(fixture.releases, 'fraud-1.0', jws);
    signed = releaseDigest(jws);
    const unsignedBytes = Buffer.from(JSON.stringify(manifest('2.0')));
    await writeFile(join(fixture.releases, 'fraud-2.0.json'), unsignedBytes);
    unsigned = sha256Digest(unsignedBytes);
    const stagingBytes = Buffer.from(JSON.stringify(manifest('3.0-rc1', 'staging')));
    await writeFile(join(fixture.releases, 'fraud-3.0-rc1.json'), stagingBytes);
    stagingUnsigned = sha256Digest(stagingBytes);

    const tls = await writeSelfSignedCert(fixture.dir, 'webhook');
    ca = await readFile(tls.cert);
    const base = fixture.config();
    const config = fixture.config({
      transfer: { hashWorkers: false },
      issuers: (base.issuers as Array<Record<string, unknown>>).map((i) => ({ ...i, kubernetes: true })),
      serviceAccounts: [
        ...(base.serviceAccounts as unknown[]),
        {
          name: 'batch',
          issuer: 't',
          subject: 'system:serviceaccount:fraud:batch',
          grants: [{ models: ['churn-*'], environments: ['prod'] }],
        },
        {
          name: 'staging-inference',
          issuer: 't',
          subject: 'system:serviceaccount:fraud-staging:inference',
          grants: [{ models: ['fraud-*'], environments: ['staging'] }],
        },
      ],
      environments: {
        prod: { mode: 'enforce', digestRefsOnly: true },
        staging: { mode: 'audit', digestRefsOnly: true },
      },
      // Relative paths: resolved against the configuration file's folder.
      admission: {
        address: '127.0.0.1',
        port: 0,
        tls: { cert: 'webhook.crt', key: 'webhook.key' },
        requireModels: true,
      },
    });
    metrics = createMetrics({ defaultMetrics: false });
    const parsed = parseConfig(stringify(config), join(fixture.dir, 'modelgate.yaml'), {});
    app = await createApp({ config: parsed, logger: createLogger({ level: 'silent' }), metrics });
    const urls = await app.start();
    assert.ok(urls.admissionUrl, 'start() reports the admission listener');
    url = urls.admissionUrl;
  });

  after(async () => {
    await app?.shutdown(0);
    await fixture?.remove();
  });

  describe('when a Pod references a granted, signed release by digest', () => {
    it('allows it and echoes the uid, without status or warnings', async () => {
      const id = nextUid();
      const { status, body } = await post(
        'prod',
        podReview(id, {
          serviceAccountName: 'inference',
          annotations: { 'modelgate.dev/models': `fraud-detector@${signed}` },
          initContainers: [fetchContainer('fetch-model', 'fraud-detector', signed)],
        }),
      );
      assert.equal(status, 200);
      assert.equal(body.apiVersion, 'admission.k8s.io/v1');
      assert.equal(body.kind, 'AdmissionReview');
      assert.equal(body.response.uid, id);
      assert.equal(body.response.allowed, true);
      assert.equal(body.response.status, undefined);
      assert.equal(body.response.warnings, undefined);
    });
  });

  describe('when a Pod references a version in a digest-only environment', () => {
    it('denies it naming the reference and the digest requirement', async () => {
      const id = nextUid();
      const { body } = await post(
        'prod',
        podReview(id, {
          serviceAccountName: 'inference',
          initContainers: [fetchContainer('fetch', 'fraud-detector', '1.0')],
        }),
      );
      assert.equal(body.response.uid, id);
      assert.equal(body.response.allowed, false);
      assert.equal(body.response.status.code, 403);
      assert.match(
        body.response.status.message,
        /MG_DIGEST_REF_REQUIRED initContainers\[fetch\] fraud-detector@1\.0: .*requires a sha256: release reference/,
      );
    });
  });

  describe('when a Pod references a digest the catalog does not hold', () => {
    it('denies it naming the digest', async () => {
      const { body } = await post(
        'prod',
        podReview(nextUid(), {
          serviceAccountName: 'inference',
          annotations: { 'modelgate.dev/models': `fraud-detector@${UNKNOWN}` },
        }),
      );
      assert.equal(body.response.allowed, false);
      assert.match(
        body.response.status.message,
        new RegExp(
          `MG_RELEASE_NOT_FOUND annotation modelgate.dev/models fraud-detector@${UNKNOWN}: no such release`,
        ),
      );
    });
  });

  describe('when a Pod references an unsigned release in an enforcing environment', () => {
    it('denies it with the policy violation', async () => {
      const { body } = await post(
        'prod',
        podReview(nextUid(), {
          serviceAccountName: 'inference',
          annotations: { 'modelgate.dev/models': `fraud-detector@${unsigned}` },
        }),
      );
      assert.equal(body.response.allowed, false);
      assert.match(
        body.response.status.message,
        new RegExp(`MG_RELEASE_UNSIGNED .*fraud-detector@${unsigned}: the release manifest is not signed`),
      );
    });
  });

  describe("when the Pod's service account is not granted the model", () => {
    it('denies it naming the service account', async () => {
      const { body } = await post(
        'prod',
        podReview(nextUid(), {
          serviceAccountName: 'batch',
          annotations: { 'modelgate.dev/models': `fraud-detector@${signed}` },
        }),
      );
      assert.equal(body.response.allowed, false);
      assert.match(
        body.response.status.message,
        /MG_NOT_GRANTED .*service account batch is not granted model fraud-detector in environment prod/,
      );
    });
  });

  describe("when the Pod's service account maps to no configured account", () => {
    it('denies it naming the Kubernetes subject (the default service account when none is set)', async () => {
      const { body } = await post(
        'prod',
        podReview(nextUid(), { annotations: { 'modelgate.dev/models': `fraud-detector@${signed}` } }),
      );
      assert.equal(body.response.allowed, false);
      assert.match(
        body.response.status.message,
        /MG_IDENTITY_UNMAPPED service account system:serviceaccount:fraud:default/,
      );
    });
  });

  describe('when the environment is in audit mode', () => {
    it('allows a version reference to an unsigned release, with a warning for each violation', async () => {
      const id = nextUid();
      const { body } = await post(
        'staging',
        podReview(id, {
          namespace: 'fraud-staging',
          serviceAccountName: 'inference',
          initContainers: [fetchContainer('fetch', 'fraud-detector', '3.0-rc1', 'equals')],
        }),
      );
      assert.equal(body.response.uid, id);
      assert.equal(body.response.allowed, true);
      assert.equal(body.response.status, undefined);
      const warnings: string[] = body.response.warnings;
      assert.ok(
        warnings.some((w) =>
          /^MG_DIGEST_REF_REQUIRED initContainers\[fetch\] fraud-detector@3\.0-rc1/.test(w),
        ),
        warnings.join('\n'),
      );
      assert.ok(
        warnings.some((w) => /^MG_RELEASE_UNSIGNED .*not signed/.test(w)),
        warnings.join('\n'),
      );
    });

    it('still denies a service account without a grant (identity and grants always block)', async () => {
      const { body } = await post(
        'staging',
        podReview(nextUid(), {
          namespace: 'fraud-staging',
          serviceAccountName: 'inference',
          annotations: { 'modelgate.dev/models': `churn-model@${stagingUnsigned}` },
        }),
      );
      assert.equal(body.response.allowed, false);
      assert.match(body.response.status.message, /MG_NOT_GRANTED/);
    });
  });

  describe('when a Pod in a prod namespace references a release made for staging', () => {
    it('denies it naming both environments', async () => {
      const { body } = await post(
        'prod',
        podReview(nextUid(), {
          serviceAccountName: 'inference',
          annotations: { 'modelgate.dev/models': `fraud-detector@${stagingUnsigned}` },
        }),
      );
      assert.equal(body.response.allowed, false);
      assert.match(
        body.response.status.message,
        /MG_ENVIRONMENT_MISMATCH .*made for environment staging, not prod/,
      );
    });
  });

  describe('when a Pod has two fetch init containers and one reference is bad', () => {
    it('denies it naming the bad one only', async () => {
      const { body } = await post(
        'prod',
        podReview(nextUid(), {
          serviceAccountName: 'inference',
          initContainers: [
            fetchContainer('fetch-good', 'fraud-detector', signed),
            fetchContainer('fetch-bad', 'fraud-detector', unsigned, 'equals'),
          ],
        }),
      );
      assert.equal(body.response.allowed, false);
      const message: string = body.response.status.message;
      assert.match(message, /initContainers\[fetch-bad\]/);
      assert.doesNotMatch(message, /fetch-good/);
    });
  });

  describe('when admission.requireModels is on and the Pod references no model', () => {
    it('denies it', async () => {
      const { body } = await post('prod', podReview(nextUid(), { serviceAccountName: 'inference' }));
      assert.equal(body.response.allowed, false);
      assert.match(body.response.status.message, /MG_MODEL_REFERENCE_REQUIRED the Pod references no model/);
    });
  });

  describe('when a review is malformed', () => {
    const good = () => podReview(nextUid(), { serviceAccountName: 'inference' });
    const cases: Array<[string, () => string]> = [
      ['the body is not JSON', () => '{"apiVersion": "admission.k8s.io/v1", '],
      [
        'the apiVersion is v1beta1',
        () => JSON.stringify({ ...good(), apiVersion: 'admission.k8s.io/v1beta1' }),
      ],
      ['the kind is not AdmissionReview', () => JSON.stringify({ ...good(), kind: 'Pod' })],
      [
        'request.uid is missing',
        () => {
          const review = good();
          delete (review.request as Record<string, unknown>).uid;
          return JSON.stringify(review);
        },
      ],
      [
        'request.object is missing',
        () => {
          const review = good();
          delete (review.request as Record<string, unknown>).object;
          return JSON.stringify(review);
        },
      ],
      [
        'container args are not strings',
        () => {
          const review = podReview(nextUid(), { initContainers: [{ name: 'x', args: ['fetch'] }] });
          const spec = (
            (review.request as Record<string, unknown>).object as {
              spec: { initContainers: Array<{ args: unknown }> };
            }
          ).spec;
          spec.initContainers[0] = { ...spec.initContainers[0], args: ['fetch', 42] } as { args: unknown };
          return JSON.stringify(review);
        },
      ],
    ];
    for (const [what, body] of cases) {
      it(`answers 400, not an AdmissionReview, when ${what}`, async () => {
        const result = await postReview(url, '/validate/pods/prod', body(), ca);
        assert.equal(result.status, 400);
        assert.equal(result.body.error.code, 'MG_ADMISSION_REVIEW_MALFORMED');
        assert.equal(result.body.response, undefined);
      });
    }

    it('answers 400 to a body larger than the limit', async () => {
      const result = await postReview(url, '/validate/pods/prod', Buffer.alloc(4 * 1024 * 1024, 0x20), ca);
      assert.equal(result.status, 400);
      assert.equal(result.body.error.code, 'MG_ADMISSION_REVIEW_MALFORMED');
    });
  });

  describe('when reviews have been answered', () => {
    it('counts each in modelgate_admission_reviews_total by environment, result and reason', async () => {
      const metric = await metrics.admissionReviews.get();
      type Labels = { environment: string; result: string; reason: string };
      const value = (labels: Labels) =>
        metric.values
          .filter(
            (v) =>
              v.labels.environment === labels.environment &&
              v.labels.result === labels.result &&
              v.labels.reason === labels.reason,
          )
          .reduce((sum, v) => sum + v.value, 0);
      assert.ok(value({ environment: 'prod', result: 'allowed', reason: 'none' }) >= 1);
      assert.ok(value({ environment: 'prod', result: 'denied', reason: 'mutable_reference' }) >= 1);
      assert.ok(value({ environment: 'prod', result: 'denied', reason: 'release_not_found' }) >= 1);
      assert.ok(value({ environment: 'prod', result: 'denied', reason: 'unsigned_release' }) >= 1);
      assert.ok(value({ environment: 'prod', result: 'denied', reason: 'not_granted' }) >= 1);
      assert.ok(value({ environment: 'staging', result: 'warned', reason: 'mutable_reference' }) >= 1);
      assert.ok(value({ environment: 'prod', result: 'denied', reason: 'malformed' }) >= 1);
      // An environment the configuration does not name is never a label value.
      await post('made-up', podReview(nextUid(), { serviceAccountName: 'inference' }));
      const after = await metrics.admissionReviews.get();
      assert.ok(!after.values.some((v) => v.labels.environment === 'made-up'));
      assert.ok(after.values.some((v) => v.labels.environment === 'unknown'));
    });
  });

  describe('when the certificate files are replaced', () => {
    it('presents the new certificate on a new connection, without restart', async () => {
      const before = await postReview(
        url,
        '/validate/pods/prod',
        JSON.stringify(podReview(nextUid(), {})),
        ca,
      );
      assert.equal(before.fingerprint, new X509Certificate(ca).fingerprint256);
      const rotated = await writeSelfSignedCert(fixture.dir, 'webhook', 'modelgate-admission-rotated');
      const newCa = await readFile(rotated.cert);
      const newFingerprint = new X509Certificate(newCa).fingerprint256;
      assert.notEqual(newFingerprint, before.fingerprint);
      const afterRotation = await postReview(
        url,
        '/validate/pods/prod',
        JSON.stringify(podReview(nextUid(), {})),
        newCa,
      );
      assert.equal(afterRotation.fingerprint, newFingerprint);
      assert.equal(afterRotation.status, 200);
      ca = newCa;
    });

    it('keeps the current certificate while the new key does not match it, then takes the complete pair', async () => {
      const current = new X509Certificate(ca).fingerprint256;
      // A renewal writes the key first: for a moment the key on disk belongs to a certificate not yet written.
      await mkdir(join(fixture.dir, 'next'), { recursive: true });
      const next = await writeSelfSignedCert(
        join(fixture.dir, 'next'),
        'webhook',
        'modelgate-admission-next',
      );
      await copyFile(next.key, join(fixture.dir, 'webhook.key'));
      const during = await postReview(
        url,
        '/validate/pods/prod',
        JSON.stringify(podReview(nextUid(), {})),
        ca,
      );
      assert.equal(during.fingerprint, current);
      await copyFile(next.cert, join(fixture.dir, 'webhook.crt'));
      const nextCa = await readFile(next.cert);
      const afterwards = await postReview(
        url,
        '/validate/pods/prod',
        JSON.stringify(podReview(nextUid(), {})),
        nextCa,
      );
      assert.equal(afterwards.fingerprint, new X509Certificate(nextCa).fingerprint256);
      ca = nextCa;
    });
  });
});
