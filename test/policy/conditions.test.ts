import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConditionError, compileCondition, valuesAt } from '../../src/policy/conditions.ts';

const statement = {
  predicate: {
    result: 'pass',
    findings: [{ severity: 'low' }, { severity: 'high', cve: 'CVE-1' }],
    builder: { id: 'https://ci.example/release' },
    empty: null,
  },
};

function holds(condition: Parameters<typeof compileCondition>[0]): boolean {
  return compileCondition(condition, 'c').test(statement);
}

describe('attestation conditions', () => {
  it('equals compares JSON values', () => {
    assert.equal(holds({ path: 'predicate.result', equals: 'pass' }), true);
    assert.equal(holds({ path: 'predicate.result', equals: 'fail' }), false);
    assert.equal(holds({ path: 'predicate.builder', equals: { id: 'https://ci.example/release' } }), true);
  });

  it('in holds when the value is one of the list', () => {
    assert.equal(holds({ path: 'predicate.result', in: ['pass', 'waived'] }), true);
    assert.equal(holds({ path: 'predicate.result', in: ['fail'] }), false);
  });

  it('matches is anchored', () => {
    assert.equal(holds({ path: 'predicate.builder.id', matches: 'https://ci\\.example/.*' }), true);
    assert.equal(holds({ path: 'predicate.builder.id', matches: 'ci\\.example' }), false);
  });

  it('[*] means any element; absent means no element has it', () => {
    assert.equal(holds({ path: 'predicate.findings[*].severity', equals: 'high' }), true);
    assert.equal(holds({ path: 'predicate.findings[*].severity', equals: 'critical' }), false);
    assert.equal(holds({ path: 'predicate.findings[*].cve', exists: true }), true);
    assert.equal(holds({ path: 'predicate.findings[*].exploit', absent: true }), true);
    assert.equal(holds({ path: 'predicate.findings[0].severity', equals: 'low' }), true);
  });

  it('exists is false for a missing key and true for null', () => {
    assert.equal(holds({ path: 'predicate.missing', exists: true }), false);
    assert.equal(holds({ path: 'predicate.empty', exists: true }), true);
  });

  it('never walks into Object.prototype', () => {
    assert.equal(holds({ path: 'predicate.constructor', exists: true }), false);
    assert.deepEqual(valuesAt(statement, 'predicate.__proto__'), []);
  });

  describe('when a condition is malformed', () => {
    for (const [label, condition, field] of [
      ['an unknown operator', { path: 'predicate.result', contains: 'x' }, 'c.contains'],
      ['two operators', { path: 'predicate.result', equals: 'a', in: ['a'] }, 'c'],
      ['an empty segment', { path: 'predicate..result', equals: 'a' }, 'c.path'],
      ['a stray bracket', { path: 'predicate.findings[x]', equals: 'a' }, 'c.path'],
      ['a bad regex', { path: 'predicate.result', matches: '(' }, 'c.matches'],
      ['exists: false', { path: 'predicate.result', exists: false }, 'c.exists'],
    ] as const) {
      it(`refuses ${label}, naming the field`, () => {
        assert.throws(
          // biome-ignore lint/suspicious/noExplicitAny: malformed on purpose.
          () => compileCondition(condition as any, 'c'),
          (error: unknown) => error instanceof ConditionError && error.field === field,
        );
      });
    }
  });
});
