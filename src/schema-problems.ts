import type { ErrorObject } from 'ajv';

/**
 * Turns Ajv errors into problems an operator can act on, located by a path
 * like `issuers[1].audiences` or `files[2].digest`. Shared by the
 * configuration loader and the release manifest validator.
 */
export interface SchemaProblem {
  path: string;
  message: string;
}

/** `['issuers', 1, 'audiences']` → `issuers[1].audiences` */
export function formatPath(segments: readonly (string | number)[]): string {
  let out = '';
  for (const segment of segments) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? segment : `.${segment}`;
  }
  return out;
}

/** A JSON pointer (`/issuers/1/audiences`) as path segments, array indexes as numbers. */
export function pointerSegments(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replaceAll('~1', '/').replaceAll('~0', '~')));
}

/**
 * One Ajv error as a problem. A schema may carry `errorText` to replace the
 * generic message of a `type`, `pattern` or other keyword failure.
 */
export function describeAjvError(error: ErrorObject): SchemaProblem {
  const segments = pointerSegments(error.instancePath);
  const params = error.params as Record<string, unknown>;
  const errorText = (error.parentSchema as { errorText?: unknown } | undefined)?.errorText;
  const custom = typeof errorText === 'string' ? errorText : undefined;
  switch (error.keyword) {
    case 'additionalProperties':
      return { path: formatPath([...segments, String(params.additionalProperty)]), message: 'unknown key' };
    case 'required':
      return { path: formatPath([...segments, String(params.missingProperty)]), message: 'is required' };
    case 'dependencies':
      return {
        path: formatPath([...segments, String(params.missingProperty)]),
        message: `is required when ${String(params.property)} is present`,
      };
    case 'minItems':
    case 'minLength':
    case 'minProperties':
      return {
        path: formatPath(segments),
        message: params.limit === 1 ? 'must not be empty' : (error.message ?? error.keyword),
      };
    case 'type':
      return {
        path: formatPath(segments),
        message: custom ?? `must be ${String(params.type).replace(',', ' or ')}`,
      };
    case 'enum':
      return {
        path: formatPath(segments),
        message: `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
      };
    default:
      return { path: formatPath(segments), message: custom ?? error.message ?? error.keyword };
  }
}

/** The problems without repeats (Ajv can report one mistake once per schema branch). */
export function dedupeProblems<T extends SchemaProblem>(problems: T[]): T[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.path}\0${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
