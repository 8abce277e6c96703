import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startServeProcess } from './helpers/serve-process.ts';

const REPO = new URL('..', import.meta.url).pathname;

describe('the embedded default (npm start)', () => {
  let state: string;
  before(async () => {
    state = await mkdtemp(join(tmpdir(), 'modelgate-demo-'));
  });
  after(() => rm(state, { recursive: true, force: true }));

  describe('when serve --demo starts from config/modelgate.yaml', () => {
    it('prints a curl that downloads the demo file with bytes matching the signed manifest', async () => {
      const proxy = await startServeProcess(['--config', 'config/modelgate.yaml', '--demo'], {
        // Ports 0 and a private state folder, so the test never touches a developer's running demo.
        env: { MODELGATE_PORT: '0', MODELGATE_ADMIN_PORT: '0', MODELGATE_DEMO_DIR: state },
        cwd: REPO,
      });
      try {
        assert.equal((await fetch(`${proxy.adminUrl}/healthz`)).status, 200);
        const ready = (await (await fetch(`${proxy.adminUrl}/readyz`)).json()) as { ready: boolean };
        assert.equal(ready.ready, true);
        // The banner goes to stderr after the listening line; wait for it.
        for (let i = 0; i < 50 && !proxy.stderr().includes('Pull the whole release'); i++) {
          await new Promise((r) => setTimeout(r, 100));
        }
        const banner = proxy.stderr();
        const curl = /(curl -fsS [^\n]+\\\n\s+\S+)/.exec(banner)?.[1];
        assert.ok(curl, `banner has a curl command:\n${banner}`);
        const body = execFileSync('bash', ['-c', curl.replace('\\\n', ' ')], { cwd: REPO });
        const url = /(http:\/\/\S+\/files\/config\.json)/.exec(curl)![1]!;
        const releasePath = url.replace(/\/files\/config\.json$/, '');
        const token = execFileSync('bash', ['-c', `cat ${/\$\(cat ([^)]+)\)/.exec(curl)![1]}`], { cwd: REPO })
          .toString()
          .trim();
        const manifest = (await (
          await fetch(releasePath, { headers: { authorization: `Bearer ${token}` } })
        ).json()) as {
          files: Array<{ path: string; digest: string; size: number }>;
        };
        const entry = manifest.files.find((f) => f.path === 'config.json');
        assert.ok(entry);
        assert.equal(body.length, entry.size);
        assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, entry.digest);
      } finally {
        assert.equal(await proxy.stop(), 0);
      }
    });
  });
});
