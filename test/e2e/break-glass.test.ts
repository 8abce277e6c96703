import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Clock } from '../../src/clock.ts';
import { createBreakGlassCommand } from '../../src/commands/break-glass.ts';
import { randomBytesSeeded, startHarness } from '../helpers/proxy.ts';
import { createKeyDir, generateTestKey, type KeyDir } from '../policy/break-glass-keys.ts';

const MiB = 1024 * 1024;
const HOUR = 3600_000;

interface IssueOptions {
  release: string;
  serviceAccount?: string;
  model?: string;
  incident?: string;
  reason?: string;
  ttl?: string;
  maxTtl?: string;
  key?: string;
  clock?: Clock;
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe('break-glass tokens through the proxy', () => {
  let h: Awaited<ReturnType<typeof startHarness>>;
  let keys: KeyDir;
  let breakGlassKeyFile: string;
  let releaseSignerKeyFile: string;
  /** Caller without any grant on fraud-*: system:serviceaccount:other:inference → other-team. */
  let otherTeam: string;
  const bytes = randomBytesSeeded(MiB + 777, 41);
  const releases = { granted: '', second: '', tampered: '', unsigned: '' };

  /** Issues a token with `modelgate break-glass --json`, as an on-call engineer would. */
  async function issue(options: IssueOptions): Promise<{ token: string; jti: string }> {
    let out = '';
    const command = createBreakGlassCommand({
      stdout: (text) => {
        out += text;
      },
      stderr: () => {},
      ...(options.clock ? { clock: options.clock } : {}),
    });
    const code = await command.run([
      '--key',
      options.key ?? breakGlassKeyFile,
      '--incident',
      options.incident ?? 'INC-42',
      '--reason',
      options.reason ?? 'fraud model rollback during outage',
      '--service-account',
      options.serviceAccount ?? 'other-team',
      '--model',
      options.model ?? 'fraud-detector',
      '--release',
      options.release,
      '--ttl',
      options.ttl ?? '1h',
      '--max-ttl',
      options.maxTtl ?? '4h',
      '--json',
    ]);
    assert.equal(code, 0);
    return JSON.parse(out) as { token: string; jti: string };
  }

  function filePath(digest: string): string {
    return `/v1/models/fraud-detector/releases/${digest}/files/model.bin`;
  }

  before(async () => {
    keys = await createKeyDir();
    const written = await keys.write('break-glass', await generateTestKey('break-glass-1'));
    breakGlassKeyFile = written.privateFile;
    h = await startHarness({
      config: {
        breakGlass: { jwksFile: written.jwksFile, maxTtlSeconds: 14400, incidentPattern: '^INC-[0-9]+$' },
      },
    });
    releaseSignerKeyFile = await keys.writeRaw(
      'release.private.jwk.json',
      JSON.stringify(h.signer.privateJwk),
    );
    otherTeam = await h.token({ namespace: 'other' });
    const tampered = Buffer.from(bytes);
    tampered[3]! ^= 0x80;
    const add = (version: string, extra: { sourceBytes?: Buffer; signedBy?: 'unsigned' } = {}) =>
      h.addRelease({
        model: 'fraud-detector',
        version,
        files: [
          { path: 'model.bin', bytes, ...(extra.sourceBytes ? { sourceBytes: extra.sourceBytes } : {}) },
        ],
        ...(extra.signedBy ? { signedBy: extra.signedBy } : {}),
      });
    releases.granted = (await add('bg-1')).digest;
    releases.second = (await add('bg-2')).digest;
    releases.tampered = (await add('bg-tampered', { sourceBytes: tampered })).digest;
    releases.unsigned = (await add('bg-unsigned', { signedBy: 'unsigned' })).digest;
  });
  after(async () => {
    await h.stop();
    await keys.remove();
  });

  describe('when a caller without a grant sends a valid break-glass token', () => {
    it('is refused without the token', async () => {
      const res = await h.request(filePath(releases.granted), { token: otherTeam });
      assert.equal(res.status, 403);
      assert.equal(await errorCode(res), 'MG_NOT_GRANTED');
    });

    it('reads that one release, and the use is counted and logged at warn', async () => {
      const { token, jti } = await issue({ release: releases.granted });
      const res = await h.request(filePath(releases.granted), {
        token: otherTeam,
        headers: { 'modelgate-break-glass': token, 'x-request-id': 'bg-valid' },
      });
      assert.equal(res.status, 200);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));
      assert.equal(
        await h.metric('modelgate_break_glass_requests_total', {
          incident: 'INC-42',
          service_account: 'other-team',
        }),
        1,
      );
      const warned = h.logs.filter((line) => line.event === 'break_glass' && line.requestId === 'bg-valid');
      assert.equal(warned.length, 1);
      assert.equal(warned[0]!.level, 'warn');
      assert.equal(warned[0]!.incident, 'INC-42');
      assert.equal(warned[0]!.reason, 'fraud model rollback during outage');
      assert.equal(warned[0]!.jti, jti);
      assert.equal(warned[0]!.serviceAccount, 'other-team');
      assert.equal(warned[0]!.release, releases.granted);
      const audit = h.logs.filter((line) => line.event === 'retrieval' && line.requestId === 'bg-valid');
      assert.equal(audit.length, 1);
      assert.equal(audit[0]!.breakGlassIncident, 'INC-42');
      assert.equal(audit[0]!.outcome, 'served');
    });
  });

  describe('when the break-glass token is wrong in one way', () => {
    it('answers 403 with a distinct MG_BREAK_GLASS_* code for each, and counts no use', async () => {
      const cases: Array<[string, IssueOptions, string]> = [
        [
          'expired',
          { release: releases.granted, clock: () => Date.now() - 3 * HOUR },
          'MG_BREAK_GLASS_EXPIRED',
        ],
        ['lifetime too long', { release: releases.granted, ttl: '5h', maxTtl: '5h' }, 'MG_BREAK_GLASS_TTL'],
        [
          'another service account',
          { release: releases.granted, serviceAccount: 'fraud-inference' },
          'MG_BREAK_GLASS_ACCOUNT',
        ],
        ['another model', { release: releases.granted, model: 'fraud-other' }, 'MG_BREAK_GLASS_MODEL'],
        ['another release', { release: releases.second }, 'MG_BREAK_GLASS_RELEASE'],
        [
          'an incident off pattern',
          { release: releases.granted, incident: 'PROD-7' },
          'MG_BREAK_GLASS_INCIDENT',
        ],
        [
          'signed by the release signer',
          { release: releases.granted, key: releaseSignerKeyFile },
          'MG_BREAK_GLASS_SIGNATURE',
        ],
      ];
      const before = await h.metric('modelgate_break_glass_requests_total');
      const seen = new Set<string>();
      for (const [name, options, code] of cases) {
        const { token } = await issue(options);
        const res = await h.request(filePath(releases.granted), {
          token: otherTeam,
          headers: { 'modelgate-break-glass': token },
        });
        assert.equal(res.status, 403, name);
        assert.equal(await errorCode(res), code, name);
        seen.add(code);
      }
      assert.equal(seen.size, cases.length);
      assert.equal(await h.metric('modelgate_break_glass_requests_total'), before);
    });
  });

  describe('when a valid break-glass token names a release whose bytes were tampered', () => {
    it('still fails closed with 502 MG_DIGEST_MISMATCH in the enforce environment', async () => {
      const { token } = await issue({ release: releases.tampered, incident: 'INC-44' });
      const mismatches = await h.metric('modelgate_digest_mismatches_total');
      const res = await h.request(filePath(releases.tampered), {
        token: otherTeam,
        headers: { 'modelgate-break-glass': token },
      });
      assert.equal(res.status, 502);
      assert.equal(await errorCode(res), 'MG_DIGEST_MISMATCH');
      assert.equal(await h.metric('modelgate_digest_mismatches_total'), mismatches + 1);
    });
  });

  describe('when a granted caller asks for an unsigned release in an enforce environment', () => {
    it('is refused without break-glass and served with it', async () => {
      const caller = await h.token();
      const refused = await h.request(filePath(releases.unsigned), { token: caller });
      assert.equal(refused.status, 403);
      assert.equal(await errorCode(refused), 'MG_RELEASE_UNSIGNED');

      const { token } = await issue({
        release: releases.unsigned,
        serviceAccount: 'fraud-inference',
        incident: 'INC-43',
      });
      const res = await h.request(filePath(releases.unsigned), {
        token: caller,
        headers: { 'modelgate-break-glass': token },
      });
      assert.equal(res.status, 200);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));
      assert.equal(
        await h.metric('modelgate_break_glass_requests_total', {
          incident: 'INC-43',
          service_account: 'fraud-inference',
        }),
        1,
      );
    });
  });
});
