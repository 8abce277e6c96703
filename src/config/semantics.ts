import { suggestKey } from '../schema-problems.ts';
import type { ModelgateConfig } from './config.types.ts';
import type { ConfigProblem } from './load.ts';

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

/** True for https URLs, and for http URLs whose host is a loopback address. */
export function isSecureOrLoopbackUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && (LOOPBACK_HOSTS.has(url.hostname) || url.hostname.startsWith('127.'));
}

function duplicates(names: unknown[]): Set<string> {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const name of names) if (typeof name === 'string') (seen.has(name) ? dup : seen).add(name);
  return dup;
}

/** Two claim sets can match one token unless some shared key demands different values. */
function claimsCompatible(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  for (const [key, value] of Object.entries(a)) {
    if (key in b && b[key] !== value) return false;
  }
  return true;
}

function didYouMean(name: string, known: readonly string[]): string {
  const guess = suggestKey(name, known);
  return guess === undefined ? '' : `; did you mean "${guess}"?`;
}

/** An environment name used in a grant or signer, with where it is used. */
interface EnvironmentUse {
  path: string;
  name: string;
}

function environmentUses(config: ModelgateConfig): EnvironmentUse[] {
  const uses: EnvironmentUse[] = [];
  const collect = (path: string, names: unknown) => {
    if (!Array.isArray(names)) return;
    names.forEach((name: unknown, k) => {
      if (typeof name === 'string') uses.push({ path: `${path}[${k}]`, name });
    });
  };
  config.serviceAccounts.forEach((account, i) => {
    if (!Array.isArray(account.grants)) return;
    account.grants.forEach((grant, j) => {
      collect(`serviceAccounts[${i}].grants[${j}].environments`, grant?.environments);
    });
  });
  config.signers.forEach((signer, i) => {
    collect(`signers[${i}].environments`, signer.environments);
  });
  return uses;
}

/**
 * Environment names in grants and signers that `environments` does not list
 * but that are one typo away from one it does (`prdo` for `prod`): such a
 * grant would silently grant nothing, so it is an error. An unlisted name far
 * from every listed one is legitimate (it gets the safe default: enforce,
 * digests only) and only a warning (`configWarnings`).
 */
function misspeltEnvironments(config: ModelgateConfig): ConfigProblem[] {
  const configured = Object.keys(config.environments);
  return environmentUses(config).flatMap(({ path, name }) => {
    if (configured.includes(name)) return [];
    const guess = suggestKey(name, configured);
    if (guess === undefined) return [];
    return [
      {
        path,
        message: `environment "${name}" is not configured under environments; did you mean "${guess}"?`,
      },
    ];
  });
}

/**
 * Things that are valid but probably not meant: environment names in grants
 * and signers that `environments` does not list (served with the default
 * policy). `serve` logs each at warn when it starts.
 */
export function configWarnings(config: ModelgateConfig): ConfigProblem[] {
  const configured = Object.keys(config.environments);
  return environmentUses(config)
    .filter(({ name }) => !configured.includes(name) && suggestKey(name, configured) === undefined)
    .map(({ path, name }) => ({
      path,
      message: `environment "${name}" is not configured under environments; it gets the default policy (enforce, digest references only)`,
    }));
}

/** Cross-field checks the schema cannot express. Every problem is returned, not just the first. */
export function checkConfigSemantics(config: ModelgateConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const issuerNames = new Set(config.issuers.map((i) => i.name));

  const dupIssuers = duplicates(config.issuers.map((i) => i.name));
  const dupIss = duplicates(config.issuers.map((i) => i.issuer));
  config.issuers.forEach((issuer, i) => {
    const at = `issuers[${i}]`;
    if (dupIssuers.has(issuer.name))
      problems.push({ path: `${at}.name`, message: `duplicate issuer name "${issuer.name}"` });
    if (dupIss.has(issuer.issuer))
      problems.push({ path: `${at}.issuer`, message: `issuer "${issuer.issuer}" is configured twice` });
    const sources = [issuer.jwksFile, issuer.jwksUri, issuer.discovery ? 'discovery' : undefined].filter(
      Boolean,
    );
    if (sources.length !== 1) {
      problems.push({ path: at, message: 'exactly one of jwksFile, jwksUri or discovery: true is required' });
    }
    if (issuer.jwksUri && !isSecureOrLoopbackUrl(issuer.jwksUri)) {
      problems.push({
        path: `${at}.jwksUri`,
        message: 'must be an https: URL (http: only for loopback hosts)',
      });
    }
    if (issuer.discovery && !isSecureOrLoopbackUrl(issuer.issuer)) {
      problems.push({
        path: `${at}.issuer`,
        message: 'discovery needs an https: issuer URL (http: only for loopback hosts)',
      });
    }
  });

  const dupAccounts = duplicates(config.serviceAccounts.map((a) => a.name));
  config.serviceAccounts.forEach((account, i) => {
    const at = `serviceAccounts[${i}]`;
    if (dupAccounts.has(account.name))
      problems.push({ path: `${at}.name`, message: `duplicate service account "${account.name}"` });
    if (typeof account.issuer === 'string' && !issuerNames.has(account.issuer)) {
      problems.push({
        path: `${at}.issuer`,
        message: `no issuer named "${account.issuer}" under issuers${didYouMean(account.issuer, [...issuerNames])}`,
      });
    }
    for (let j = 0; j < i; j++) {
      const other = config.serviceAccounts[j];
      if (
        other !== undefined &&
        other.issuer === account.issuer &&
        other.subject === account.subject &&
        claimsCompatible(account.claims ?? {}, other.claims ?? {})
      ) {
        problems.push({
          path: at,
          message: `could match the same tokens as serviceAccounts[${j}] ("${other.name}"): same issuer and subject, and no claim tells them apart`,
        });
      }
    }
  });

  const dupSigners = duplicates(config.signers.map((s) => s.name));
  config.signers.forEach((signer, i) => {
    if (dupSigners.has(signer.name))
      problems.push({ path: `signers[${i}].name`, message: `duplicate signer "${signer.name}"` });
  });

  problems.push(...misspeltEnvironments(config));

  for (const [name, environment] of Object.entries(config.environments)) {
    if (environment.enforceFrom !== undefined && Number.isNaN(Date.parse(environment.enforceFrom))) {
      problems.push({
        path: `environments.${name}.enforceFrom`,
        message: 'must be an RFC 3339 instant such as 2027-01-15T00:00:00Z',
      });
    }
  }

  if (config.breakGlass) {
    try {
      new RegExp(config.breakGlass.incidentPattern, 'u');
    } catch (error) {
      problems.push({
        path: 'breakGlass.incidentPattern',
        message: `invalid regular expression: ${(error as Error).message}`,
      });
    }
  }

  return problems;
}
