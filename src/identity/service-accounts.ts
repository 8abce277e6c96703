import type { ServiceAccountConfig } from '../config/config.types.ts';
import type { Principal } from './principal.types.ts';

/** The verified claims of one token (JSON values, attacker-shaped but signed by a trusted issuer). */
export type Claims = Readonly<Record<string, unknown>>;

/**
 * Resolves a dotted claim path such as `kubernetes.io.namespace`. Claim names
 * may themselves contain dots (`kubernetes.io`), so at each level the longest
 * run of segments that names an own property is tried first, then shorter
 * ones: both `{"kubernetes.io": {"namespace": "x"}}` and
 * `{"kubernetes": {"io": {"namespace": "x"}}}` resolve. Returns undefined when
 * nothing matches. Only own properties count, so `__proto__` or `constructor`
 * in a path never reach Object.prototype.
 */
export function resolveClaim(claims: unknown, path: string): unknown {
  return resolveSegments(claims, path.split('.'));
}

function resolveSegments(value: unknown, segments: readonly string[]): unknown {
  if (segments.length === 0) return value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  for (let take = segments.length; take >= 1; take--) {
    const key = segments.slice(0, take).join('.');
    if (!Object.hasOwn(value, key)) continue;
    const found = resolveSegments((value as Record<string, unknown>)[key], segments.slice(take));
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * The service account a verified token maps to: same issuer name, exact
 * `sub`, and every configured claim equal (`===`) to the token's. Config
 * validation guarantees at most one account can match a token.
 */
export function findServiceAccount(
  accounts: readonly ServiceAccountConfig[],
  issuerName: string,
  subject: string,
  claims: Claims,
): ServiceAccountConfig | undefined {
  return accounts.find(
    (account) =>
      account.issuer === issuerName &&
      account.subject === subject &&
      Object.entries(account.claims).every(([path, expected]) => resolveClaim(claims, path) === expected),
  );
}

/** Builds the principal, adding the Kubernetes pod and namespace when the token carries them. */
export function toPrincipal(
  account: ServiceAccountConfig,
  issuer: { name: string; issuer: string },
  claims: Claims & { sub: string; exp: number },
): Principal {
  const principal: Principal = {
    issuerName: issuer.name,
    issuer: issuer.issuer,
    subject: claims.sub,
    serviceAccount: account.name,
    grants: account.grants,
    expiresAt: claims.exp,
  };
  const namespace = resolveClaim(claims, 'kubernetes.io.namespace');
  if (typeof namespace === 'string') principal.namespace = namespace;
  const podName = resolveClaim(claims, 'kubernetes.io.pod.name');
  const podUid = resolveClaim(claims, 'kubernetes.io.pod.uid');
  if (typeof podName === 'string' || typeof podUid === 'string') {
    principal.pod = {};
    if (typeof podName === 'string') principal.pod.name = podName;
    if (typeof podUid === 'string') principal.pod.uid = podUid;
  }
  return principal;
}
