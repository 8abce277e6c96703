/**
 * The S3 store's read path alone, without the proxy around it: nginx serves
 * `bench/big.bin` at its path-style URL (a fast origin), and this process
 * reads it in 8 MiB ranged reads, `readAhead` at a time, copying each answer
 * into a chunk buffer as the integrity engine does, hashing nothing. Two
 * paths, passes interleaved: `createS3Store` (ranged GETs over undici) and
 * the SDK's own `GetObject` over its node:http handler (the store's data
 * path before issue 16). MB/s per pass; profile it with
 * `node --cpu-prof bench/store-read.ts`.
 *
 *   node bench/store-read.ts [--size-mib 256] [--passes 3] [--read-ahead 4]
 */
import { randomFillSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
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

/** Opens one ranged read of the big file: a body stream. */
type OpenRange = (start: number, end: number, signal: AbortSignal) => Promise<AsyncIterable<Buffer>>;

async function readChunk(open: OpenRange, index: number, target: Buffer): Promise<number> {
  const stream = await open(index * CHUNK, Math.min(size, (index + 1) * CHUNK), AbortSignal.timeout(60_000));
  let filled = 0;
  for await (const piece of stream) {
    target.set(piece, filled);
    filled += piece.length;
  }
  return filled;
}

async function onePass(open: OpenRange): Promise<number> {
  const chunks = Math.ceil(size / CHUNK);
  const buffers = Array.from({ length: readAhead }, () => Buffer.allocUnsafe(CHUNK));
  let next = 0;
  let total = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    buffers.map(async (buffer) => {
      while (next < chunks) {
        const index = next++;
        const read = await readChunk(open, index, buffer);
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
    const timeouts = { connectSeconds: 5, firstByteSeconds: 15, idleSeconds: 30 };
    const credentials = { accessKeyId: 'bench', secretAccessKey: 'bench' };
    const store: Store = createS3Store({
      region: 'us-east-1',
      endpoint: nginx.staticUrl,
      forcePathStyle: true,
      credentials,
      maxSockets: 64,
      timeouts,
    });
    const sdk = new S3Client({
      region: 'us-east-1',
      endpoint: nginx.staticUrl,
      forcePathStyle: true,
      credentials,
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: new NodeHttpHandler({ connectionTimeout: 5000 }),
    });
    const paths: Record<string, OpenRange> = {
      'S3 store (undici)': async (start, end, signal) =>
        (await store.read('s3://bench/big.bin', { start, end }, { signal })).stream as AsyncIterable<Buffer>,
      'SDK GetObject (node:http)': async (start, end, signal) => {
        const out = await sdk.send(
          new GetObjectCommand({ Bucket: 'bench', Key: 'big.bin', Range: `bytes=${start}-${end - 1}` }),
          { abortSignal: signal },
        );
        return out.Body as AsyncIterable<Buffer>;
      },
    };
    try {
      const runs = new Map<string, number[]>(Object.keys(paths).map((name) => [name, []]));
      for (let pass = 0; pass < passes; pass++) {
        for (const [name, open] of Object.entries(paths)) runs.get(name)?.push(await onePass(open));
      }
      console.log(
        `${size / 1024 / 1024} MiB, 8 MiB ranged reads, readAhead ${readAhead}, ${passes} interleaved passes:`,
      );
      for (const [name, values] of runs) {
        const sorted = [...values].sort((a, b) => a - b);
        const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
        console.log(
          `  ${name}: median ${median.toFixed(0)} MB/s (runs ${values.map((r) => r.toFixed(0)).join(' ')})`,
        );
      }
    } finally {
      await store.close();
      sdk.destroy();
    }
  } finally {
    await stopAllChildren();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
