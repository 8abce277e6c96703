import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';

const KUBERNETES = fileURLToPath(new URL('../../deploy/kubernetes/', import.meta.url));
const OVERLAY = join(KUBERNETES, 'overlays', 'node-local');

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes manifests are checked field by field below.
type Manifest = Record<string, any>;

/** `kubectl kustomize DIR`, parsed (kubectl is part of the test toolchain). */
function kustomize(dir: string): Manifest[] {
  const out = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(out).map((doc) => doc.toJS() as Manifest);
}

/** Bytes of a Kubernetes quantity such as `768Mi` (binary suffixes only, as deploy/ writes them). */
function bytesOf(quantity: string): number {
  const match = /^(\d+)(Ki|Mi|Gi)?$/.exec(quantity);
  assert.ok(match, `a binary quantity: ${quantity}`);
  const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[match[2] ?? ''] ?? 1;
  return Number(match[1]) * unit;
}

describe('the node-local overlay', () => {
  const objects = kustomize(OVERLAY);
  const ofKind = (kind: string) => objects.filter((o) => o.kind === kind);
  const daemonSets = ofKind('DaemonSet');
  const daemonSet = daemonSets[0] as Manifest;
  const pod = daemonSet?.spec.template.spec;
  const container = pod?.containers.find((c: Manifest) => c.name === 'modelgate');
  const configMap = objects.find(
    (o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('modelgate-config'),
  );
  const config = parseConfig(configMap?.data['modelgate.yaml'], '/etc/modelgate/modelgate.yaml', {});

  it('runs one DaemonSet and no Deployment, autoscaler or disruption budget', () => {
    assert.equal(daemonSets.length, 1);
    assert.equal(daemonSet.metadata.name, 'modelgate');
    assert.deepEqual(
      ['Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget'].flatMap((kind) => ofKind(kind)),
      [],
    );
    assert.equal(daemonSet.spec.updateStrategy.rollingUpdate.maxUnavailable, 0);
  });

  it('keeps the Service on the caller’s node (internalTrafficPolicy: Local) and selecting the DaemonSet’s pods', () => {
    const service = ofKind('Service').find((s) => s.metadata.name === 'modelgate');
    assert.equal(service?.spec.internalTrafficPolicy, 'Local');
    for (const [key, value] of Object.entries(service?.spec.selector ?? {})) {
      assert.equal(daemonSet.spec.template.metadata.labels[key], value);
    }
  });

  it('mounts a hostPath at the configured cache.dir and configures a cache', () => {
    assert.ok(config.cache, 'the configuration has a cache');
    const mount = container.volumeMounts.find((m: Manifest) => m.mountPath === config.cache?.dir);
    assert.ok(mount, `a volume mounted at ${config.cache?.dir}`);
    const volume = pod.volumes.find((v: Manifest) => v.name === mount.name);
    assert.equal(typeof volume?.hostPath?.path, 'string');
    assert.equal(mount.readOnly ?? false, false);
    assert.ok(config.cache.maxBytes > 0);
  });

  it('requests CPU and memory for the proxy, at least the measured idle of the primary and 2 workers', () => {
    const { requests, limits } = container.resources;
    assert.ok(requests.cpu && limits.cpu, 'cpu request and limit');
    // bench/README.md: ~430 MiB idle for the primary and 2 workers.
    assert.ok(bytesOf(requests.memory) >= 430 * 1024 ** 2, `memory request ${requests.memory}`);
    assert.ok(bytesOf(limits.memory) >= bytesOf(requests.memory));
    assert.ok(container.args.includes('--workers'));
  });

  it('resolves the generated ConfigMap and the image in every container', () => {
    const names = pod.volumes.map((v: Manifest) => v.configMap?.name).filter(Boolean);
    assert.ok(names.includes(configMap?.metadata.name), names.join(', '));
    for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
      assert.match(c.image, /^registry\.example\.com\/platform\/modelgate:/, c.name);
    }
  });

  it('lets the namespace admit the hostPath while warning and auditing against "restricted"', () => {
    const labels = ofKind('Namespace')[0]?.metadata.labels ?? {};
    assert.equal(labels['pod-security.kubernetes.io/enforce'], 'privileged');
    assert.equal(labels['pod-security.kubernetes.io/warn'], 'restricted');
    assert.equal(labels['pod-security.kubernetes.io/audit'], 'restricted');
  });

  it('changes nothing else in the base configuration', async () => {
    const base = parse(await readFile(join(KUBERNETES, 'base', 'modelgate.yaml'), 'utf8'));
    const nodeLocal = parse(await readFile(join(OVERLAY, 'modelgate.yaml'), 'utf8'));
    delete nodeLocal.cache;
    assert.deepEqual(nodeLocal, base);
  });
});
