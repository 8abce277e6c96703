import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(REPO, 'deploy');
const BASE = join(DEPLOY, 'kubernetes', 'base');

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes manifests are checked field by field below.
type Manifest = Record<string, any>;

async function yamlFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await yamlFiles(path)));
    else if (/\.ya?ml$/.test(entry.name)) out.push(path);
  }
  return out.sort();
}

async function documents(file: string): Promise<Manifest[]> {
  const docs = parseAllDocuments(await readFile(file, 'utf8'));
  return (Array.isArray(docs) ? docs : [docs])
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((doc): doc is Manifest => doc !== null);
}

async function findKind(kind: string, dir = BASE): Promise<Manifest> {
  for (const file of await yamlFiles(dir)) {
    const found = (await documents(file)).find((doc) => doc.kind === kind);
    if (found) return found;
  }
  throw new Error(`no ${kind} under ${relative(REPO, dir)}`);
}

const baseConfig = async () =>
  parseConfig(await readFile(join(BASE, 'modelgate.yaml'), 'utf8'), join(BASE, 'modelgate.yaml'), {});

describe('deploy/ YAML', () => {
  it('parses every document of every YAML file', async () => {
    const files = await yamlFiles(DEPLOY);
    assert.ok(files.length >= 10, `expected the deploy YAML files, found ${files.length}`);
    for (const file of files) {
      const docs = parseAllDocuments(await readFile(file, 'utf8'));
      for (const doc of Array.isArray(docs) ? docs : [docs]) {
        assert.deepEqual(
          doc.errors.map((e) => e.message),
          [],
          `${relative(REPO, file)} does not parse`,
        );
      }
    }
  });

  it('gives every Kubernetes object an apiVersion, a kind and a name', async () => {
    // modelgate.yaml (base, and the admission component's) is configuration packed into a ConfigMap, not an object.
    const objects = (await yamlFiles(join(DEPLOY, 'kubernetes'))).filter(
      (f) => basename(f) !== 'modelgate.yaml',
    );
    for (const file of objects) {
      for (const doc of await documents(file)) {
        if (doc.kind === 'Kustomization') continue;
        assert.equal(typeof doc.apiVersion, 'string', `${relative(REPO, file)}: apiVersion`);
        assert.equal(typeof doc.kind, 'string', `${relative(REPO, file)}: kind`);
        assert.equal(typeof doc.metadata?.name, 'string', `${relative(REPO, file)}: metadata.name`);
      }
    }
  });
});

describe('kustomizations', () => {
  it('reference only files and folders that exist', async () => {
    const kustomizations = (await yamlFiles(join(DEPLOY, 'kubernetes'))).filter((f) =>
      /kustomization\.ya?ml$/.test(f),
    );
    assert.ok(kustomizations.length >= 2);
    for (const file of kustomizations) {
      const [k] = await documents(file);
      const dir = dirname(file);
      const paths: string[] = [
        ...(k?.resources ?? []),
        ...(k?.components ?? []),
        ...(k?.patches ?? []).flatMap((p: Manifest) => (p.path ? [p.path] : [])),
        ...[...(k?.configMapGenerator ?? []), ...(k?.secretGenerator ?? [])].flatMap((g: Manifest) => [
          ...(g.files ?? []).map((f: string) => f.split('=').at(-1)),
          ...(g.envs ?? []),
        ]),
      ];
      for (const path of paths.filter((p) => !p.includes('://'))) {
        assert.ok(existsSync(join(dir, path)), `${relative(REPO, file)} references missing ${path}`);
      }
    }
  });

  it('includes the generated PrometheusRule in the base', async () => {
    const [k] = await documents(join(BASE, 'kustomization.yaml'));
    assert.ok(k?.resources.includes('prometheus-rule.yaml'));
  });
});

describe('the base configuration', () => {
  it('is a valid modelgate configuration listening on every interface', async () => {
    const config = await baseConfig();
    assert.equal(config.listen.address, '0.0.0.0');
    assert.equal(config.listen.port, 8080);
    assert.equal(config.admin.address, '0.0.0.0');
    assert.equal(config.admin.port, 9464);
  });

  it('names only files the Deployment mounts from the generated ConfigMaps', async () => {
    const config = await baseConfig();
    const deployment = await findKind('Deployment');
    const [k] = await documents(join(BASE, 'kustomization.yaml'));
    const mounts: Manifest[] = deployment.spec.template.spec.containers[0].volumeMounts;
    const volumes: Manifest[] = deployment.spec.template.spec.volumes;
    const generated = new Map<string, string[]>(
      (k?.configMapGenerator ?? []).map((g: Manifest) => [
        g.name,
        (g.files ?? []).map((f: string) => f.split('=').at(-1)!.split('/').at(-1)),
      ]),
    );
    const files = [...config.signers.map((s) => s.jwksFile), config.breakGlass?.jwksFile].filter(
      (f): f is string => f !== undefined,
    );
    for (const file of files) {
      const mount = mounts.find((m) => file.startsWith(`${m.mountPath}/`));
      assert.ok(mount, `${file} is not under a volume mount`);
      const volume = volumes.find((v) => v.name === mount.name);
      const keys = generated.get(volume?.configMap?.name) ?? [];
      assert.ok(keys.includes(file.split('/').at(-1)!), `${file} is not a key of ${volume?.configMap?.name}`);
    }
    assert.ok(mounts.some((m) => m.mountPath === config.catalog.dir));
  });
});

describe('the Deployment', () => {
  it('probes /healthz (liveness) and /readyz (readiness) on the admin port 9464', async () => {
    const deployment = await findKind('Deployment');
    const container = deployment.spec.template.spec.containers[0];
    const adminPort = container.ports.find((p: Manifest) => p.name === 'admin');
    assert.equal(adminPort.containerPort, 9464);
    assert.equal(container.livenessProbe.httpGet.path, '/healthz');
    assert.equal(container.readinessProbe.httpGet.path, '/readyz');
    for (const probe of [container.livenessProbe, container.readinessProbe]) {
      assert.ok(probe.httpGet.port === 'admin' || probe.httpGet.port === 9464);
    }
  });

  it('runs non-root, with a read-only root filesystem and no capabilities', async () => {
    const deployment = await findKind('Deployment');
    const pod = deployment.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.notEqual(pod.securityContext.runAsUser, 0);
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    for (const container of pod.containers) {
      const sc = container.securityContext;
      assert.equal(sc.readOnlyRootFilesystem, true);
      assert.equal(sc.allowPrivilegeEscalation, false);
      assert.deepEqual(sc.capabilities.drop, ['ALL']);
      assert.equal(sc.capabilities.add, undefined);
      assert.ok(container.resources.requests && container.resources.limits, 'requests and limits');
      const tmp = container.volumeMounts.find((m: Manifest) => m.mountPath === '/tmp');
      assert.ok(pod.volumes.find((v: Manifest) => v.name === tmp?.name)?.emptyDir, '/tmp is an emptyDir');
    }
  });

  it('waits longer than the preStop sleep plus the shutdown grace before killing', async () => {
    const config = await baseConfig();
    const deployment = await findKind('Deployment');
    const pod = deployment.spec.template.spec;
    const command: string[] = pod.containers[0].lifecycle.preStop.exec.command;
    const preStopSeconds = Number(command.at(-1));
    assert.ok(preStopSeconds > 0);
    assert.ok(pod.terminationGracePeriodSeconds >= config.limits.shutdownGraceSeconds);
    assert.ok(
      pod.terminationGracePeriodSeconds > preStopSeconds + config.limits.shutdownGraceSeconds,
      `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} must exceed ${preStopSeconds} + ${config.limits.shutdownGraceSeconds}`,
    );
  });

  it('starts serve with the config file it mounts', async () => {
    const deployment = await findKind('Deployment');
    const container = deployment.spec.template.spec.containers[0];
    const configPath = container.args[container.args.indexOf('--config') + 1];
    assert.ok(container.volumeMounts.some((m: Manifest) => m.mountPath === configPath));
    const dockerfile = await readFile(join(DEPLOY, 'Dockerfile'), 'utf8');
    assert.ok(dockerfile.includes(`CMD ["serve", "--config", "${configPath}"]`));
  });

  it('keeps at least 2 replicas (Deployment, autoscaler and disruption budget agree)', async () => {
    const deployment = await findKind('Deployment');
    const hpa = await findKind('HorizontalPodAutoscaler');
    const pdb = await findKind('PodDisruptionBudget');
    assert.ok(deployment.spec.replicas >= 2);
    assert.ok(hpa.spec.minReplicas >= 2);
    assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
    assert.deepEqual(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
  });
});

describe('the Service, NetworkPolicy and ServiceMonitor', () => {
  it('expose data on 8080 to labelled namespaces and metrics on 9464 to monitoring', async () => {
    const service = await findKind('Service');
    assert.deepEqual(
      service.spec.ports.map((p: Manifest) => [p.name, p.port]),
      [
        ['data', 8080],
        ['admin', 9464],
      ],
    );
    const policy = await findKind('NetworkPolicy');
    const dataRule = policy.spec.ingress.find((r: Manifest) =>
      r.ports.some((p: Manifest) => p.port === 8080),
    );
    assert.deepEqual(dataRule.from[0].namespaceSelector.matchLabels, { 'modelgate.io/inference': 'true' });
    assert.ok(
      !policy.spec.ingress.some(
        (r: Manifest) =>
          r.ports.some((p: Manifest) => p.port === 8080) && r.ports.some((p: Manifest) => p.port === 9464),
      ),
    );
    const monitor = await findKind('ServiceMonitor');
    assert.deepEqual(
      monitor.spec.endpoints.map((e: Manifest) => [e.port, e.path]),
      [['admin', '/metrics']],
    );
  });
});

describe('the inference pod example', () => {
  it('fetches into an emptyDir with a projected, audience-bound token and mounts it read-only in the server', async () => {
    const examples = join(DEPLOY, 'kubernetes', 'examples');
    const docs = await documents(join(examples, 'inference-pod.yaml'));
    const namespace = docs.find((d) => d.kind === 'Namespace');
    assert.equal(namespace?.metadata.labels['modelgate.io/inference'], 'true');
    const pod = docs.find((d) => d.kind === 'Pod')!.spec;
    const init = pod.initContainers[0];
    assert.equal(init.args[0], 'fetch');
    const flag = (name: string) => init.args[init.args.indexOf(name) + 1];
    const tokenVolume = pod.volumes.find((v: Manifest) => v.projected);
    const projection = tokenVolume.projected.sources[0].serviceAccountToken;
    assert.deepEqual(projection, { audience: 'modelgate', expirationSeconds: 600, path: 'token' });
    const tokenMount = init.volumeMounts.find((m: Manifest) => m.name === tokenVolume.name);
    assert.equal(tokenMount.mountPath, '/var/run/secrets/modelgate');
    assert.equal(flag('--token-file'), `${tokenMount.mountPath}/${projection.path}`);
    const modelsMount = init.volumeMounts.find((m: Manifest) => m.mountPath === flag('--dest'));
    assert.ok(pod.volumes.find((v: Manifest) => v.name === modelsMount.name).emptyDir);
    const server = pod.containers[0];
    const serverMount = server.volumeMounts.find((m: Manifest) => m.name === modelsMount.name);
    assert.equal(serverMount.readOnly, true);
    assert.ok(
      !server.volumeMounts.some((m: Manifest) => m.name === tokenVolume.name),
      'server never sees the token',
    );
  });
});

describe('deploy/Dockerfile', () => {
  it('builds on node:24-slim, runs as a non-root uid, and runs src/main.ts', async () => {
    const dockerfile = await readFile(join(DEPLOY, 'Dockerfile'), 'utf8');
    const lines = dockerfile.split('\n').filter((l) => !l.startsWith('#'));
    assert.ok(lines.some((l) => /^ARG NODE_IMAGE=node:24-slim$/.test(l)));
    assert.ok(lines.some((l) => /npm ci --omit=dev/.test(l)));
    assert.ok(lines.includes('USER 1000:1000'));
    assert.ok(lines.includes('ENTRYPOINT ["node", "/app/src/main.ts"]'));
    assert.ok(!lines.some((l) => /^HEALTHCHECK/.test(l)));
  });
});
