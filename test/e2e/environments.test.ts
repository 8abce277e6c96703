import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawGet } from '../helpers/http.ts';
import { randomBytesSeeded, startHarness } from '../helpers/proxy.ts';

const MiB = 1024 * 1024;
const HOUR = 3600_000;

/** Every sample of one metric in a Prometheus text exposition, as `{'k=v,…': value}` with label names sorted. */
function seriesOf(text: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    assert.ok(match, `not a sample line: ${line}`);
    if (match[1] !== name) continue;
    const labels: Array<[string, string]> = [];
    // Label values here are environment and violation names: no escapes to undo.
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"/g)) {
      labels.push([pair[1]!, pair[2]!]);
    }
    const key = labels
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    out[key] = Number(match[3]);
  }
  return out;
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe('environments in audit mode that flip to enforce on the injected clock', () => {
  let h: Awaited<ReturnType<typeof startHarness>>;
  let now = Date.now();
  const enforceFromMs = Math.ceil((now + HOUR) / 1000) * 1000;
  const enforceFrom = new Date(enforceFromMs).toISOString();
  /** Outlives the clock move (the default token lives one hour). */
  let token: string;

  const bytes = randomBytesSeeded(2 * MiB + 500, 31);
  const tampered = Buffer.from(bytes);
  tampered[MiB + 7]! ^= 0x01;
  const paths: Record<'unsigned' | 'mutable' | 'untrusted' | 'mismatch', string> = {
    unsigned: '',
    mutable: '',
    untrusted: '',
    mismatch: '',
  };

  async function scrape(): Promise<string> {
    const res = await fetch(`${h.adminUrl}/metrics`);
    assert.equal(res.status, 200);
    return res.text();
  }

  async function readyAuditEnvironments(): Promise<string[]> {
    const res = await fetch(`${h.adminUrl}/readyz`);
    assert.equal(res.status, 200);
    return ((await res.json()) as { auditEnvironments: string[] }).auditEnvironments;
  }

  function violationLines(mode: string) {
    return h.logs.filter(
      (line) =>
        line.event === 'policy_violation' &&
        line.environment === 'staging' &&
        line.mode === mode &&
        line.level === 'warn',
    );
  }

  before(async () => {
    h = await startHarness({
      clock: () => now,
      environments: {
        prod: { mode: 'enforce', digestRefsOnly: false },
        staging: { mode: 'audit', enforceFrom, digestRefsOnly: true },
      },
      grants: [{ models: ['fraud-*'], environments: ['prod', 'staging', 'qa'] }],
      signers: [
        { name: 'other', environments: ['prod'] },
        { name: 'qa-signer', environments: ['qa'] },
      ],
    });
    token = await h.token({ lifetimeSeconds: 4 * 3600 });
    const file = (b: Buffer, sourceBytes?: Buffer) => [
      { path: 'model.bin', bytes: b, ...(sourceBytes ? { sourceBytes } : {}) },
    ];
    const unsigned = await h.addRelease({
      model: 'fraud-detector',
      version: 'u1',
      environment: 'staging',
      files: file(bytes),
      signedBy: 'unsigned',
    });
    await h.addRelease({
      model: 'fraud-detector',
      version: 's1',
      environment: 'staging',
      files: file(bytes),
    });
    const untrusted = await h.addRelease({
      model: 'fraud-detector',
      version: 'o1',
      environment: 'staging',
      files: file(bytes),
      signedBy: h.extraSigners[0]!,
    });
    const mismatch = await h.addRelease({
      model: 'fraud-detector',
      version: 't1',
      environment: 'staging',
      files: file(bytes, tampered),
    });
    const base = '/v1/models/fraud-detector/releases';
    paths.unsigned = `${base}/${unsigned.digest}/files/model.bin`;
    paths.mutable = `${base}/s1/files/model.bin`;
    paths.untrusted = `${base}/${untrusted.digest}/files/model.bin`;
    paths.mismatch = `${base}/${mismatch.digest}/files/model.bin`;
  });
  after(() => h.stop());

  describe('when staging is still auditing (before enforceFrom)', () => {
    it('serves an unsigned release, a version reference and an untrusted signer, each counted and warned', async () => {
      for (const kind of ['unsigned', 'mutable', 'untrusted'] as const) {
        const res = await h.request(paths[kind], { token });
        assert.equal(res.status, 200, `${kind}: expected 200`);
        assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes), `${kind}: body`);
      }
      const lines = violationLines('audit');
      assert.deepEqual(lines.map((line) => line.violation).sort(), [
        'mutable_reference',
        'unsigned_release',
        'untrusted_signer',
      ]);
    });

    it('serves the mismatching file in full, as the source holds it, and counts the mismatch', async () => {
      const res = await rawGet(`${h.url}${paths.mismatch}`, { authorization: `Bearer ${token}` });
      assert.equal(res.status, 200);
      assert.equal(res.complete, true);
      assert.ok(res.body.equals(tampered));
      const warned = violationLines('audit').filter((line) => line.violation === 'digest_mismatch');
      assert.equal(warned.length, 1);
    });

    it('counts every violation with mode="audit" and reads the enforcing gauge as 0', async () => {
      const text = await scrape();
      assert.deepEqual(seriesOf(text, 'modelgate_policy_violations_total'), {
        'environment=staging,mode=audit,violation=unsigned_release': 1,
        'environment=staging,mode=audit,violation=mutable_reference': 1,
        'environment=staging,mode=audit,violation=untrusted_signer': 1,
        'environment=staging,mode=audit,violation=digest_mismatch': 1,
      });
      assert.deepEqual(seriesOf(text, 'modelgate_digest_mismatches_total'), {
        'environment=staging,model=fraud-detector,store=file': 1,
      });
      assert.equal(seriesOf(text, 'modelgate_environment_enforcing')['environment=staging'], 0);
      assert.equal(seriesOf(text, 'modelgate_environment_enforcing')['environment=prod'], 1);
    });

    it('lists staging as auditing in /readyz', async () => {
      const auditing = await readyAuditEnvironments();
      assert.deepEqual(
        auditing.filter((line) => line.startsWith('staging:')),
        [`staging: audit until ${enforceFrom.replace('.000Z', 'Z')} (then enforce)`],
      );
    });
  });

  describe('when the clock passes enforceFrom (no restart)', () => {
    before(() => {
      now = enforceFromMs + 60_000;
    });

    it('refuses the unsigned release, the version reference and the untrusted signer with their codes', async () => {
      const expected = {
        unsigned: 'MG_RELEASE_UNSIGNED',
        mutable: 'MG_DIGEST_REF_REQUIRED',
        untrusted: 'MG_SIGNER_UNTRUSTED',
      } as const;
      for (const [kind, code] of Object.entries(expected)) {
        const res = await h.request(paths[kind as keyof typeof expected], { token });
        assert.equal(res.status, 403, `${kind}: expected 403`);
        assert.equal(await errorCode(res), code);
      }
      const lines = violationLines('enforce');
      assert.deepEqual(lines.map((line) => line.violation).sort(), [
        'mutable_reference',
        'unsigned_release',
        'untrusted_signer',
      ]);
    });

    it('fails closed on the mismatching file: only the verified chunk, then a broken body', async () => {
      const res = await rawGet(`${h.url}${paths.mismatch}`, { authorization: `Bearer ${token}` });
      assert.equal(res.status, 200);
      assert.equal(res.complete, false);
      assert.equal(res.body.length, MiB);
      assert.ok(res.body.equals(bytes.subarray(0, MiB)));
    });

    it('counts the same violations with mode="enforce" and reads the enforcing gauge as 1', async () => {
      const text = await scrape();
      assert.deepEqual(seriesOf(text, 'modelgate_policy_violations_total'), {
        'environment=staging,mode=audit,violation=unsigned_release': 1,
        'environment=staging,mode=audit,violation=mutable_reference': 1,
        'environment=staging,mode=audit,violation=untrusted_signer': 1,
        'environment=staging,mode=audit,violation=digest_mismatch': 1,
        'environment=staging,mode=enforce,violation=unsigned_release': 1,
        'environment=staging,mode=enforce,violation=mutable_reference': 1,
        'environment=staging,mode=enforce,violation=untrusted_signer': 1,
        'environment=staging,mode=enforce,violation=digest_mismatch': 1,
      });
      assert.deepEqual(seriesOf(text, 'modelgate_digest_mismatches_total'), {
        'environment=staging,model=fraud-detector,store=file': 2,
      });
      assert.equal(seriesOf(text, 'modelgate_environment_enforcing')['environment=staging'], 1);
    });

    it('no longer lists staging as auditing in /readyz', async () => {
      const auditing = await readyAuditEnvironments();
      assert.deepEqual(
        auditing.filter((line) => line.startsWith('staging')),
        [],
      );
    });
  });

  describe('when a release names an environment that is not configured', () => {
    let digest: string;
    let unsignedDigest: string;
    before(async () => {
      ({ digest } = await h.addRelease({
        model: 'fraud-qa',
        version: 'q1',
        environment: 'qa',
        files: [{ path: 'model.bin', bytes }],
        signedBy: h.extraSigners[1]!,
      }));
      ({ digest: unsignedDigest } = await h.addRelease({
        model: 'fraud-qa',
        version: 'q2',
        environment: 'qa',
        files: [{ path: 'model.bin', bytes }],
        signedBy: 'unsigned',
      }));
    });

    it('enforces digest references only: a version is refused, the digest is served', async () => {
      const byVersion = await h.request('/v1/models/fraud-qa/releases/q1/files/model.bin', { token });
      assert.equal(byVersion.status, 403);
      assert.equal(await errorCode(byVersion), 'MG_DIGEST_REF_REQUIRED');
      const byDigest = await h.request(`/v1/models/fraud-qa/releases/${digest}/files/model.bin`, { token });
      assert.equal(byDigest.status, 200);
      assert.ok(Buffer.from(await byDigest.arrayBuffer()).equals(bytes));
    });

    it('enforces signatures: an unsigned release is refused', async () => {
      const res = await h.request(`/v1/models/fraud-qa/releases/${unsignedDigest}/files/model.bin`, {
        token,
      });
      assert.equal(res.status, 403);
      assert.equal(await errorCode(res), 'MG_RELEASE_UNSIGNED');
    });

    it('counts its violations with mode="enforce" and reads it as enforcing', async () => {
      const text = await scrape();
      const violations = seriesOf(text, 'modelgate_policy_violations_total');
      assert.equal(violations['environment=qa,mode=enforce,violation=mutable_reference'], 1);
      assert.equal(violations['environment=qa,mode=enforce,violation=unsigned_release'], 1);
      assert.equal(violations['environment=qa,mode=audit,violation=mutable_reference'], undefined);
      assert.equal(seriesOf(text, 'modelgate_environment_enforcing')['environment=qa'], 1);
    });
  });
});
