import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const KUBERNETES = join(REPO, 'deploy', 'kubernetes');
const OVERLAYS = join(KUBERNETES, 'overlays');

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes manifests are checked field by field below.
type Manifest = Record<string, any>;

/** `kubectl kustomize DIR`, parsed (kubectl is part of the test toolchain, as promtool is for alerts). */
function kustomize(dir: string): Manifest[] {
  const out = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(out).map((doc) => doc.toJS() as Manifest);
}

function one(objects: Manifest[], kind: string, name?: string): Manifest {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ` ${name}` : ''}`);
  return found[0] as Manifest;
}

describe('kubectl kustomize', async () => {
  const overlays = (await readdir(OVERLAYS, { withFileTypes: true })).filter((e) => e.isDirectory());

  it('finds the production and admission overlays', () => {
    const names = overlays.map((e) => e.name);
    assert.ok(names.includes('production') && names.includes('admission'), names.join(', '));
  });

  for (const overlay of overlays) {
    it(`builds overlays/${overlay.name}`, () => {
      const objects = kustomize(join(OVERLAYS, overlay.name));
      assert.ok(objects.some((o) => o.kind === 'Deployment' || o.kind === 'DaemonSet'));
    });
  }
});

describe('the admission overlay', () => {
  const objects = kustomize(join(OVERLAYS, 'admission'));
  const configMap = objects.find(
    (o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('modelgate-config'),
  );
  assert.ok(configMap, 'the generated modelgate-config ConfigMap');
  const config = parseConfig(configMap.data['modelgate.yaml'], '/etc/modelgate/modelgate.yaml', {});
  const admission = config.admission;
  assert.ok(admission, 'the configuration has an admission listener');
  const deployment = one(objects, 'Deployment', 'modelgate');
  const container = deployment.spec.template.spec.containers[0];
  const service = one(objects, 'Service', 'modelgate');
  const webhooks = one(objects, 'ValidatingWebhookConfiguration');
  const namespace: string = deployment.metadata.namespace;

  it('configures a TLS admission listener and an issuer marked kubernetes: true', () => {
    assert.equal(admission.port, 8443);
    assert.ok(config.issuers.some((i) => i.kubernetes === true));
  });

  it('changes nothing else in the base configuration', async () => {
    const base = parse(await readFile(join(KUBERNETES, 'base', 'modelgate.yaml'), 'utf8'));
    const withAdmission = parse(await readFile(join(KUBERNETES, 'admission', 'modelgate.yaml'), 'utf8'));
    delete withAdmission.admission;
    for (const issuer of withAdmission.issuers) delete issuer.kubernetes;
    assert.deepEqual(withAdmission, base);
  });

  it('opens the admission port on the container, the Service (443) and the NetworkPolicy', () => {
    const port = container.ports.find((p: Manifest) => p.name === 'admission');
    assert.equal(port?.containerPort, admission.port);
    const servicePort = service.spec.ports.find((p: Manifest) => p.name === 'admission');
    assert.equal(servicePort?.port, 443);
    assert.equal(servicePort?.targetPort, 'admission');
    const policy = one(objects, 'NetworkPolicy', 'modelgate');
    assert.ok(
      policy.spec.ingress.some((rule: Manifest) =>
        rule.ports.some((p: Manifest) => p.port === admission.port),
      ),
    );
  });

  it('mounts the cert-manager certificate Secret where the configuration reads it, as a folder', () => {
    const certificate = one(objects, 'Certificate', 'modelgate-admission');
    assert.equal(certificate.metadata.namespace, namespace);
    assert.ok(certificate.spec.dnsNames.includes(`${service.metadata.name}.${namespace}.svc`));
    const volume = deployment.spec.template.spec.volumes.find(
      (v: Manifest) => v.secret?.secretName === certificate.spec.secretName,
    );
    assert.ok(volume, 'a volume holds the certificate Secret');
    const mount = container.volumeMounts.find((m: Manifest) => m.name === volume.name);
    assert.equal(mount.subPath, undefined, 'a subPath mount would never see a renewed certificate');
    for (const file of [admission.tls.cert, admission.tls.key])
      assert.ok(file.startsWith(`${mount.mountPath}/`));
    const issuer = one(objects, 'Issuer', certificate.spec.issuerRef.name);
    assert.equal(issuer.metadata.namespace, namespace);
  });

  it('declares the webhook with CA injection, Fail, no side effects, a 5 s timeout and v1 reviews', () => {
    const certificate = one(objects, 'Certificate', 'modelgate-admission');
    assert.equal(
      webhooks.metadata.annotations['cert-manager.io/inject-ca-from'],
      `${certificate.metadata.namespace}/${certificate.metadata.name}`,
    );
    assert.ok(webhooks.webhooks.length >= 2);
    for (const webhook of webhooks.webhooks as Manifest[]) {
      assert.equal(webhook.failurePolicy, 'Fail');
      assert.equal(webhook.sideEffects, 'None');
      assert.equal(webhook.timeoutSeconds, 5);
      assert.deepEqual(webhook.admissionReviewVersions, ['v1']);
      assert.deepEqual(webhook.rules, [
        {
          operations: ['CREATE'],
          apiGroups: [''],
          apiVersions: ['v1'],
          resources: ['pods'],
          scope: 'Namespaced',
        },
      ]);
      assert.equal(webhook.clientConfig.service.name, service.metadata.name);
      assert.equal(webhook.clientConfig.service.namespace, namespace);
      assert.equal(webhook.clientConfig.service.port, 443);
    }
  });

  it('gives each protected environment its own entry, selected by namespace label, never modelgate itself', () => {
    const environments = new Set<string>();
    for (const webhook of webhooks.webhooks as Manifest[]) {
      const expressions: Manifest[] = webhook.namespaceSelector.matchExpressions;
      const label = expressions.find((e) => e.key === 'modelgate.dev/environment');
      assert.equal(label?.operator, 'In');
      assert.equal(label.values.length, 1);
      const environment: string = label.values[0];
      assert.equal(webhook.clientConfig.service.path, `/validate/pods/${environment}`);
      assert.ok(environment in config.environments, `${environment} is a configured environment`);
      assert.ok(
        expressions.some(
          (e) =>
            e.key === 'kubernetes.io/metadata.name' && e.operator === 'NotIn' && e.values.includes(namespace),
        ),
      );
      environments.add(environment);
    }
    assert.deepEqual([...environments].sort(), ['prod', 'staging']);
  });

  it('binds the CEL policy, denying, to the digest-only environments and not to modelgate', () => {
    const policy = one(objects, 'ValidatingAdmissionPolicy');
    const binding = one(objects, 'ValidatingAdmissionPolicyBinding');
    assert.equal(policy.apiVersion, 'admissionregistration.k8s.io/v1');
    assert.equal(binding.spec.policyName, policy.metadata.name);
    assert.deepEqual(binding.spec.validationActions, ['Deny']);
    const expressions: Manifest[] = binding.spec.matchResources.namespaceSelector.matchExpressions;
    const digestOnly = Object.entries(config.environments)
      .filter(([, e]) => e.digestRefsOnly)
      .map(([name]) => name);
    assert.deepEqual(expressions.find((e) => e.key === 'modelgate.dev/environment')?.values, digestOnly);
    assert.ok(
      expressions.some((e) => e.key === 'kubernetes.io/metadata.name' && e.values.includes(namespace)),
    );
  });

  it('ships a KServe storage container that runs modelgate fetch for modelgate:// URIs', () => {
    const storage = one(objects, 'ClusterStorageContainer', 'modelgate');
    assert.equal(storage.apiVersion, 'serving.kserve.io/v1alpha1');
    assert.equal(storage.metadata.namespace, undefined, 'cluster-scoped');
    assert.deepEqual(storage.spec.supportedUriFormats, [{ prefix: 'modelgate://' }]);
    const script: string = storage.spec.container.command.join(' ');
    assert.match(script, /main\.ts fetch .*--model "\$model" .*--release "\$release" .*--dest "\$2"/s);
    assert.ok(storage.spec.container.volumeMounts.some((m: Manifest) => m.name === 'modelgate-token'));
  });
});
