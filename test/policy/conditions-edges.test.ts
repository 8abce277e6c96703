import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type ConditionConfig,
  ConditionError,
  compileCondition,
  valuesAt,
} from '../../src/policy/conditions.ts';

// A scan predicate with the shapes operators meet in real statements: strings, numbers, null, an empty
// object, nested arrays and an array long enough for a two-digit index.
const statement = {
  predicate: {
    result: 'pass',
    count: 3,
    empty: null,
    meta: {},
    tags: ['a', 'b'],
    scanner: { name: 'grype', version: '0.80' },
    matrix: [
      ['x', 'y'],
      ['z', 'w'],
    ],
    findings: [{ severity: 'low' }, { severity: 'high', cve: 'CVE-1' }],
    layers: Array.from({ length: 12 }, (_, i) => ({ id: `layer-${i}` })),
    owner: 'Ölçü',
  },
};

function holds(condition: ConditionConfig, document: unknown = statement): boolean {
  return compileCondition(condition, 'c').test(document);
}

/** The ConditionError a malformed condition raises (fails the test if it compiles or throws anything else). */
function refusal(condition: unknown): ConditionError {
  try {
    compileCondition(condition as ConditionConfig, 'c');
  } catch (error) {
    assert.ok(error instanceof ConditionError, `expected a ConditionError, got ${String(error)}`);
    return error;
  }
  assert.fail(`compiled ${JSON.stringify(condition)}`);
}

describe('when a condition path walks the statement', () => {
  it('reads an index of two digits and a nested array index', () => {
    assert.equal(holds({ path: 'predicate.layers[10].id', equals: 'layer-10' }), true);
    assert.equal(holds({ path: 'predicate.layers[11].id', equals: 'layer-10' }), false);
    assert.equal(holds({ path: 'predicate.matrix[1][0]', equals: 'z' }), true);
    assert.equal(holds({ path: 'predicate.matrix[*][1]', equals: 'w' }), true);
  });

  it('reads [N] as that element only, not as any element', () => {
    assert.equal(holds({ path: 'predicate.findings[1].severity', equals: 'low' }), false);
    assert.equal(holds({ path: 'predicate.findings[1].severity', equals: 'high' }), true);
  });

  it('reaches nothing past the end of an array', () => {
    assert.equal(holds({ path: 'predicate.findings[5]', exists: true }), false);
    assert.equal(holds({ path: 'predicate.findings[5]', absent: true }), true);
  });

  it('reaches nothing when [*] or [N] meets something that is not an array', () => {
    assert.equal(holds({ path: 'predicate.result[*]', exists: true }), false);
    assert.equal(holds({ path: 'predicate.scanner[0]', exists: true }), false);
  });

  it('reaches nothing when a name meets a string, null or an array', () => {
    assert.equal(holds({ path: 'predicate.result.length', exists: true }), false);
    assert.equal(holds({ path: 'predicate.empty.anything', exists: true }), false);
    assert.equal(holds({ path: 'predicate.tags.length', exists: true }), false);
  });

  it('valuesAt returns every value [*] reaches, in order', () => {
    assert.deepEqual(valuesAt(statement, 'predicate.findings[*].severity'), ['low', 'high']);
    assert.deepEqual(valuesAt(statement, 'predicate.findings[*].cve'), ['CVE-1']);
  });
});

describe('when equals compares JSON values', () => {
  for (const [label, path, expected] of [
    ['a number to the same digits as a string', 'predicate.count', '3'],
    ['null to an empty object', 'predicate.empty', {}],
    ['a number to an empty object', 'predicate.count', {}],
    ['an empty object to null', 'predicate.meta', null],
    ['an empty object to an empty string', 'predicate.meta', ''],
    ['an empty object to zero', 'predicate.meta', 0],
    ['an empty object to an empty array', 'predicate.meta', []],
    ['an array to an object with the same indexes', 'predicate.tags', { 0: 'a', 1: 'b' }],
    ['an array to a longer array', 'predicate.tags', ['a', 'b', 'c']],
    ['an array to a shorter array', 'predicate.tags', ['a']],
    ['an array to one with another element', 'predicate.tags', ['a', 'c']],
    ['an array to one in another order', 'predicate.tags', ['b', 'a']],
    [
      'an object to one with an extra key',
      'predicate.scanner',
      { name: 'grype', version: '0.80', os: 'linux' },
    ],
    ['an object to one missing a key', 'predicate.scanner', { name: 'grype' }],
    ['an object to one with another key', 'predicate.scanner', { name: 'grype', release: '0.80' }],
    ['an object to one with another value', 'predicate.scanner', { name: 'grype', version: '0.81' }],
  ] as const) {
    it(`does not equate ${label}`, () => {
      assert.equal(holds({ path, equals: expected }), false);
    });
  }

  it('equates arrays and objects with the same content, whatever the key order', () => {
    assert.equal(holds({ path: 'predicate.tags', equals: ['a', 'b'] }), true);
    assert.equal(holds({ path: 'predicate.scanner', equals: { version: '0.80', name: 'grype' } }), true);
    assert.equal(holds({ path: 'predicate.meta', equals: {} }), true);
    assert.equal(holds({ path: 'predicate.empty', equals: null }), true);
  });
});

describe('when in, matches, exists and absent fan out over [*]', () => {
  it('in holds when any reached value is listed, and never when nothing is reached', () => {
    assert.equal(holds({ path: 'predicate.findings[*].severity', in: ['high', 'critical'] }), true);
    assert.equal(holds({ path: 'predicate.missing', in: ['pass'] }), false);
  });

  it('matches holds when any reached value matches, and never when nothing is reached', () => {
    assert.equal(holds({ path: 'predicate.findings[*].severity', matches: 'h.*' }), true);
    assert.equal(holds({ path: 'predicate.missing', matches: '.*' }), false);
  });

  it('matches only strings: a number does not match its digits', () => {
    assert.equal(holds({ path: 'predicate.count', matches: '\\d+' }), false);
  });

  it('matches with Unicode regular expressions', () => {
    assert.equal(holds({ path: 'predicate.owner', matches: '\\p{Lu}\\p{Ll}+' }), true);
  });

  it('absent holds only when nothing is reached', () => {
    assert.equal(holds({ path: 'predicate.result', absent: true }), false);
    assert.equal(holds({ path: 'predicate.findings[*].cve', absent: true }), false);
    assert.equal(holds({ path: 'predicate.missing', absent: true }), true);
  });
});

describe('when a finding quotes a condition', () => {
  const quoted: [ConditionConfig, string][] = [
    [{ path: 'predicate.result', equals: 'pass' }, 'predicate.result equals "pass"'],
    [{ path: 'predicate.result', in: ['pass', 'waived'] }, 'predicate.result in ["pass","waived"]'],
    [
      { path: 'predicate.builder.id', matches: 'https://ci\\..*' },
      'predicate.builder.id matches "https://ci\\\\..*"',
    ],
    [{ path: 'predicate.findings[*].cve', exists: true }, 'predicate.findings[*].cve exists'],
    [{ path: 'predicate.findings[*].exploit', absent: true }, 'predicate.findings[*].exploit absent'],
  ];
  for (const [condition, text] of quoted) {
    it(`writes it as ${text}`, () => {
      assert.equal(compileCondition(condition, 'c').text, text);
    });
  }
});

describe('when a condition is malformed', () => {
  for (const [label, condition, field, message] of [
    ['a condition that is not an object', 'predicate.result', 'c', /^c: expected an object$/],
    ['a null condition', null, 'c', /^c: expected an object$/],
    [
      'a path that is not a string',
      { path: 42, exists: true },
      'c.path',
      /^c\.path: expected a dot path such as predicate\.result, got 42$/,
    ],
    [
      'an empty path',
      { path: '', exists: true },
      'c.path',
      /^c\.path: expected a dot path such as predicate\.result, got ""$/,
    ],
    [
      'a path over 512 characters',
      { path: `predicate.${'a'.repeat(503)}`, exists: true },
      'c.path',
      /expected a dot path such as/,
    ],
    ['an empty segment', { path: 'predicate..result', exists: true }, 'c.path', /bad segment ""/],
    [
      'a segment starting with a digit',
      { path: 'predicate.9lives', exists: true },
      'c.path',
      /^c\.path: expected a dot path of names with optional \[\*\] or \[N\], got "predicate\.9lives" \(bad segment "9lives"\)$/,
    ],
    [
      'a path starting with [ ]',
      { path: '[0].predicate', exists: true },
      'c.path',
      /^c\.path: expected a name before \[ \] in "\[0\]\.predicate"$/,
    ],
    [
      'no operator',
      { path: 'predicate.result' },
      'c',
      /^c: expected exactly one of equals, in, matches, exists, absent beside path, got 0$/,
    ],
    ['two operators', { path: 'predicate.result', equals: 'a', in: ['a'] }, 'c', /got 2$/],
    [
      'an unknown operator',
      { path: 'predicate.result', contains: 'x' },
      'c.contains',
      /^c\.contains: unknown operator; expected one of equals, in, matches, exists, absent$/,
    ],
    [
      'in with a string',
      { path: 'predicate.result', in: 'pass' },
      'c.in',
      /^c\.in: expected a non-empty list$/,
    ],
    [
      'in with an empty list',
      { path: 'predicate.result', in: [] },
      'c.in',
      /^c\.in: expected a non-empty list$/,
    ],
    [
      'matches with a number',
      { path: 'predicate.result', matches: 5 },
      'c.matches',
      /^c\.matches: expected a regular expression string$/,
    ],
    [
      'matches with a bad regex',
      { path: 'predicate.result', matches: '(' },
      'c.matches',
      /^c\.matches: invalid regular expression: /,
    ],
    ['absent: false', { path: 'predicate.result', absent: false }, 'c.absent', /^c\.absent: expected true$/],
  ] as const) {
    it(`refuses ${label}, naming ${field}`, () => {
      const error = refusal(condition);
      assert.equal(error.field, field);
      assert.match(error.message, message);
    });
  }

  it('accepts a path of exactly 512 characters', () => {
    const path = `predicate.${'a'.repeat(502)}`;
    assert.equal(path.length, 512);
    assert.equal(holds({ path, absent: true }), true);
  });

  it('valuesAt refuses a malformed path, naming it as path', () => {
    assert.throws(
      () => valuesAt(statement, 'predicate..x'),
      (error: unknown) => error instanceof ConditionError && error.field === 'path',
    );
  });
});
