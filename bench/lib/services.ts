/**
 * The reference servers around modelgate: nginx (static origin, rate-limited
 * origin, and `proxy_pass` in front of each source), s3rver, and the node
 * static server that stands in for nginx when it is not installed. Every one
 * runs as a child process on 127.0.0.1 and is registered in ./children.ts.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Child, startChild } from './children.ts';

const LIB = new URL('.', import.meta.url).pathname;

/** A free TCP port on 127.0.0.1 (nginx needs ports in its config file, it cannot report port 0). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitForPort(port: number, deadline: number, alive: () => boolean): Promise<void> {
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`process exited before port ${port} opened`);
    if (Date.now() > deadline) throw new Error(`port ${port} did not open in time`);
    await sleep(20);
  }
}

export interface Service {
  readonly url: string;
  readonly port: number;
  readonly child: Child;
}

/** Starts `node SCRIPT ARGS…` and reads its `{"port": N}` line. */
export async function startNodeService(name: string, script: string, args: string[]): Promise<Service> {
  const child = startChild(name, process.execPath, [join(LIB, script), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.process.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 30 s:\n${stderr}`)), 30_000);
    createInterface({ input: child.process.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve((JSON.parse(line) as { port: number }).port);
      } catch {
        reject(new Error(`${name}: unexpected output ${line}`));
      }
    });
    child.process.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}:\n${stderr}`));
    });
  }).catch(async (error: unknown) => {
    await child.stop();
    throw error;
  });
  child.process.stdout?.resume();
  return { url: `http://127.0.0.1:${port}`, port, child };
}

export interface NginxOptions {
  binary: string;
  /** Folder for nginx.conf, pid, logs and temp files. */
  dir: string;
  /** Document root of both origins (holds `bench/big.bin`, the S3 path-style location). */
  root: string;
  /** Port of s3rver, for the proxy_pass in front of it. */
  s3Port: number;
  /** nginx `limit_rate` value of the rate-limited origin, e.g. `100m` (bytes per second per connection). */
  limitRate: string;
}

export interface Nginx {
  /** Static origin serving `root` (sendfile). */
  readonly staticUrl: string;
  /** The same files, each connection limited to `limitRate`. */
  readonly limitedUrl: string;
  /** `proxy_pass` → static origin. */
  readonly proxyStaticUrl: string;
  /** `proxy_pass` → s3rver. */
  readonly proxyS3Url: string;
  /** `proxy_pass` → rate-limited origin. */
  readonly proxyLimitedUrl: string;
  readonly child: Child;
}

/**
 * One nginx in the foreground with five servers. Defaults are kept where the
 * brief asks for them (`proxy_buffering` on, default buffer sizes); upstream
 * keep-alive is turned on as any operator would for a proxy (it matters only
 * for the small-file latency rows).
 */
export async function startNginx(options: NginxOptions): Promise<Nginx> {
  const { dir } = options;
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    await mkdir(join(dir, sub), { recursive: true });
  }
  const ports = {
    static: await freePort(),
    limited: await freePort(),
    proxyStatic: await freePort(),
    proxyS3: await freePort(),
    proxyLimited: await freePort(),
  };
  const proxyServer = (port: number, upstream: string) => `
    server {
      listen 127.0.0.1:${port};
      location / {
        proxy_pass http://${upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
      }
    }`;
  const conf = `
# Written by bench/run.ts; runs in the foreground under the bench's control.
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types { }
  default_type application/octet-stream;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream static_origin { server 127.0.0.1:${ports.static}; keepalive 32; }
  upstream limited_origin { server 127.0.0.1:${ports.limited}; keepalive 32; }
  upstream s3rver_origin { server 127.0.0.1:${options.s3Port}; keepalive 32; }
  server { listen 127.0.0.1:${ports.static}; root ${options.root}; }
  server { listen 127.0.0.1:${ports.limited}; root ${options.root}; limit_rate ${options.limitRate}; }
  ${proxyServer(ports.proxyStatic, 'static_origin')}
  ${proxyServer(ports.proxyS3, 's3rver_origin')}
  ${proxyServer(ports.proxyLimited, 'limited_origin')}
}
`;
  const confPath = join(dir, 'nginx.conf');
  await writeFile(confPath, conf);
  const child = startChild(
    'nginx',
    options.binary,
    ['-g', 'daemon off;', '-p', `${dir}/`, '-c', confPath, '-e', join(dir, 'error.log')],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.process.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const alive = () => child.process.exitCode === null && child.process.signalCode === null;
  try {
    const deadline = Date.now() + 10_000;
    for (const port of Object.values(ports)) await waitForPort(port, deadline, alive);
  } catch (error) {
    await child.stop();
    const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
    throw new Error(`nginx did not start: ${(error as Error).message}\n${stderr}${log}`);
  }
  const url = (port: number) => `http://127.0.0.1:${port}`;
  return {
    staticUrl: url(ports.static),
    limitedUrl: url(ports.limited),
    proxyStaticUrl: url(ports.proxyStatic),
    proxyS3Url: url(ports.proxyS3),
    proxyLimitedUrl: url(ports.proxyLimited),
    child,
  };
}
