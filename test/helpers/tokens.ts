/**
 * Test keys and workload-identity tokens, made at run time with jose (no
 * private key is ever committed). Use with `startJwksServer` from
 * `./jwks-server.ts`, or `writeJwksFile` for a `jwksFile` issuer.
 *
 * ```ts
 * const key = await generateTestKey('RS256');
 * const jwks = await startJwksServer({ keys: [key] });
 * const token = await mintKubernetesToken(key, { issuer: jwks.issuer });
 * ```
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';

export type TestAlgorithm = 'RS256' | 'ES256' | 'EdDSA';

/** A signing key pair and its public JWK (with `kid`, `alg` and `use: sig`). */
export interface TestKey {
  kid: string;
  alg: TestAlgorithm;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/** A fresh key pair; `kid` defaults to a random one. */
export async function generateTestKey(alg: TestAlgorithm = 'RS256', kid?: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
  const id = kid ?? `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`;
  return {
    kid: id,
    alg,
    privateKey,
    publicJwk: { ...(await exportJWK(publicKey)), kid: id, alg, use: 'sig' },
  };
}

/** The JWKS document `{keys: [...]}` holding the public halves of `keys`. */
export function jwksOf(keys: readonly TestKey[]): { keys: JWK[] } {
  return { keys: keys.map((key) => ({ ...key.publicJwk })) };
}

/** Writes the JWKS of `keys` to `dir/name` and returns the absolute path (for `jwksFile`). */
export async function writeJwksFile(
  dir: string,
  keys: readonly TestKey[],
  name = 'jwks.json',
): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, JSON.stringify(jwksOf(keys)));
  return path;
}

/**
 * Claims to merge over the defaults. A key whose value is `undefined` removes
 * that claim, e.g. `{ exp: undefined }` mints a token without `exp`.
 */
export type ClaimOverrides = Record<string, unknown>;

export interface MintOptions {
  /** Extra or replaced protected-header fields (`kid`, `typ`…); `{kid: undefined}` drops the kid. */
  header?: Record<string, unknown>;
}

/** Signs exactly `claims` (after removing `undefined` values) with `key`; header `{alg, kid, typ: 'JWT'}`. */
export async function mintToken(
  key: TestKey,
  claims: ClaimOverrides,
  options: MintOptions = {},
): Promise<string> {
  const header = withoutUndefined({ alg: key.alg, kid: key.kid, typ: 'JWT', ...options.header });
  return new SignJWT(withoutUndefined(claims) as JWTPayload)
    .setProtectedHeader(header as { alg: string })
    .sign(key.privateKey);
}

export interface WorkloadTokenOptions {
  /** The `iss` claim, e.g. `jwks.issuer`. */
  issuer: string;
  /** `aud`; default `['modelgate']`. */
  audience?: string | string[];
  /** Issue time in milliseconds (a frozen test clock); default `Date.now()`. */
  now?: number;
  /** `exp - iat`; default 3600 for Kubernetes, 300 for SPIFFE. */
  lifetimeSeconds?: number;
  /** Merged last over everything else; `undefined` removes a claim. */
  claims?: ClaimOverrides;
  header?: Record<string, unknown>;
}

export interface KubernetesTokenOptions extends WorkloadTokenOptions {
  /** Default `fraud`. */
  namespace?: string;
  /** Default `inference`. */
  serviceAccount?: string;
  /** Default `{name: '<serviceAccount>-0', uid: <random>}`; `null` leaves the pod out. */
  pod?: { name: string; uid: string } | null;
}

/**
 * A Kubernetes projected service-account token: `sub:
 * system:serviceaccount:<ns>:<sa>` and the nested `kubernetes.io` claim
 * (`namespace`, `serviceaccount`, `pod`), as the API server issues it.
 */
export async function mintKubernetesToken(key: TestKey, options: KubernetesTokenOptions): Promise<string> {
  const namespace = options.namespace ?? 'fraud';
  const serviceAccount = options.serviceAccount ?? 'inference';
  const pod = options.pod === undefined ? { name: `${serviceAccount}-0`, uid: randomUUID() } : options.pod;
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  const claims: ClaimOverrides = {
    aud: options.audience ?? ['modelgate'],
    exp: iat + (options.lifetimeSeconds ?? 3600),
    iat,
    nbf: iat,
    iss: options.issuer,
    jti: randomUUID(),
    sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
    'kubernetes.io': {
      namespace,
      serviceaccount: { name: serviceAccount, uid: randomUUID() },
      ...(pod === null ? {} : { pod }),
    },
    ...options.claims,
  };
  return mintToken(key, claims, options.header === undefined ? {} : { header: options.header });
}

export interface SpiffeTokenOptions extends WorkloadTokenOptions {
  /** Default `spiffe://cluster.local/ns/fraud/sa/inference`. */
  spiffeId?: string;
}

/**
 * A SPIFFE JWT-SVID as SPIRE issues it: `sub` is the SPIFFE ID, `aud`,
 * `exp`, `iat`; sign it with an ES256 key (`generateTestKey('ES256')`).
 */
export async function mintSpiffeToken(key: TestKey, options: SpiffeTokenOptions): Promise<string> {
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  const claims: ClaimOverrides = {
    aud: options.audience ?? ['modelgate'],
    exp: iat + (options.lifetimeSeconds ?? 300),
    iat,
    iss: options.issuer,
    sub: options.spiffeId ?? 'spiffe://cluster.local/ns/fraud/sa/inference',
    ...options.claims,
  };
  return mintToken(key, claims, options.header === undefined ? {} : { header: options.header });
}

function withoutUndefined(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined));
}
