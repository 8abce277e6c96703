import type { CatalogLookup } from '../catalog/catalog.types.ts';
import type { Release, ReleaseRef } from '../catalog/release.types.ts';
import type { Clock } from '../clock.ts';
import type { IssuerConfig, ServiceAccountConfig } from '../config/config.types.ts';
import { type ErrorCode, isModelgateError } from '../errors.ts';
import type { Principal } from '../identity/principal.types.ts';
import { findServiceAccount } from '../identity/service-accounts.ts';
import type { AdmissionPolicy } from '../policy/admissible.types.ts';
import { isGranted } from '../policy/grants.ts';
import type { EnvironmentPolicy } from '../policy/policy.types.ts';
import type {
  AdmissionFinding,
  AdmissionReason,
  AdmissionVerdict,
  PodReference,
  PodUnderReview,
} from './admission.types.ts';
import { extractReferences } from './references.ts';

export interface AdmissionDeciderOptions {
  catalog: CatalogLookup;
  /** The admissibility decision shared with serving (src/policy/admissible.ts). */
  policy: AdmissionPolicy;
  /** Whether an environment enforces now (for findings about the Pod itself, not about a release). */
  environments: EnvironmentPolicy;
  issuers: readonly IssuerConfig[];
  serviceAccounts: readonly ServiceAccountConfig[];
  requireModels: boolean;
  clock: Clock;
}

export interface AdmissionDecider {
  /** Decides one Pod for the environment its webhook path names. Pure over its inputs and the catalog. */
  review(pod: PodUnderReview, environment: string): AdmissionVerdict;
}

function finding(reason: AdmissionReason, code: ErrorCode, message: string, blocks = true): AdmissionFinding {
  return { reason, code, message, blocks };
}

function describeRef(ref: ReleaseRef): string {
  return ref.kind === 'digest' ? ref.digest : ref.version;
}

/**
 * The principals a Pod's service account maps to: the configured accounts
 * whose issuer is marked `kubernetes: true` and whose subject is
 * `system:serviceaccount:<ns>:<sa>`. Configured claims are matched against
 * what a projected token of that Pod would carry (namespace and service
 * account name); a claim admission cannot know (pod name) does not match.
 */
function principalsOf(options: AdmissionDeciderOptions, pod: PodUnderReview): Principal[] {
  const subject = `system:serviceaccount:${pod.namespace}:${pod.serviceAccount}`;
  const claims = {
    sub: subject,
    'kubernetes.io': { namespace: pod.namespace, serviceaccount: { name: pod.serviceAccount } },
  };
  return options.issuers
    .filter((issuer) => issuer.kubernetes === true)
    .flatMap((issuer) => {
      const account = findServiceAccount(options.serviceAccounts, issuer.name, subject, claims);
      if (account === undefined) return [];
      return [
        {
          issuerName: issuer.name,
          issuer: issuer.issuer,
          subject,
          serviceAccount: account.name,
          grants: account.grants,
          namespace: pod.namespace,
          expiresAt: 0,
        },
      ];
    });
}

type Resolved = { release: Release } | { finding: AdmissionFinding };

function resolveRelease(
  catalog: CatalogLookup,
  reference: Extract<PodReference, { ok: true }>,
  label: string,
): Resolved {
  try {
    return { release: catalog.resolve(reference.model, reference.ref) };
  } catch (error) {
    if (!isModelgateError(error)) throw error;
    if (error.code === 'MG_MODEL_NOT_FOUND' || error.code === 'MG_RELEASE_NOT_FOUND') {
      return {
        finding: finding(
          'release_not_found',
          error.code,
          `${label}: no such release in the modelgate catalog`,
        ),
      };
    }
    if (error.code === 'MG_RELEASE_CONFLICT') {
      return {
        finding: finding(
          'release_not_found',
          error.code,
          `${label}: two manifests claim this version; reference the release by sha256: digest`,
        ),
      };
    }
    throw error;
  }
}

/** Every finding for one well-formed reference: catalog, environment, admissibility, grants. */
function checkReference(
  options: AdmissionDeciderOptions,
  reference: Extract<PodReference, { ok: true }>,
  environment: string,
  principals: readonly Principal[],
): AdmissionFinding[] {
  const label = `${reference.source} ${reference.model}@${describeRef(reference.ref)}`;
  const found: AdmissionFinding[] = [];
  // Grants block in every mode, as when serving; "not granted" also covers models that do not exist.
  if (principals.length > 0 && !principals.every((p) => isGranted(p, reference.model, environment))) {
    const accounts = principals.map((p) => p.serviceAccount).join(', ');
    found.push(
      finding(
        'not_granted',
        'MG_NOT_GRANTED',
        `${label}: service account ${accounts} is not granted model ${reference.model} in environment ${environment}`,
      ),
    );
  }
  const resolved = resolveRelease(options.catalog, reference, label);
  if ('finding' in resolved) return [...found, resolved.finding];
  const { release } = resolved;
  const decision = options.policy.decide({
    release,
    environment,
    now: options.clock(),
    refIsVersion: reference.ref.kind === 'version',
  });
  if (release.environment !== environment) {
    found.push(
      finding(
        'environment_mismatch',
        'MG_ENVIRONMENT_MISMATCH',
        `${label}: release ${release.digest} was made for environment ${release.environment}, not ${environment}`,
        decision.enforced,
      ),
    );
  }
  for (const blocking of decision.blocking) {
    found.push(
      finding(blocking.violation, blocking.code, `${label}: ${blocking.message}`, decision.enforced),
    );
  }
  for (const waived of decision.findings.filter((f) => f.waivedBy !== undefined)) {
    found.push(
      finding(
        waived.violation,
        waived.code,
        `${label}: ${waived.message} (waived by ${waived.waivedBy})`,
        false,
      ),
    );
  }
  return found;
}

function verdictOf(findings: readonly AdmissionFinding[]): AdmissionVerdict {
  const denials = findings.filter((f) => f.blocks);
  const warnings = findings.filter((f) => !f.blocks);
  if (denials.length > 0) {
    return {
      allowed: false,
      denials,
      warnings: warnings.map((w) => `${w.code} ${w.message}`),
      result: 'denied',
      reason: denials[0]?.reason ?? 'internal',
    };
  }
  return {
    allowed: true,
    denials: [],
    warnings: warnings.map((w) => `${w.code} ${w.message}`),
    result: warnings.length > 0 ? 'warned' : 'allowed',
    reason: warnings[0]?.reason ?? 'none',
  };
}

/**
 * The admission decision (docs/admission.md). Release-level policy comes from
 * the shared AdmissionPolicy, so a release is admissible here exactly when
 * it would be served; its findings block only where the environment
 * enforces. Identity, grants, unknown releases and unreadable references
 * block in every mode, as they would fail when fetching.
 */
export function createAdmissionDecider(options: AdmissionDeciderOptions): AdmissionDecider {
  return {
    review(pod, environment) {
      const references = extractReferences(pod);
      const enforced = options.environments.stateOf(environment).mode === 'enforce';
      const findings: AdmissionFinding[] = [];
      if (references.length === 0 && options.requireModels) {
        findings.push(
          finding(
            'no_models',
            'MG_MODEL_REFERENCE_REQUIRED',
            `the Pod references no model: add annotation modelgate.dev/models or a modelgate fetch init container`,
            enforced,
          ),
        );
      }
      const principals = references.length > 0 ? principalsOf(options, pod) : [];
      if (references.length > 0 && principals.length === 0) {
        findings.push(
          finding(
            'identity_unmapped',
            'MG_IDENTITY_UNMAPPED',
            `service account system:serviceaccount:${pod.namespace}:${pod.serviceAccount} is not a configured modelgate service account`,
          ),
        );
      }
      for (const reference of references) {
        if (!reference.ok) {
          findings.push(
            finding(
              'bad_reference',
              'MG_BAD_REFERENCE',
              `${reference.source} ${reference.text}: ${reference.problem}`,
            ),
          );
        } else {
          findings.push(...checkReference(options, reference, environment, principals));
        }
      }
      return verdictOf(findings);
    },
  };
}
