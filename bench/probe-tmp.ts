import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { request } from 'undici';
import { stopAllChildren } from '/work/main/bench/lib/children.ts';
import { createAgent, download } from '/work/main/bench/lib/client.ts';
import { createFixture } from '/work/main/bench/lib/fixture.ts';
import { startNginx, startNodeService } from '/work/main/bench/lib/services.ts';

const dir = await mkdtemp('/tmp/probe-');
const f = await createFixture(dir, 1024 * 1024 * 1024);
await mkdir(dir + '/nginx');
const n = await startNginx({
  binary: '/usr/sbin/nginx',
  dir: dir + '/nginx',
  root: f.dataRoot,
  s3Port: 1,
  limitRate: '100m',
});
const url = n.staticUrl + f.bigUrlPath;
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  execFileSync('curl', ['-s', '-o', '/dev/null', url]);
  console.log('curl', (f.bigSize / (performance.now() - t) / 1e3).toFixed(0));
  const a = createAgent(1);
  const r = await download(url, { agent: a, expectedBytes: f.bigSize });
  console.log('node:http', (r.bytes / r.seconds / 1e6).toFixed(0));
  const t2 = performance.now();
  const { body } = await request(url);
  let b = 0;
  for await (const c of body) b += c.length;
  console.log('undici', (b / (performance.now() - t2) / 1e3).toFixed(0));
  const r2 = await download(n.proxyStaticUrl + f.bigUrlPath, { agent: a, expectedBytes: f.bigSize });
  console.log('node:http via nginx proxy', (r2.bytes / r2.seconds / 1e6).toFixed(0));
  const t3 = performance.now();
  execFileSync('curl', ['-s', '-o', '/dev/null', n.proxyStaticUrl + f.bigUrlPath]);
  console.log('curl via proxy', (f.bigSize / (performance.now() - t3) / 1e3).toFixed(0));
}
await stopAllChildren();
