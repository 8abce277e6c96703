import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { createMetrics, createSupervisorMetrics } from '../../src/telemetry/metrics.ts';

const reference = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8');

/** Metric names documented as the first cell of a table row: | `name` | type | labels | … */
function documentedRows(): Map<string, string[]> {
  return new Map(
    reference
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .map((line) => line.split('|').map((cell) => cell.trim()))
      .map((cells) => [(cells[1] ?? '').replaceAll('`', ''), cells] as const),
  );
}

describe('the metrics reference (docs/metrics.md)', () => {
  // The workers' metrics and the primary's own (serve --workers N) are all exported on /metrics.
  const registered = [
    ...createMetrics({ defaultMetrics: false }).registry.getMetricsAsArray(),
    ...createSupervisorMetrics().registry.getMetricsAsArray(),
  ];

  it('documents every metric the proxy registers, with its type and labels', () => {
    const rows = documentedRows();
    assert.ok(registered.length >= 10);
    for (const metric of registered) {
      const cells = rows.get(metric.name);
      assert.ok(cells, `docs/metrics.md has no row for ${metric.name}`);
      assert.equal(cells[2], metric.type, `${metric.name} is a ${metric.type}`);
      const labels = (metric as unknown as { labelNames: string[] }).labelNames;
      for (const label of labels) {
        assert.ok(cells[3]?.includes(`\`${label}\``), `${metric.name} row names its label ${label}`);
      }
      assert.ok((cells[5] ?? '').length > 10, `${metric.name} says what to alert on`);
    }
  });

  it('documents no metric that does not exist', () => {
    const names = new Set(registered.map((m) => m.name));
    for (const name of documentedRows().keys())
      assert.ok(names.has(name), `docs/metrics.md documents unknown ${name}`);
  });
});
