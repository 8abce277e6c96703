import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ERROR_CODES } from '../src/errors.ts';

const SPEC_STATUSES = new Set([400, 401, 403, 404, 409, 416, 500, 502, 503, 504]);
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('the error code registry', () => {
  const entries = Object.entries(ERROR_CODES);

  it('gives every code an MG_ name, a SPEC status and an outcome', () => {
    assert.ok(entries.length > 20);
    for (const [code, info] of entries) {
      assert.match(code, /^MG_[A-Z0-9_]+$/);
      assert.ok(SPEC_STATUSES.has(info.status), `${code} has status ${info.status}`);
      assert.ok(info.outcome.length > 0, `${code} has an outcome`);
      assert.ok(info.description.length > 10, `${code} has a description`);
    }
  });

  it('has unique codes', () => {
    assert.equal(new Set(entries.map(([code]) => code)).size, entries.length);
  });

  it('documents every code in the README error table with its status', () => {
    const rows = new Map(
      readme
        .split('\n')
        .filter((line) => line.startsWith('| `MG_'))
        .map((line) => line.split('|').map((cell) => cell.trim()))
        .map((cells) => [cells[1]!.replaceAll('`', ''), cells] as const),
    );
    for (const [code, info] of entries) {
      const cells = rows.get(code);
      assert.ok(cells, `README has no row for ${code}`);
      assert.equal(cells[2], String(info.status), `README row for ${code} names status ${info.status}`);
    }
  });

  it('documents no code that does not exist', () => {
    const documented = [...readme.matchAll(/^\| `(MG_[A-Z0-9_]+)` +\|/gm)].map((m) => m[1]);
    for (const code of documented) assert.ok(code! in ERROR_CODES, `README documents unknown ${code}`);
  });
});
