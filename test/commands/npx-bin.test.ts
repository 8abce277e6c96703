import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

// Regression: every `npx modelgate` on a machine whose system Node is older than 22.19 printed npm's
// EBADENGINE warning (twice), because npm checked package.json `engines` against the Node running npm,
// although the CLI itself runs on the pinned Node 24 from node_modules/.bin.
describe('npx modelgate', () => {
  describe('when run from the checkout with the system npm', () => {
    it('prints the version and no engine warning', async () => {
      // A fresh npm cache: npm warns on the first `npx` of a project, and caches the result.
      const cache = await mkdtemp(join(tmpdir(), 'modelgate-npm-cache-'));
      after(() => rm(cache, { recursive: true, force: true }));
      const run = spawnSync('npx', ['modelgate', '--version'], {
        cwd: REPO,
        encoding: 'utf8',
        timeout: 60_000,
        env: {
          ...process.env,
          npm_config_cache: cache,
          npm_config_offline: 'true',
          npm_config_update_notifier: 'false',
        },
      });
      assert.equal(run.error, undefined, String(run.error));
      assert.equal(run.status, 0, run.stderr);
      assert.equal(run.stdout, 'modelgate 0.1.0\n');
      assert.doesNotMatch(run.stderr, /EBADENGINE|EBADDEVENGINES/);
    });
  });

  describe('when bin/modelgate.js runs on the system Node', () => {
    it('runs, or says plainly which Node it needs instead of failing on a .ts import', () => {
      // Without node_modules/.bin on PATH: the Node a user's shell would pick.
      const env = {
        ...process.env,
        PATH: (process.env.PATH ?? '')
          .split(':')
          .filter((dir) => !dir.includes('node_modules'))
          .join(':'),
      };
      const run = spawnSync('node', ['bin/modelgate.js', '--version'], {
        cwd: REPO,
        encoding: 'utf8',
        timeout: 60_000,
        env,
      });
      const [major = 0, minor = 0] = (
        spawnSync('node', ['-p', 'process.versions.node'], { encoding: 'utf8', env }).stdout ?? ''
      )
        .trim()
        .split('.')
        .map(Number);
      const oldNode = major < 22 || (major === 22 && minor < 19);
      if (oldNode) {
        assert.equal(run.status, 1);
        assert.match(run.stderr, /^modelgate: needs Node\.js >= 22\.19/);
        assert.doesNotMatch(run.stderr, /ERR_UNKNOWN_FILE_EXTENSION/);
      } else {
        assert.equal(run.status, 0, run.stderr);
        assert.equal(run.stdout, 'modelgate 0.1.0\n');
      }
    });
  });
});
