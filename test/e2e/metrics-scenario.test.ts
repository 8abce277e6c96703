import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ERROR_CODES } from '../../src/errors.ts';
import { ISSUER, type LogLine, randomBytesSeeded, startHarness } from '../helpers/proxy.ts';
import { mintKubernetesToken } from '../helpers/tokens.ts';

const MiB = 1024 * 1024;

/** One sample of the Prometheus text exposition format (version 0.0.4). */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A small parser for the Prometheus text format: comments and blank lines are
 * skipped; label values are unescaped (`\\`, `\"`, `\n`); `+Inf`, `-Inf` and
 * `NaN` are numbers. A line it cannot read fails the test.
 */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    samples.push(parseSampleLine(line));
  }
  return samples;
}

function parseSampleLine(line: string): Sample {
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
  assert.ok(name, `not a sample line: ${line}`);
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    while (line[i] !== '}') {
      const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(i));
      assert.ok(label, `malformed label at column ${i}: ${line}`);
      i += label[0].length;
      let value = '';
      while (line[i] !== '"') {
        assert.ok(i < line.length, `unterminated label value: ${line}`);
        if (line[i] === '\\') {
          const escaped = line[i + 1];
          value += escaped === 'n' ? '\n' : (escaped ?? '');
          i += 2;
        } else {
          value += line[i];
          i++;
        }
      }
      i++;
      labels[label[1]!] = value;
      if (line[i] === ',') i++;
    }
    i++;
  }
  const [raw] = line.slice(i).trim().split(/\s+/);
  const value =
    raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : raw === 'NaN' ? Number.NaN : Number(raw);
  assert.ok(raw !== undefined && raw !== '' && (raw === 'NaN' || !Number.isNaN(value)), `bad value: ${line}`);
  return { name, labels, value };
}

/** Every series of one metric as `{'k1=v1,k2=v2': value}` (label names sorted), for exact comparisons. */
function seriesOf(samples: Sample[], name: string, without: string[] = []): Record<string, number> {
  const out: Record<string, number> = {};
  for (const sample of samples.filter((s) => s.name === name)) {
    const key = Object.entries(sample.labels)
      .filter(([k]) => !without.includes(k))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    out[key] = sample.value;
  }
  return out;
}

async function scrape(adminUrl: string): Promise<{ text: string; samples: Sample[] }> {
  const res = await fetch(`${adminUrl}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  return { text, samples: parseExposition(text) };
}

/** GETs a file, reads until at least `atLeast` body bytes arrived, then drops the connection. */
function getThenAbort(
  url: string,
  headers: Record<string, string>,
  atLeast: number,
): Promise<{ status: number; received: number }> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const req = request(url, { headers, agent: false }, (res) => {
      let received = 0;
      res.on('data', (part: Buffer) => {
        if (settled) return;
        received += part.length;
        if (received >= atLeast) {
          settled = true;
          req.destroy();
          resolve({ status: res.statusCode ?? 0, received });
        }
      });
      res.on('error', () => {});
      res.on('end', () => {
        if (!settled) reject(new Error(`the whole body (${received} bytes) arrived before the abort`));
      });
    });
    req.on('error', (error) => {
      if (!settled) reject(error);
    });
    req.end();
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const OUTCOMES = new Set([
  'served',
  'not_modified',
  'unauthenticated',
  'forbidden',
  'not_found',
  'bad_request',
  'integrity_failure',
  'source_error',
  'client_aborted',
  'unavailable',
]);

/** Every label a modelgate metric may carry, with the values allowed in this scenario (SPEC §5). */
const ALLOWED_LABEL_VALUES: Record<string, (value: string) => boolean> = {
  route: (v) => ['manifest', 'file', 'blob', 'other'].includes(v),
  outcome: (v) => OUTCOMES.has(v),
  store: (v) => ['s3', 'gcs', 'azure', 'file', 'cache', 'none'].includes(v),
  reason: (v) => Object.hasOwn(ERROR_CODES, v),
  model: (v) => v === 'fraud-detector',
  environment: (v) => v === 'prod',
  violation: (v) =>
    [
      'unsigned_release',
      'untrusted_signer',
      'mutable_reference',
      'digest_mismatch',
      'size_mismatch',
      'source_changed',
    ].includes(v),
  mode: (v) => v === 'enforce' || v === 'audit',
  incident: (v) => /^INC-[0-9]+$/.test(v),
  service_account: (v) => ['fraud-inference', 'other-team'].includes(v),
  le: (v) => v === '+Inf' || Number.isFinite(Number(v)),
  // Signer names come from the configuration (the harness configures one, `release`).
  signer: (v) => v === 'release',
  ref: (v) => v === 'digest' || v === 'version',
  verified: (v) => v === 'true' || v === 'false',
  id: (v) => /^EXC-[0-9]+$/.test(v),
};

/** `modelgate_source_requests_total` counts reads of a store, with outcomes of its own. */
const SOURCE_OUTCOMES = new Set(['ok', 'not_found', 'changed', 'timeout', 'error']);

function isAllowedLabel(metric: string, label: string, value: string): boolean {
  if (metric === 'modelgate_source_requests_total' && label === 'outcome') return SOURCE_OUTCOMES.has(value);
  const allowed = ALLOWED_LABEL_VALUES[label];
  assert.ok(allowed, `unexpected label ${label} on ${metric}`);
  return allowed(value);
}

describe('when one scripted request of every kind has gone through the proxy', () => {
  let h: Awaited<ReturnType<typeof startHarness>>;
  let samples: Sample[];
  let exposition: string;
  const secrets: string[] = [];
  const rawPaths: string[] = [];
  const auditBytes: Record<string, number> = {};

  const servedBytes = randomBytesSeeded(MiB + 4321, 11);
  const abortBytes = randomBytesSeeded(24 * MiB, 12);
  const UNKNOWN_FILE = 'no-such-file-9c41e7.bin';

  before(async () => {
    h = await startHarness();
    const served = await h.addRelease({
      model: 'fraud-detector',
      version: '1.0.0',
      files: [{ path: 'model.bin', bytes: servedBytes }],
    });
    const tamperedOriginal = randomBytesSeeded(2 * MiB, 13);
    const tampered = Buffer.from(tamperedOriginal);
    tampered[17]! ^= 0x20;
    const mismatch = await h.addRelease({
      model: 'fraud-detector',
      version: '1.0.1-tampered',
      files: [{ path: 'model.bin', bytes: tamperedOriginal, sourceBytes: tampered }],
    });
    const large = await h.addRelease({
      model: 'fraud-detector',
      version: '1.0.2-large',
      files: [{ path: 'weights.bin', bytes: abortBytes }],
    });
    const token = await h.token();
    const forbiddenToken = await h.token({ namespace: 'other' });
    const expiredToken = await mintKubernetesToken(h.issuerKey, {
      issuer: ISSUER,
      now: Date.now() - 2 * 3600_000,
      lifetimeSeconds: 3600,
    });
    secrets.push(token, forbiddenToken, expiredToken);

    const servedPath = `/v1/models/fraud-detector/releases/${served.digest}/files/model.bin`;
    const mismatchPath = `/v1/models/fraud-detector/releases/${mismatch.digest}/files/model.bin`;
    const largePath = `/v1/models/fraud-detector/releases/${large.digest}/files/weights.bin`;
    const unknownPath = `/v1/models/fraud-detector/releases/${served.digest}/files/${UNKNOWN_FILE}`;
    rawPaths.push(servedPath, mismatchPath, largePath, unknownPath);
    const id = (name: string) => ({ 'x-request-id': `scenario-${name}` });

    // served
    const ok = await h.request(servedPath, { token, headers: id('served') });
    assert.equal(ok.status, 200);
    assert.ok(Buffer.from(await ok.arrayBuffer()).equals(servedBytes));

    // unauthenticated: no token, then an expired one
    const missing = await h.request(servedPath, { token: null, headers: id('no-token') });
    assert.equal(missing.status, 401);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'MG_TOKEN_MISSING');
    const expired = await h.request(servedPath, { token: expiredToken, headers: id('expired') });
    assert.equal(expired.status, 401);
    assert.equal(((await expired.json()) as { error: { code: string } }).error.code, 'MG_TOKEN_EXPIRED');

    // forbidden: other-team is mapped but has no grant for fraud-*
    const forbidden = await h.request(servedPath, { token: forbiddenToken, headers: id('forbidden') });
    assert.equal(forbidden.status, 403);
    assert.equal(((await forbidden.json()) as { error: { code: string } }).error.code, 'MG_NOT_GRANTED');

    // digest mismatch in chunk 0: refused before any header
    const bad = await h.request(mismatchPath, { token, headers: id('mismatch') });
    assert.equal(bad.status, 502);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'MG_DIGEST_MISMATCH');

    // client abort mid-body: 24 MiB is more than loopback socket buffers hold, so the
    // server is still writing when the client goes away.
    const aborted = await getThenAbort(
      `${h.url}${largePath}`,
      { authorization: `Bearer ${token}`, ...id('aborted') },
      MiB,
    );
    assert.equal(aborted.status, 200);
    await waitFor(
      async () =>
        (await h.metric('modelgate_requests_total', { route: 'file', outcome: 'client_aborted' })) === 1,
      'the aborted request to be counted',
    );

    // not found: a file the release does not list
    const notFound = await h.request(unknownPath, { token, headers: id('not-found') });
    assert.equal(notFound.status, 404);
    assert.equal(((await notFound.json()) as { error: { code: string } }).error.code, 'MG_FILE_NOT_FOUND');

    await waitFor(
      async () => (await h.metric('modelgate_requests_total')) === 7,
      'all seven requests to be counted',
    );
    for (const line of h.logs.filter((l: LogLine) => l.event === 'retrieval')) {
      auditBytes[String(line.requestId)] = Number(line.bytes);
    }
    ({ text: exposition, samples } = await scrape(h.adminUrl));
    assert.ok(aborted.received <= (auditBytes['scenario-aborted'] ?? -1));
  });
  after(() => h.stop());

  it('counts every request once under its route and outcome', () => {
    assert.deepEqual(seriesOf(samples, 'modelgate_requests_total'), {
      'outcome=served,route=file': 1,
      'outcome=unauthenticated,route=file': 2,
      'outcome=forbidden,route=file': 1,
      'outcome=integrity_failure,route=file': 1,
      'outcome=client_aborted,route=file': 1,
      'outcome=not_found,route=file': 1,
    });
  });

  it('counts each authentication failure under its error code', () => {
    assert.deepEqual(seriesOf(samples, 'modelgate_auth_failures_total'), {
      'reason=MG_TOKEN_MISSING': 1,
      'reason=MG_TOKEN_EXPIRED': 1,
    });
  });

  it('counts one digest mismatch for the tampered release, labelled from the catalog', () => {
    assert.deepEqual(seriesOf(samples, 'modelgate_digest_mismatches_total'), {
      'environment=prod,model=fraud-detector,store=file': 1,
    });
  });

  it('counts exactly the body bytes the proxy wrote: the served file plus the aborted prefix', () => {
    // The aborted request's share is what the server handed to the socket before it saw
    // the close, which the kernel may have buffered beyond what the client read; its
    // audit line reports that number, and it is at least what the client received.
    assert.equal(auditBytes['scenario-served'], servedBytes.length);
    assert.equal(auditBytes['scenario-mismatch'], 0);
    const aborted = auditBytes['scenario-aborted']!;
    assert.ok(aborted >= MiB && aborted < abortBytes.length, `aborted request wrote ${aborted} bytes`);
    const total = Object.values(auditBytes).reduce((sum, n) => sum + n, 0);
    assert.equal(total, servedBytes.length + aborted);
    assert.deepEqual(seriesOf(samples, 'modelgate_bytes_served_total'), { 'store=file': total });
  });

  it('counts the mismatch as an enforced policy violation of its environment', () => {
    assert.deepEqual(seriesOf(samples, 'modelgate_policy_violations_total'), {
      'environment=prod,mode=enforce,violation=digest_mismatch': 1,
    });
  });

  it('counts the one completed file retrieval as pinned and verified', () => {
    // The tampered and the aborted transfers never completed: only completed GETs count.
    assert.deepEqual(seriesOf(samples, 'modelgate_retrievals_total'), {
      'environment=prod,ref=digest,verified=true': 1,
    });
  });

  it('reads zero requests in flight once all are done', () => {
    assert.deepEqual(seriesOf(samples, 'modelgate_inflight_requests'), { '': 0 });
  });

  it('reports the catalog size and the enforcing state per environment', () => {
    assert.deepEqual(seriesOf(samples, 'modelgate_catalog_releases'), { 'environment=prod': 3 });
    assert.deepEqual(seriesOf(samples, 'modelgate_environment_enforcing'), { 'environment=prod': 1 });
  });

  it('observes one request duration per counted request, in every +Inf bucket too', () => {
    const counted = seriesOf(samples, 'modelgate_requests_total');
    assert.deepEqual(seriesOf(samples, 'modelgate_request_duration_seconds_count'), counted);
    const infBuckets = seriesOf(
      samples.filter((s) => s.labels.le === '+Inf'),
      'modelgate_request_duration_seconds_bucket',
      ['le'],
    );
    assert.deepEqual(infBuckets, counted);
  });

  it('observes a time to first byte only for the two requests that sent body bytes', () => {
    assert.deepEqual(seriesOf(samples, 'modelgate_time_to_first_byte_seconds_count'), { 'store=file': 2 });
  });

  it('takes every label value from a fixed set or the configuration, never from the request', () => {
    const modelgate = samples.filter((s) => s.name.startsWith('modelgate_'));
    assert.ok(modelgate.length > 0);
    for (const sample of modelgate) {
      for (const [label, value] of Object.entries(sample.labels)) {
        assert.ok(
          isAllowedLabel(sample.name, label, value),
          `${sample.name}{${label}="${value}"} is not from a fixed set`,
        );
      }
    }
    for (const sample of samples) {
      for (const value of Object.values(sample.labels)) {
        assert.ok(!value.includes('/v1/'), `label value ${value} looks like a request path`);
        for (const path of rawPaths) assert.ok(!value.includes(path));
        for (const token of secrets) {
          assert.ok(!value.includes(token));
          assert.ok(!value.includes(token.split('.')[2]!));
        }
      }
    }
    assert.ok(!exposition.includes(UNKNOWN_FILE));
    for (const token of secrets) assert.ok(!exposition.includes(token.split('.')[2]!));
  });
});
