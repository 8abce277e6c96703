/**
 * Conditions over an attestation's in-toto statement (README "Attestations"):
 * `{path, equals | in | matches | exists | absent}` where `path` is a dot path
 * such as `predicate.runDetails.builder.id` and `[*]` means "any element"
 * (`predicate.buildDefinition.resolvedDependencies[*].digest.sha256`).
 * Compiled once when the configuration loads, so a malformed path or an
 * unknown operator is a configuration error naming the field, never a
 * surprise while serving.
 */

export interface ConditionConfig {
  path: string;
  equals?: unknown;
  in?: unknown[];
  matches?: string;
  exists?: boolean;
  absent?: boolean;
}

export const CONDITION_OPERATORS = ['equals', 'in', 'matches', 'exists', 'absent'] as const;
export type ConditionOperator = (typeof CONDITION_OPERATORS)[number];

type Step = { kind: 'key'; name: string } | { kind: 'each' } | { kind: 'index'; index: number };

export interface CompiledCondition {
  /** The condition as written, for messages (`predicate.result in [pass]`). */
  readonly text: string;
  test(document: unknown): boolean;
}

/** Raised for a condition that cannot be compiled; `field` is the config path of the offending key. */
export class ConditionError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

const SEGMENT = /^([A-Za-z_$@][\w$@-]*)?((?:\[(?:\*|\d+)\])*)$/;

/** `a.b[*].c[0]` → steps; throws ConditionError for anything else (empty segments, stray brackets). */
export function parsePath(path: string, field: string): Step[] {
  if (typeof path !== 'string' || path.length === 0 || path.length > 512) {
    throw new ConditionError(
      field,
      `expected a dot path such as predicate.result, got ${JSON.stringify(path)}`,
    );
  }
  const steps: Step[] = [];
  for (const segment of path.split('.')) {
    const match = SEGMENT.exec(segment);
    if (match === null || segment === '') {
      throw new ConditionError(
        field,
        `expected a dot path of names with optional [*] or [N], got ${JSON.stringify(path)} (bad segment ${JSON.stringify(segment)})`,
      );
    }
    const [, name, brackets = ''] = match;
    if (name !== undefined) steps.push({ kind: 'key', name });
    else if (brackets === '' || steps.length === 0) {
      throw new ConditionError(field, `expected a name before [ ] in ${JSON.stringify(path)}`);
    }
    for (const bracket of brackets.matchAll(/\[(\*|\d+)\]/g)) {
      const inner = bracket[1];
      steps.push(inner === '*' ? { kind: 'each' } : { kind: 'index', index: Number(inner) });
    }
  }
  return steps;
}

/** Every value the path reaches (`[*]` fans out); missing keys reach nothing. */
function reach(value: unknown, steps: readonly Step[], from = 0): unknown[] {
  if (from === steps.length) return value === undefined ? [] : [value];
  const step = steps[from];
  if (step === undefined) return [];
  if (step.kind === 'each') {
    return Array.isArray(value) ? value.flatMap((element) => reach(element, steps, from + 1)) : [];
  }
  if (step.kind === 'index') {
    return Array.isArray(value) ? reach(value[step.index], steps, from + 1) : [];
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [];
  // Own properties only: `__proto__` or `constructor` in a path must not reach Object.prototype.
  if (!Object.hasOwn(value, step.name)) return [];
  return reach((value as Record<string, unknown>)[step.name], steps, from + 1);
}

/** Deep equality over JSON values (attestation predicates are JSON). */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((element, i) => jsonEqual(element, b[i]));
  }
  const left = Object.entries(a);
  const right = b as Record<string, unknown>;
  return (
    left.length === Object.keys(right).length &&
    left.every(([key, v]) => Object.hasOwn(right, key) && jsonEqual(v, right[key]))
  );
}

function operatorOf(condition: ConditionConfig, field: string): ConditionOperator {
  const keys = Object.keys(condition).filter((key) => key !== 'path');
  const unknown = keys.filter((key) => !(CONDITION_OPERATORS as readonly string[]).includes(key));
  if (unknown.length > 0) {
    throw new ConditionError(
      `${field}.${unknown[0]}`,
      `unknown operator; expected one of ${CONDITION_OPERATORS.join(', ')}`,
    );
  }
  const [operator, ...more] = keys as ConditionOperator[];
  if (operator === undefined || more.length > 0) {
    throw new ConditionError(
      field,
      `expected exactly one of ${CONDITION_OPERATORS.join(', ')} beside path, got ${keys.length}`,
    );
  }
  return operator;
}

function compileMatches(pattern: unknown, field: string): RegExp {
  if (typeof pattern !== 'string')
    throw new ConditionError(`${field}.matches`, 'expected a regular expression string');
  try {
    // Anchored: `matches` is a whole-value match, never a substring search.
    return new RegExp(`^(?:${pattern})$`, 'u');
  } catch (error) {
    throw new ConditionError(`${field}.matches`, `invalid regular expression: ${(error as Error).message}`);
  }
}

/** Compiles one condition; `field` is its config path (e.g. `environments.prod.requiredAttestations[1].conditions[0]`). */
export function compileCondition(condition: ConditionConfig, field: string): CompiledCondition {
  if (condition === null || typeof condition !== 'object')
    throw new ConditionError(field, 'expected an object');
  const steps = parsePath(condition.path, `${field}.path`);
  const operator = operatorOf(condition, field);
  const path = condition.path;
  switch (operator) {
    case 'equals': {
      const expected = condition.equals;
      return {
        text: `${path} equals ${JSON.stringify(expected)}`,
        test: (doc) => reach(doc, steps).some((v) => jsonEqual(v, expected)),
      };
    }
    case 'in': {
      const allowed = condition.in;
      if (!Array.isArray(allowed) || allowed.length === 0)
        throw new ConditionError(`${field}.in`, 'expected a non-empty list');
      return {
        text: `${path} in ${JSON.stringify(allowed)}`,
        test: (doc) => reach(doc, steps).some((v) => allowed.some((a) => jsonEqual(v, a))),
      };
    }
    case 'matches': {
      const re = compileMatches(condition.matches, field);
      return {
        text: `${path} matches ${JSON.stringify(condition.matches)}`,
        test: (doc) => reach(doc, steps).some((v) => typeof v === 'string' && re.test(v)),
      };
    }
    case 'exists':
    case 'absent': {
      const flag = condition[operator];
      if (flag !== true) throw new ConditionError(`${field}.${operator}`, 'expected true');
      const wantPresent = operator === 'exists';
      return {
        text: `${path} ${operator}`,
        test: (doc) => reach(doc, steps).length > 0 === wantPresent,
      };
    }
  }
}

/** Every value a dot path reaches in a document (used by lineage to read resolvedDependencies). */
export function valuesAt(document: unknown, path: string): unknown[] {
  return reach(document, parsePath(path, 'path'));
}
