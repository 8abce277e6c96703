import { ModelgateError } from '../errors.ts';
import type { AdmissionVerdict, ContainerUnderReview, PodUnderReview } from './admission.types.ts';

/** A parsed `admission.k8s.io/v1` AdmissionReview request for a Pod. */
export interface PodReview {
  uid: string;
  dryRun: boolean;
  pod: PodUnderReview;
}

/** The API server caps warnings it relays; longer ones are cut here so none is dropped silently. */
const MAX_WARNING_CHARS = 256;
const MAX_WARNINGS = 20;

type Json = Record<string, unknown>;

function malformed(message: string): ModelgateError {
  return new ModelgateError('MG_ADMISSION_REVIEW_MALFORMED', `malformed AdmissionReview: ${message}`);
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringList(value: unknown, what: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string'))
    throw malformed(`${what} must be a list of strings`);
  return value;
}

function readContainers(spec: Json, kind: ContainerUnderReview['kind']): ContainerUnderReview[] {
  const list = spec[kind];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw malformed(`spec.${kind} must be a list`);
  return list.map((container: unknown, i) => {
    if (!isObject(container) || typeof container.name !== 'string')
      throw malformed(`spec.${kind}[${i}] must be an object with a name`);
    return {
      kind,
      name: container.name,
      image: typeof container.image === 'string' ? container.image : '',
      argv: [
        ...stringList(container.command, `spec.${kind}[${i}].command`),
        ...stringList(container.args, `spec.${kind}[${i}].args`),
      ],
    };
  });
}

/**
 * Parses an AdmissionReview body as the API server sends it. Throws
 * MG_ADMISSION_REVIEW_MALFORMED (answered 400, never allowed) for anything
 * that is not a v1 review of a Pod with a uid and an object.
 */
export function parseAdmissionReview(body: Buffer): PodReview {
  let review: unknown;
  try {
    review = JSON.parse(body.toString('utf8'));
  } catch {
    throw malformed('the body is not JSON');
  }
  if (!isObject(review)) throw malformed('the body is not a JSON object');
  if (review.apiVersion !== 'admission.k8s.io/v1' || review.kind !== 'AdmissionReview')
    throw malformed('apiVersion must be admission.k8s.io/v1 and kind AdmissionReview');
  const request = review.request;
  if (!isObject(request)) throw malformed('request is missing');
  if (typeof request.uid !== 'string' || request.uid.length === 0 || request.uid.length > 128)
    throw malformed('request.uid is missing');
  const kind = request.kind;
  if (!isObject(kind) || kind.kind !== 'Pod' || (kind.group !== '' && kind.group !== undefined))
    throw malformed('request.kind must be the core Pod kind');
  const object = request.object;
  if (!isObject(object)) throw malformed('request.object is missing');
  const metadata = isObject(object.metadata) ? object.metadata : {};
  const spec = object.spec;
  if (!isObject(spec)) throw malformed('request.object.spec is missing');
  const namespace = typeof request.namespace === 'string' ? request.namespace : metadata.namespace;
  if (typeof namespace !== 'string' || namespace.length === 0)
    throw malformed('request.namespace is missing');
  const serviceAccount = spec.serviceAccountName ?? 'default';
  if (typeof serviceAccount !== 'string' || serviceAccount.length === 0)
    throw malformed('spec.serviceAccountName must be a string');
  return {
    uid: request.uid,
    dryRun: request.dryRun === true,
    pod: {
      namespace,
      serviceAccount,
      annotations: isObject(metadata.annotations) ? metadata.annotations : {},
      containers: [...readContainers(spec, 'initContainers'), ...readContainers(spec, 'containers')],
    },
  };
}

/** The AdmissionReview response body for a verdict. */
export function reviewResponse(uid: string, verdict: AdmissionVerdict): Json {
  const response: Json = { uid, allowed: verdict.allowed };
  if (!verdict.allowed) {
    response.status = {
      code: 403,
      reason: 'Forbidden',
      message: `modelgate: ${verdict.denials.map((d) => `${d.code} ${d.message}`).join('; ')}`,
    };
  }
  if (verdict.warnings.length > 0) {
    response.warnings = verdict.warnings
      .slice(0, MAX_WARNINGS)
      .map((w) => (w.length > MAX_WARNING_CHARS ? `${w.slice(0, MAX_WARNING_CHARS - 1)}…` : w));
  }
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}
