import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import {
  alertsFile,
  alertTestsFile,
  type PrometheusServer,
  queryPrometheus,
  repoRoot,
  runPromtool,
  startPrometheus,
} from './prometheus-server.ts';

/**
 * The alert rules and the dashboard checked by the real Prometheus tools:
 * `promtool check rules`, `promtool test rules`, and a Prometheus server that
 * must accept every dashboard query. Run with `npm run test:alerts`; needs
 * `prometheus` and `promtool` on PATH (`apt-get install prometheus`).
 */

describe('when promtool checks the alert rules', () => {
  it('accepts deploy/prometheus/alerts.yaml', () => {
    const result = runPromtool(['check', 'rules', alertsFile]);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, /SUCCESS: 13 rules found/);
  });

  it('passes every rule unit test of deploy/prometheus/tests/alerts.test.yaml', () => {
    const result = runPromtool(['test', 'rules', alertTestsFile]);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, /SUCCESS/);
  });

  it('computes the program ratios of deploy/prometheus/tests/program.test.yaml from its scripted scenario', () => {
    const result = runPromtool([
      'test',
      'rules',
      join(repoRoot, 'deploy/prometheus/tests/program.test.yaml'),
    ]);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, /SUCCESS/);
  });

  it('accepts the groups of the generated PrometheusRule', async () => {
    const resource = parse(
      await readFile(join(repoRoot, 'deploy/kubernetes/base/prometheus-rule.yaml'), 'utf8'),
    ) as { spec: { groups: unknown } };
    const dir = await mkdtemp(join(tmpdir(), 'modelgate-rule-'));
    try {
      const file = join(dir, 'groups.yaml');
      await writeFile(file, stringify({ groups: resource.spec.groups }));
      const result = runPromtool(['check', 'rules', file]);
      assert.equal(result.status, 0, result.output);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('when a rule unit test expects an alert that cannot fire', () => {
  // Guards the guard: a unit test that could never fail proves nothing.
  it('makes promtool fail', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'modelgate-rule-'));
    try {
      const file = join(dir, 'wrong.test.yaml');
      await writeFile(
        file,
        stringify({
          rule_files: [alertsFile],
          evaluation_interval: '1m',
          tests: [
            {
              interval: '1m',
              input_series: [],
              alert_rule_test: [
                {
                  eval_time: '1m',
                  alertname: 'ModelgateDigestMismatch',
                  exp_alerts: [{ exp_labels: { severity: 'critical' } }],
                },
              ],
            },
          ],
        }),
      );
      const result = runPromtool(['test', 'rules', file]);
      assert.equal(result.status, 1, result.output);
      assert.match(result.output, /FAILED/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('when a real Prometheus evaluates the Grafana dashboard queries', () => {
  let prometheus: PrometheusServer;
  before(async () => {
    prometheus = await startPrometheus();
  });
  after(async () => {
    await prometheus?.stop();
  });

  it('accepts every panel and annotation query', async () => {
    const dashboard = JSON.parse(await readFile(join(repoRoot, 'deploy/grafana/modelgate.json'), 'utf8')) as {
      panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
      annotations: { list: Array<{ name: string; expr?: string }> };
    };
    const queries = [
      ...dashboard.panels.flatMap((panel) =>
        (panel.targets ?? []).map((target) => ({ where: `panel "${panel.title}"`, expr: target.expr })),
      ),
      ...dashboard.annotations.list.flatMap((annotation) =>
        annotation.expr ? [{ where: `annotation "${annotation.name}"`, expr: annotation.expr }] : [],
      ),
    ];
    assert.ok(queries.length >= 10);
    for (const { where, expr } of queries) {
      // What Grafana substitutes before sending the query.
      const promql = expr
        .replaceAll('$__rate_interval', '1m')
        .replaceAll('$job', '.+')
        .replaceAll('$instance', '.+');
      await assert.doesNotReject(queryPrometheus(prometheus, promql), `${where}: ${promql}`);
    }
  });

  it('rejects a malformed query (so the check above can fail)', async () => {
    await assert.rejects(queryPrometheus(prometheus, 'sum by (store (rate(x[1m]))'), /bad_data/);
  });
});
