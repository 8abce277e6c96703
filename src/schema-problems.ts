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
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const known = Object.keys(
        (error.parentSchema as { properties?: object } | undefined)?.properties ?? {},
      );
      const guess = suggestKey(key, known);
      return {
        path: formatPath([...segments, key]),
        message: guess === undefined ? 'unknown key' : `unknown key; did you mean "${guess}"?`,
      };
    }
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

/**
 * The known name closest to `name` when it is close enough to be a typo:
 * at most a third of its letters differ (Damerau–Levenshtein, case folded).
 */
export function suggestKey(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const limit = Math.max(1, Math.floor(Math.max(name.length, 3) / 3));
  return bestDistance <= limit ? best : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number): number => rows[i]?.[j] ?? Number.POSITIVE_INFINITY;
  for (let i = 1; i <= a.length; i++) {
    const row = rows[i] ?? [];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, at(i - 2, j - 2) + 1);
      row[j] = best;
    }
  }
  return at(a.length, b.length);
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
