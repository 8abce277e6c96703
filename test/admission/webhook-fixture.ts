import { execFileSync } from 'node:child_process';
import { rename } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';

/**
 * Writes a fresh self-signed P-256 certificate for 127.0.0.1 to `DIR/NAME.crt`
 * and `DIR/NAME.key` (through temporary names renamed into place, as a
 * Kubernetes secret update swaps files), with the openssl CLI.
 */
export async function writeSelfSignedCert(
  dir: string,
  name: string,
  cn = 'modelgate-admission',
): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const tmpCert = `${cert}.tmp`;
  const tmpKey = `${key}.tmp`;
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      tmpKey,
      '-out',
      tmpCert,
      '-days',
      '1',
      '-subj',
      `/CN=${cn}`,
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: 'ignore' },
  );
  await rename(tmpKey, key);
  await rename(tmpCert, cert);
  return { cert, key };
}

export interface PodSpecInput {
  namespace?: string;
  serviceAccountName?: string;
  annotations?: Record<string, string>;
  initContainers?: Array<{ name: string; image?: string; command?: string[]; args?: string[] }>;
  containers?: Array<{ name: string; image?: string; command?: string[]; args?: string[] }>;
}

/** An AdmissionReview v1 for a Pod CREATE, shaped as kube-apiserver sends it (ReplicaSet controller creating a Pod). */
export function podReview(uid: string, input: PodSpecInput, dryRun = false): Record<string, unknown> {
  const namespace = input.namespace ?? 'fraud';
  const spec: Record<string, unknown> = {
    containers: input.containers ?? [{ name: 'server', image: 'registry.example.com/ml/fraud-server:1.4.0' }],
    restartPolicy: 'Always',
    dnsPolicy: 'ClusterFirst',
    schedulerName: 'default-scheduler',
  };
  if (input.initContainers) spec.initContainers = input.initContainers;
  if (input.serviceAccountName) spec.serviceAccountName = input.serviceAccountName;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation: 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: '5b1b6a2e-0c4d-4b8e-9f3a-2f6f5d2c9a11',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
      },
      object: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          generateName: 'fraud-detector-7c9d8-',
          namespace,
          labels: { 'app.kubernetes.io/name': 'fraud-detector' },
          ...(input.annotations ? { annotations: input.annotations } : {}),
        },
        spec,
        status: {},
      },
      oldObject: null,
      dryRun,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

export interface PostResult {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: the AdmissionReview answer is checked field by field.
  body: any;
  /** SHA-256 fingerprint of the certificate the server presented. */
  fingerprint: string;
}

/** POSTs a body over a new TLS connection (no agent), trusting `ca`. */
export function postReview(
  url: string,
  path: string,
  body: string | Buffer,
  ca: Buffer,
): Promise<PostResult> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, url),
      { method: 'POST', agent: false, ca, headers: { 'content-type': 'application/json' } },
      (res) => {
        const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256;
        const parts: Buffer[] = [];
        res.on('data', (part: Buffer) => parts.push(part));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = text;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, fingerprint });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
