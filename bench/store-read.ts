/**
 * The S3 store's read path alone, without the proxy around it: nginx serves
 * `bench/big.bin` at its path-style URL (a fast origin), and this process
 * reads it through `createS3Store` in 8 MiB ranged reads, `readAhead` at a
 * time, copying each answer into a chunk buffer as the integrity engine
 * does, then hashing nothing. MB/s per pass; profile it with
 * `node --cpu-prof bench/store-read.ts`.
 *
 *   node bench/store-read.ts [--size-mib 256] [--passes 3] [--read-ahead 4]
 */
import { randomFillSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createS3Store } from '../src/stores/s3/s3-store.ts';
import type { Store } from '../src/stores/store.ts';
import { stopAllChildren } from './lib/children.ts';
import { findNginx } from './lib/machine.ts';
import { freePort, startNginx } from './lib/services.ts';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '256' },
    passes: { type: 'string', default: '3' },
    'read-ahead': { type: 'string', default: '4' },
  },
});
const size = Number(values['size-mib']) * 1024 * 1024;
const passes = Number(values.passes);
const readAhead = Number(values['read-ahead']);
const CHUNK = 8 * 1024 * 1024;

async function readChunk(store: Store, location: string, index: number, target: Buffer): Promise<number> {
  const range = { start: index * CHUNK, end: Math.min(size, (index + 1) * CHUNK) };
  const signal = AbortSignal.timeout(60_000);
  if (store.readInto) return (await store.readInto(location, range, target, { signal })).bytesRead;
  const { stream } = await store.read(location, range, { signal });
  let filled = 0;
  for await (const piece of stream as AsyncIterable<Buffer>) {
    target.set(piece, filled);
    filled += piece.length;
  }
  return filled;
}

async function onePass(store: Store, location: string): Promise<number> {
  const chunks = Math.ceil(size / CHUNK);
  const buffers = Array.from({ length: readAhead }, () => Buffer.allocUnsafe(CHUNK));
  let next = 0;
  let total = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    buffers.map(async (buffer) => {
      while (next < chunks) {
        const index = next++;
        const read = await readChunk(store, location, index, buffer);
        total += read;
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (total !== size) throw new Error(`read ${total} bytes, expected ${size}`);
  return size / seconds / 1e6;
}

async function main(): Promise<void> {
  const nginxBinary = findNginx();
  if (nginxBinary === null) {
    console.log('store-read: skipped, nginx not found (apt-get install nginx-light)');
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'mg-store-read-'));
  try {
    await mkdir(join(dir, 'root', 'bench'), { recursive: true });
    const data = Buffer.allocUnsafe(size);
    for (let at = 0; at < size; at += 1 << 26) randomFillSync(data, at, Math.min(1 << 26, size - at));
    await writeFile(join(dir, 'root', 'bench', 'big.bin'), data);
    const nginx = await startNginx({
      binary: nginxBinary,
      dir: join(dir, 'nginx'),
      root: join(dir, 'root'),
      s3Port: await freePort(),
      limitRate: '100m',
    });
    const store = createS3Store({
      region: 'us-east-1',
      endpoint: nginx.staticUrl,
      forcePathStyle: true,
      credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
      maxSockets: 64,
      timeouts: { connectSeconds: 5, firstByteSeconds: 15, idleSeconds: 30 },
    });
    try {
      const runs: number[] = [];
      for (let pass = 0; pass < passes; pass++) runs.push(await onePass(store, 's3://bench/big.bin'));
      const sorted = [...runs].sort((a, b) => a - b);
      console.log(
        `S3 store read path, ${size / 1024 / 1024} MiB, 8 MiB chunks, readAhead ${readAhead}: ` +
          `median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(0)} MB/s (runs ${runs.map((r) => r.toFixed(0)).join(' ')})`,
      );
    } finally {
      await store.close();
    }
  } finally {
    await stopAllChildren();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
