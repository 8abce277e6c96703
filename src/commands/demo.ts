import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { digestFile } from '../catalog/file-digest.ts';
import type { Manifest } from '../catalog/release.types.ts';
import { sha256Digest, signManifest } from '../catalog/signature.ts';
import { writeFileAtomic } from '../keys.ts';

/**
 * The embedded default (`npm start`): everything secret — the demo issuer key,
 * the demo release-signing key and a short-lived demo token — is generated
 * into `.modelgate/demo/` (git-ignored) beside the repository, never committed.
 * The demo release is signed from `config/demo-models/` on each start, with
 * a stable `created` so its digest only changes when the files or keys do.
 */
export const DEMO = {
  model: 'demo/tiny-llm',
  version: '1.0.0',
  environment: 'demo',
  issuer: 'https://issuer.demo.modelgate.invalid',
  subject: 'system:serviceaccount:demo:inference',
  audience: 'modelgate',
  tokenTtlSeconds: 3600,
} as const;

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Creates an ES256 key pair as `NAME.private.jwk.json` (0600) and `NAME.jwks.json`, unless present. */
async function ensureKeyPair(dir: string, name: string): Promise<{ privateJwk: JWK; kid: string }> {
  const privateFile = join(dir, `${name}.private.jwk.json`);
  if (await exists(privateFile)) {
    const privateJwk = JSON.parse(await readFile(privateFile, 'utf8')) as JWK;
    if (typeof privateJwk.kid !== 'string')
      throw new Error(`${privateFile}: the demo key has no "kid"; delete the folder to regenerate it`);
    return { privateJwk, kid: privateJwk.kid };
  }
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
  await writeFileAtomic(
    join(dir, `${name}.jwks.json`),
    `${JSON.stringify({ keys: [{ ...publicJwk, kid, alg: 'ES256', use: 'sig' }] }, null, 2)}\n`,
  );
  await writeFileAtomic(privateFile, `${JSON.stringify(privateJwk, null, 2)}\n`, 0o600);
  return { privateJwk, kid };
}

async function listFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(root, full)));
    else if (entry.isFile()) out.push(relative(root, full).split('\\').join('/'));
  }
  return out.sort();
}

export interface DemoState {
  tokenFile: string;
  releaseDigest: string;
  banner(dataUrl: string, adminUrl: string): string;
}

/** `--demo` was given a configuration that is not the demo's. */
export class DemoConfigError extends Error {
  override readonly name = 'DemoConfigError';
}

/** Prepares keys, the signed demo release and a fresh token for the config at `configPath`. */
export async function prepareDemo(configPath: string): Promise<DemoState> {
  const configDir = dirname(resolve(configPath));
  // The config reads the same variable, so tests can keep their demo state out of the repository.
  const stateDir = resolve(configDir, process.env.MODELGATE_DEMO_DIR ?? join('..', '.modelgate', 'demo'));
  const releasesDir = join(stateDir, 'releases');
  const modelRoot = resolve(configDir, 'demo-models');
  const modelDir = join(modelRoot, DEMO.model, DEMO.version);
  // Checked before anything is written: --demo with one's own configuration must not create demo state beside it.
  if (!(await exists(modelDir))) {
    throw new DemoConfigError(
      `--demo works only with the demo configuration (config/modelgate.yaml in a checkout): ` +
        `expected the demo model at ${modelDir}, beside ${resolve(configPath)}. ` +
        `To serve your own configuration, drop --demo (README "Your first release").`,
    );
  }
  await mkdir(releasesDir, { recursive: true, mode: 0o700 });

  const issuerKey = await ensureKeyPair(stateDir, 'issuer');
  const releaseKey = await ensureKeyPair(stateDir, 'release');

  const createdFile = join(stateDir, 'created');
  const created = (await exists(createdFile))
    ? (await readFile(createdFile, 'utf8')).trim()
    : new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  await writeFileAtomic(createdFile, `${created}\n`);

  const files: Manifest['files'] = [];
  for (const path of await listFiles(modelDir)) {
    const handle = await open(join(modelDir, path), 'r');
    try {
      const chunkSize = 1024 * 1024;
      const digests = await digestFile(handle, chunkSize);
      files.push({
        path,
        size: digests.size,
        digest: digests.digest,
        chunkSize,
        chunks: digests.chunks ?? [],
        sources: [`file:${DEMO.model}/${DEMO.version}/${path}`],
      });
    } finally {
      await handle.close();
    }
  }
  const manifest: Manifest = {
    schema: 'modelgate/release/v1',
    model: DEMO.model,
    version: DEMO.version,
    environment: DEMO.environment,
    created,
    provenance: { source: 'config/demo-models', builder: 'modelgate serve --demo' },
    files,
  };
  const jws = await signManifest(manifest, releaseKey.privateJwk, releaseKey.kid, 'ES256');
  const payload = Buffer.from(jws.split('.')[1] ?? '', 'base64url');
  const releaseDigest = sha256Digest(payload);
  await writeFileAtomic(join(releasesDir, 'demo_tiny-llm-1.0.0.jws'), `${jws}\n`);

  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({
    'kubernetes.io': { namespace: 'demo', serviceaccount: { name: 'inference', uid: randomUUID() } },
  })
    .setProtectedHeader({ alg: 'ES256', kid: issuerKey.kid, typ: 'JWT' })
    .setIssuer(DEMO.issuer)
    .setSubject(DEMO.subject)
    .setAudience(DEMO.audience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + DEMO.tokenTtlSeconds)
    .sign(await importJWK(issuerKey.privateJwk, 'ES256'));
  const tokenFile = join(stateDir, 'token');
  await writeFileAtomic(tokenFile, `${token}\n`, 0o600);

  const shownToken = relative(process.cwd(), tokenFile) || tokenFile;
  return {
    tokenFile,
    releaseDigest,
    banner(dataUrl, adminUrl) {
      const base = `${dataUrl}/v1/models/${DEMO.model}/releases/${releaseDigest}`;
      return `
modelgate demo is running.
  data API   ${dataUrl}
  admin      ${adminUrl}/metrics  ${adminUrl}/readyz
  release    ${DEMO.model}@${releaseDigest} (signed, environment "${DEMO.environment}")
  token      ${shownToken} (a demo workload identity, valid ${DEMO.tokenTtlSeconds / 3600} h; restart to mint a new one)

Fetch a verified file:
  curl -fsS -H "Authorization: Bearer $(cat ${shownToken})" \\
    ${base}/files/config.json

Pull the whole release into ./tiny-llm, verified again on the client:
  npx modelgate fetch --proxy ${dataUrl} --model ${DEMO.model} --release ${releaseDigest} \\
    --token-file ${shownToken} --dest ./tiny-llm

`;
    },
  };
}
