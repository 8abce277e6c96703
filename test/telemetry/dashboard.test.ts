import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { createMetrics } from '../../src/telemetry/metrics.ts';

/**
 * The Grafana dashboard queries metrics by name and label. A renamed metric or
 * label in src/telemetry/metrics.ts would leave a panel silently empty, so
 * every query is checked against the registry the server really uses.
 */

const dashboardPath = new URL('../../deploy/grafana/modelgate.json', import.meta.url);

/** Labels Prometheus adds to every scraped series. */
const targetLabels = ['job', 'instance'];

/** Grafana's reference to the dashboard's datasource variable. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana variable syntax, not a JS template.
const datasourceVariable = '${datasource}';

/** Series Prometheus makes itself, with the labels the dashboard may use on them. */
const synthetic: Record<string, string[]> = {
  up: [],
  ALERTS: ['alertname', 'alertstate', 'severity'],
};

const keywords = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
]);

interface Selector {
  metric: string;
  matchers: string[];
}

interface ParsedQuery {
  /** Every metric name the query reads, with the labels its selector matches on. */
  selectors: Selector[];
  /** Every `by (…)` / `without (…)` / `on (…)` / `ignoring (…)` label list. */
  groupings: string[][];
}

/**
 * A small PromQL reader, enough for dashboard queries: string literals and
 * range brackets are dropped, selectors and grouping clauses are collected,
 * and any other identifier not followed by `(` is a metric name.
 */
function parseQuery(expr: string): ParsedQuery {
  const selectors: Selector[] = [];
  const groupings: string[][] = [];
  const rest = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(
      /\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g,
      (_whole, labels: string) => {
        groupings.push(
          labels
            .split(',')
            .map((label) => label.trim())
            .filter((label) => label !== ''),
        );
        return ' ';
      },
    )
    .replace(
      /([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}/g,
      (_whole, metric: string | undefined, body: string) => {
        assert.ok(metric, `selector without a metric name in ${expr}`);
        const matchers = [...body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*""/g)].map(
          (match) => match[1]!,
        );
        selectors.push({ metric, matchers });
        return ' ';
      },
    );
  for (const token of rest.matchAll(/\d[\w.]*|[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*(\()?)/g)) {
    const name = token[0];
    if (/^\d/.test(name) || token[1] === '(' || keywords.has(name.toLowerCase())) continue;
    selectors.push({ metric: name, matchers: [] });
  }
  return { selectors, groupings };
}

interface PanelQuery {
  where: string;
  expr: string;
}

interface Panel {
  id?: number;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Array<{ expr?: string; datasource?: { uid?: string } }>;
  panels?: Panel[];
}

interface Dashboard {
  schemaVersion: number;
  uid: string;
  panels: Panel[];
  templating: {
    list: Array<{
      name: string;
      type: string;
      query?: unknown;
      definition?: string;
      datasource?: { uid?: string };
    }>;
  };
  annotations?: { list: Array<{ name: string; expr?: string }> };
}

async function loadDashboard(): Promise<Dashboard> {
  return JSON.parse(await readFile(dashboardPath, 'utf8')) as Dashboard;
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

function panelQueries(dashboard: Dashboard): PanelQuery[] {
  return allPanels(dashboard.panels).flatMap((panel) =>
    (panel.targets ?? []).map((target, index) => {
      assert.ok(target.expr, `panel "${panel.title}" target ${index} has no expr`);
      return { where: `panel "${panel.title}"`, expr: target.expr };
    }),
  );
}

/** Label names of every metric in the registry, by exposed series name (histograms expanded). */
async function registryLabels(): Promise<Map<string, string[]>> {
  const metrics = createMetrics({ defaultMetrics: false });
  const labels = new Map<string, string[]>();
  for (const { name, type } of await metrics.registry.getMetricsAsJSON()) {
    // prom-client keeps the configured label names on the metric object; the
    // typings do not show them, so check their shape instead of trusting a cast.
    const labelNames: unknown = (
      metrics.registry.getSingleMetric(name) as unknown as { labelNames?: unknown }
    )?.labelNames;
    assert.ok(Array.isArray(labelNames), `prom-client no longer exposes labelNames on ${name}`);
    const own = [...targetLabels, ...(labelNames as string[])];
    labels.set(name, own);
    if (String(type) === 'histogram') {
      labels.set(`${name}_bucket`, [...own, 'le']);
      labels.set(`${name}_sum`, own);
      labels.set(`${name}_count`, own);
    }
  }
  return labels;
}

function labelsOf(metric: string, registry: Map<string, string[]>): string[] | undefined {
  const syntheticLabels = synthetic[metric];
  if (syntheticLabels) return [...targetLabels, ...syntheticLabels];
  return registry.get(metric);
}

function assertQueryMatchesRegistry(query: PanelQuery, registry: Map<string, string[]>): void {
  const { selectors, groupings } = parseQuery(query.expr);
  assert.ok(selectors.length > 0, `${query.where}: no metric found in ${query.expr}`);
  for (const { metric, matchers } of selectors) {
    const labels = labelsOf(metric, registry);
    assert.ok(labels, `${query.where}: metric ${metric} is not in createMetrics() (${query.expr})`);
    for (const label of matchers) {
      assert.ok(labels.includes(label), `${query.where}: ${metric} has no label "${label}" (${query.expr})`);
    }
    // A query that mixes metrics may only group by labels all of them carry.
    for (const grouping of groupings) {
      for (const label of grouping) {
        assert.ok(
          labels.includes(label),
          `${query.where}: groups by "${label}", which ${metric} does not have (${query.expr})`,
        );
      }
    }
  }
}

describe('when the Grafana dashboard is loaded', () => {
  it('is a schemaVersion 39 dashboard with a datasource, job and instance variable', async () => {
    const dashboard = await loadDashboard();
    assert.equal(dashboard.schemaVersion, 39);
    assert.equal(dashboard.uid, 'modelgate');
    const variables = new Map(dashboard.templating.list.map((variable) => [variable.name, variable]));
    assert.equal(variables.get('datasource')?.type, 'datasource');
    assert.equal(variables.get('datasource')?.query, 'prometheus');
    assert.equal(variables.get('job')?.type, 'query');
    assert.equal(variables.get('instance')?.type, 'query');
  });

  it('queries every panel through the datasource variable', async () => {
    const dashboard = await loadDashboard();
    const panels = allPanels(dashboard.panels).filter((panel) => panel.type !== 'row');
    assert.ok(panels.length >= 10, `expected at least 10 panels, got ${panels.length}`);
    for (const panel of panels) {
      assert.equal(panel.datasource?.uid, datasourceVariable, `panel "${panel.title}"`);
      assert.ok((panel.targets ?? []).length > 0, `panel "${panel.title}" has no query`);
      for (const target of panel.targets ?? []) {
        assert.equal(target.datasource?.uid, datasourceVariable, `panel "${panel.title}"`);
      }
    }
  });

  it('gives every panel a unique id', async () => {
    const ids = allPanels((await loadDashboard()).panels).map((panel) => panel.id);
    assert.equal(new Set(ids).size, ids.length);
  });
});

describe('when a dashboard query names a metric', () => {
  it('names a metric of createMetrics() with the labels it matches and groups by', async () => {
    const dashboard = await loadDashboard();
    const registry = await registryLabels();
    const queries = panelQueries(dashboard);
    for (const annotation of dashboard.annotations?.list ?? []) {
      if (annotation.expr) queries.push({ where: `annotation "${annotation.name}"`, expr: annotation.expr });
    }
    for (const variable of dashboard.templating.list) {
      if (variable.type === 'query' && variable.definition) {
        const inner = /^label_values\((.*),\s*([a-zA-Z_]\w*)\)$/.exec(variable.definition);
        assert.ok(inner, `variable ${variable.name}: expected label_values(selector, label)`);
        queries.push({ where: `variable ${variable.name}`, expr: `sum by (${inner[2]}) (${inner[1]})` });
      }
    }
    for (const query of queries) assertQueryMatchesRegistry(query, registry);
  });

  it('follows the job and instance variables', async () => {
    for (const query of panelQueries(await loadDashboard())) {
      for (const { metric, matchers } of parseQuery(query.expr).selectors) {
        assert.ok(
          matchers.includes('job') && matchers.includes('instance'),
          `${query.where}: ${metric} is not filtered by job and instance`,
        );
      }
    }
  });

  it('shows every modelgate metric somewhere', async () => {
    const shown = new Set(
      panelQueries(await loadDashboard()).flatMap((query) =>
        parseQuery(query.expr).selectors.map(({ metric }) => metric.replace(/_(?:bucket|sum|count)$/, '')),
      ),
    );
    const metrics = createMetrics({ defaultMetrics: false });
    const missing = (await metrics.registry.getMetricsAsJSON())
      .map(({ name }) => name)
      .filter((name) => !shown.has(name));
    assert.deepEqual(missing, []);
  });
});

describe('when the PromQL reader meets a query', () => {
  it('finds metric names, matchers and groupings, and ignores functions, strings and ranges', () => {
    const parsed = parseQuery(
      'histogram_quantile(0.95, sum by (le, store) (rate(a_bucket{job=~"$job", x!="{y}"}[$__rate_interval]))) / on (store) b offset 5m or vector(0)',
    );
    assert.deepEqual(parsed.selectors, [
      { metric: 'a_bucket', matchers: ['job', 'x'] },
      { metric: 'b', matchers: [] },
    ]);
    assert.deepEqual(parsed.groupings, [['le', 'store'], ['store']]);
  });

  it('rejects a metric that the registry does not have', async () => {
    const registry = await registryLabels();
    assert.throws(
      () =>
        assertQueryMatchesRegistry(
          { where: 'test', expr: 'sum(rate(modelgate_bytes_total{job=~"$job"}[5m]))' },
          registry,
        ),
      /not in createMetrics/,
    );
  });

  it('rejects a grouping label that the metric does not have', async () => {
    const registry = await registryLabels();
    assert.throws(
      () =>
        assertQueryMatchesRegistry(
          { where: 'test', expr: 'sum by (model) (rate(modelgate_bytes_served_total[5m]))' },
          registry,
        ),
      /groups by "model"/,
    );
  });
});
