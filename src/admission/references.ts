import type { ReleaseRef } from '../catalog/release.types.ts';
import { isValidModelName, isValidVersion } from '../rules.ts';
import type { ContainerUnderReview, PodReference, PodUnderReview } from './admission.types.ts';

/** The Pod annotation listing model references (docs/admission.md). */
export const MODELS_ANNOTATION = 'modelgate.dev/models';

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** Reads `sha256:<hex>` or a version; anything else is a problem string. */
function parseRef(text: string): ReleaseRef | string {
  if (text.startsWith('sha256:')) {
    return DIGEST_RE.test(text) ? { kind: 'digest', digest: text } : 'not a sha256:<64 lowercase hex> digest';
  }
  return isValidVersion(text) ? { kind: 'version', version: text } : 'not a valid release version or digest';
}

function reference(source: string, text: string, model: string, refText: string): PodReference {
  if (!isValidModelName(model)) return { ok: false, source, text, problem: 'not a valid model name' };
  const ref = parseRef(refText);
  if (typeof ref === 'string') return { ok: false, source, text, problem: ref };
  return { ok: true, source, text, model, ref };
}

/**
 * One annotation entry: `<model>@sha256:<hex>` (the documented form), or
 * `<model>@<version>` / `<model>:<tag>`, which are read as version (mutable)
 * references so the policy can name them; a bare model name is a problem.
 */
function parseAnnotationEntry(entry: string): PodReference {
  const source = `annotation ${MODELS_ANNOTATION}`;
  const at = entry.indexOf('@');
  if (at > 0) return reference(source, entry, entry.slice(0, at), entry.slice(at + 1));
  const colon = entry.lastIndexOf(':');
  if (colon > 0) return reference(source, entry, entry.slice(0, colon), entry.slice(colon + 1));
  return { ok: false, source, text: entry, problem: 'names no release (write <model>@sha256:<hex>)' };
}

function annotationReferences(annotations: Record<string, unknown>): PodReference[] {
  const value = annotations[MODELS_ANNOTATION];
  if (value === undefined) return [];
  const source = `annotation ${MODELS_ANNOTATION}`;
  if (typeof value !== 'string') return [{ ok: false, source, text: '', problem: 'is not a string' }];
  const entries = value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  if (entries.length === 0) return [{ ok: false, source, text: value, problem: 'lists no reference' }];
  return entries.map(parseAnnotationEntry);
}

/** Index of the `fetch` subcommand when the container runs `modelgate fetch`, else -1. */
function fetchIndex(argv: readonly string[]): number {
  const at = argv.indexOf('fetch');
  if (at < 0) return -1;
  // `fetch` first (the image entrypoint is modelgate), or right after a modelgate executable.
  if (at === 0) return 0;
  const before = argv[at - 1] ?? '';
  return before === 'modelgate' || before.endsWith('/modelgate') ? at : -1;
}

/** Reads `--name V` and `--name=V`; returns every value given (a repeated flag is ambiguous). */
function flagValues(args: readonly string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    if (arg === `--${name}`) {
      values.push(args[i + 1] ?? '');
      i++;
    } else if (arg.startsWith(`--${name}=`)) {
      values.push(arg.slice(name.length + 3));
    }
  }
  return values;
}

/** KServe storage URIs handed to a storage container (deploy/kubernetes/admission/kserve-storage-container.yaml). */
const STORAGE_URI_PREFIX = 'modelgate://';

function storageUriReferences(container: ContainerUnderReview, source: string): PodReference[] {
  return container.argv
    .filter((arg) => arg.startsWith(STORAGE_URI_PREFIX))
    .map((arg) => {
      const body = arg.slice(STORAGE_URI_PREFIX.length);
      const at = body.indexOf('@');
      if (at <= 0)
        return {
          ok: false,
          source,
          text: arg,
          problem: 'names no release (write modelgate://<model>@sha256:<hex>)',
        };
      return reference(source, arg, body.slice(0, at), body.slice(at + 1));
    });
}

function containerReferences(container: ContainerUnderReview): PodReference[] {
  const source = `${container.kind}[${container.name}]`;
  return [...fetchReferences(container, source), ...storageUriReferences(container, source)];
}

function fetchReferences(container: ContainerUnderReview, source: string): PodReference[] {
  const at = fetchIndex(container.argv);
  if (at < 0) {
    // A shell line hides the arguments; refusing it beats letting an unchecked reference through.
    const hidden = container.argv.find((arg) => /\bmodelgate\s+fetch\b/.test(arg));
    if (hidden === undefined) return [];
    return [
      {
        ok: false,
        source,
        text: hidden.slice(0, 120),
        problem: 'runs modelgate fetch inside a shell line; pass fetch its arguments as separate args',
      },
    ];
  }
  const args = container.argv.slice(at + 1);
  const models = flagValues(args, 'model');
  const releases = flagValues(args, 'release');
  const text = `--model ${models.join(',')} --release ${releases.join(',')}`;
  if (models.length !== 1 || releases.length !== 1) {
    return [
      { ok: false, source, text, problem: 'modelgate fetch needs exactly one --model and one --release' },
    ];
  }
  const [model = '', release = ''] = [models[0], releases[0]];
  return [reference(source, `${model}@${release}`, model, release)];
}

/**
 * Every model reference of a Pod: the annotation first, then init containers,
 * then containers — `modelgate fetch` arguments and `modelgate://` storage URIs.
 */
export function extractReferences(pod: PodUnderReview): PodReference[] {
  return [...annotationReferences(pod.annotations), ...pod.containers.flatMap(containerReferences)];
}
