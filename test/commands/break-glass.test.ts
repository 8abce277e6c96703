import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, decodeProtectedHeader } from 'jose';
import { createBreakGlassCommand } from '../../src/commands/break-glass.ts';
import { EXIT } from '../../src/commands/command.types.ts';
import type { BreakGlassConfig } from '../../src/config/config.types.ts';
import { isModelgateError } from '../../src/errors.ts';
import { createBreakGlassVerifier } from '../../src/policy/break-glass.ts';
import type { BreakGlassRequest, BreakGlassVerifier } from '../../src/policy/policy.types.ts';
import { createKeyDir, generateTestKey, type KeyDir, type TestKey } from '../policy/break-glass-keys.ts';

const NOW = Date.parse('2026-11-25T12:00:00Z');
const RELEASE = `sha256:${'0f'.repeat(32)}`;
const request: BreakGlassRequest = {
  serviceAccount: 'fraud-inference',
  model: 'fraud-detector',
  release: RELEASE,
};

let keys: KeyDir;
let key: TestKey;
let privateFile: string;
let config: BreakGlassConfig;
let verifier: BreakGlassVerifier;

before(async () => {
  keys = await createKeyDir();
  key = await generateTestKey('break-glass-2026');
  ({ privateFile } = await keys.write('break-glass', key));
  config = {
    jwksFile: join(keys.dir, 'break-glass.jwks.json'),
    maxTtlSeconds: 14400,
    incidentPattern: '^INC-[0-9]+$',
  };
  verifier = await createBreakGlassVerifier({ config, clock: () => NOW });
});

after(() => keys.remove());

/** Runs the command in process with a frozen clock and captures what it prints. */
async function issue(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const command = createBreakGlassCommand({
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
    clock: () => NOW,
  });
  const code = await command.run(args);
  return { code, stdout, stderr };
}

function baseArgs(overrides: Record<string, string> = {}): string[] {
  const options: Record<string, string> = {
    key: privateFile,
    incident: 'INC-1234',
    reason: 'release pipeline signer is down',
    'service-account': 'fraud-inference',
    model: 'fraud-detector',
    release: RELEASE,
    ...overrides,
  };
  return Object.entries(options).flatMap(([name, value]) => [`--${name}`, value]);
}

describe('when an operator issues a token with the defaults', () => {
  it('prints one line that the verifier accepts, valid for one hour', async () => {
    const { code, stdout, stderr } = await issue(baseArgs());
    assert.equal(code, EXIT.ok);
    assert.match(stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const grant = await verifier.verify(stdout.trim(), request);
    assert.equal(grant.incident, 'INC-1234');
    assert.equal(grant.reason, 'release pipeline signer is down');
    assert.equal(grant.expiresAt - grant.issuedAt, 3600);
    assert.equal(grant.issuedAt, NOW / 1000);
    assert.match(stderr, /expires 2026-11-25T13:00:00Z/);
    assert.ok(stderr.includes(grant.jti));
  });

  it('signs with the key file kid, its alg and the break-glass typ', async () => {
    const { stdout } = await issue(baseArgs());
    assert.deepEqual(decodeProtectedHeader(stdout.trim()), {
      alg: 'ES256',
      kid: 'break-glass-2026',
      typ: 'modelgate-break-glass+jwt',
    });
  });

  it('gives every token its own jti', async () => {
    const first = await verifier.verify((await issue(baseArgs())).stdout.trim(), request);
    const second = await verifier.verify((await issue(baseArgs())).stdout.trim(), request);
    assert.notEqual(first.jti, second.jti);
  });
});

describe('when --json is given', () => {
  it('prints one object whose token, jti and expiry match the grant', async () => {
    const { code, stdout } = await issue([...baseArgs({ ttl: '90m' }), '--json']);
    assert.equal(code, EXIT.ok);
    const out = JSON.parse(stdout) as { token: string; expiresAt: string; jti: string; incident: string };
    const grant = await verifier.verify(out.token, request);
    assert.equal(out.jti, grant.jti);
    assert.equal(out.incident, 'INC-1234');
    assert.equal(out.expiresAt, '2026-11-25T13:30:00Z');
    assert.equal(Date.parse(out.expiresAt) / 1000, grant.expiresAt);
  });
});

describe('when a TTL is given', () => {
  for (const [ttl, seconds] of [
    ['90m', 5400],
    ['2h', 7200],
    ['3600s', 3600],
    ['600', 600],
  ] as const) {
    it(`reads ${ttl} as ${seconds} seconds`, async () => {
      const { stdout } = await issue(baseArgs({ ttl }));
      const grant = await verifier.verify(stdout.trim(), request);
      assert.equal(grant.expiresAt - grant.issuedAt, seconds);
    });
  }

  it('refuses a TTL above 4 h with a usage error and no token', async () => {
    const { code, stdout, stderr } = await issue(baseArgs({ ttl: '5h' }));
    assert.equal(code, EXIT.usage);
    assert.equal(stdout, '');
    assert.match(stderr, /--max-ttl/);
  });

  it('issues it when --max-ttl is raised, and a proxy with the default maximum still refuses it', async () => {
    const { code, stdout } = await issue(baseArgs({ ttl: '5h', 'max-ttl': '6h' }));
    assert.equal(code, EXIT.ok);
    await assert.rejects(verifier.verify(stdout.trim(), request), (error: unknown) => {
      assert.ok(isModelgateError(error, 'MG_BREAK_GLASS_TTL'));
      return true;
    });
    const lenient = await createBreakGlassVerifier({
      config: { ...config, maxTtlSeconds: 6 * 3600 },
      clock: () => NOW,
    });
    assert.equal((await lenient.verify(stdout.trim(), request)).expiresAt, NOW / 1000 + 5 * 3600);
  });

  it('refuses a TTL it cannot read', async () => {
    for (const ttl of ['1d', '0', '-5m', 'soon']) {
      assert.equal((await issue(baseArgs({ ttl }))).code, EXIT.usage, ttl);
    }
  });
});

describe('when the request is incomplete or malformed', () => {
  it('refuses a release that is not a sha256 digest', async () => {
    for (const release of ['fraud-detector:2026.11.3', `sha256:${'0F'.repeat(32)}`, 'sha256:abc']) {
      const { code, stdout } = await issue(baseArgs({ release }));
      assert.equal(code, EXIT.usage, release);
      assert.equal(stdout, '');
    }
  });

  it('refuses an empty reason or incident', async () => {
    assert.equal((await issue(baseArgs({ reason: '  ' }))).code, EXIT.usage);
    assert.equal((await issue(baseArgs({ incident: '' }))).code, EXIT.usage);
  });

  it('refuses a missing --key and an unknown option', async () => {
    assert.equal((await issue(baseArgs().slice(2))).code, EXIT.usage);
    assert.equal((await issue([...baseArgs(), '--forever'])).code, EXIT.usage);
  });

  it('fails (exit 1) when the key file holds a public key', async () => {
    const publicFile = await keys.writeRaw('public-only.jwk.json', JSON.stringify(key.publicJwk));
    const { code, stdout, stderr } = await issue(baseArgs({ key: publicFile }));
    assert.equal(code, EXIT.failure);
    assert.equal(stdout, '');
    assert.match(stderr, /private key/);
  });

  it('fails (exit 1) when the key file is missing', async () => {
    assert.equal((await issue(baseArgs({ key: join(keys.dir, 'absent.json') }))).code, EXIT.failure);
  });
});

describe('when the key file has no kid and no alg', () => {
  it('uses the JWK thumbprint as kid and infers the algorithm from the key type', async () => {
    const edKey = await generateTestKey('unused', 'EdDSA');
    const { kid: _kid, alg: _alg, ...bare } = edKey.privateJwk;
    const bareFile = join(keys.dir, 'bare.private.jwk.json');
    await writeFile(bareFile, JSON.stringify(bare));
    const { stdout } = await issue(baseArgs({ key: bareFile }));
    const header = decodeProtectedHeader(stdout.trim());
    assert.equal(header.alg, 'EdDSA');
    assert.equal(header.kid, await calculateJwkThumbprint(bare));
  });
});

describe('when --help is given', () => {
  it('prints usage, options and exit codes and exits 0', async () => {
    const { code, stdout } = await issue(['--help']);
    assert.equal(code, EXIT.ok);
    for (const text of ['Usage: modelgate break-glass', '--max-ttl', 'Exit codes'])
      assert.ok(stdout.includes(text));
  });
});

describe('when run as a process', () => {
  it('writes only the token to stdout', async () => {
    const script = [
      `import { breakGlassCommand } from ${JSON.stringify(new URL('../../src/commands/break-glass.ts', import.meta.url).href)};`,
      'process.exitCode = await breakGlassCommand.run(process.argv.slice(1));',
    ].join('\n');
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', script, '--', ...baseArgs()],
      { timeout: 10_000 },
    );
    const lines = stdout.split('\n');
    assert.equal(lines.length, 2);
    assert.equal(lines[1], '');
    const live = await createBreakGlassVerifier({ config });
    assert.equal((await live.verify(lines[0]!, request)).incident, 'INC-1234');
    assert.match(stderr, /Reminder/);
  });
});
