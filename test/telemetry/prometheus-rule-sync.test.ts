import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { alertsPath, prometheusRulePath, renderPrometheusRule } from '../../scripts/build-prometheus-rule.ts';

const runbookPath = new URL('../../docs/runbook.md', import.meta.url);

interface Rule {
  alert?: string;
  annotations?: Record<string, string>;
}

async function alertRules(): Promise<Rule[]> {
  const file = parse(await readFile(alertsPath, 'utf8')) as { groups: Array<{ rules: Rule[] }> };
  return file.groups.flatMap((group) => group.rules).filter((rule) => rule.alert !== undefined);
}

/** GitHub-style heading anchors: lowercase, spaces to dashes, punctuation dropped. */
function headingAnchors(markdown: string): Set<string> {
  return new Set(
    [...markdown.matchAll(/^#{1,6}\s+(.+?)\s*$/gm)].map((match) =>
      match[1]!
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    ),
  );
}

describe('when deploy/prometheus/alerts.yaml changes', () => {
  it('has the committed PrometheusRule regenerated (node scripts/build-prometheus-rule.ts)', async () => {
    const expected = renderPrometheusRule(await readFile(alertsPath, 'utf8'));
    const committed = await readFile(prometheusRulePath, 'utf8');
    assert.equal(committed, expected, 'deploy/kubernetes/base/prometheus-rule.yaml is out of date');
  });

  it('carries exactly the groups of alerts.yaml in the PrometheusRule', async () => {
    const rules = parse(await readFile(alertsPath, 'utf8')) as { groups: unknown };
    const resource = parse(await readFile(prometheusRulePath, 'utf8')) as {
      apiVersion: string;
      kind: string;
      metadata: { name: string };
      spec: { groups: unknown };
    };
    assert.equal(resource.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(resource.kind, 'PrometheusRule');
    assert.equal(resource.metadata.name, 'modelgate');
    assert.deepEqual(resource.spec.groups, rules.groups);
  });

  it('refuses to render a file without rule groups', () => {
    assert.throws(() => renderPrometheusRule('groups: []\n'), /non-empty "groups"/);
  });
});

describe('when an alert links to the runbook', () => {
  it('links to an existing section of docs/runbook.md named after the alert', async () => {
    const anchors = headingAnchors(await readFile(runbookPath, 'utf8'));
    const rules = await alertRules();
    assert.ok(rules.length >= 8, `expected at least 8 alerts, got ${rules.length}`);
    for (const rule of rules) {
      const url = rule.annotations?.runbook_url;
      assert.equal(url, `docs/runbook.md#${rule.alert!.toLowerCase()}`, `${rule.alert} runbook_url`);
      assert.ok(anchors.has(rule.alert!.toLowerCase()), `docs/runbook.md has no section "## ${rule.alert}"`);
    }
  });

  it('has a summary and a description for every alert', async () => {
    for (const rule of await alertRules()) {
      assert.ok(rule.annotations?.summary, `${rule.alert} has no summary`);
      assert.ok(rule.annotations?.description, `${rule.alert} has no description`);
    }
  });
});
