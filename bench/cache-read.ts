/**
 * The verified disk cache alone (src/cache): how fast a warm node serves
 * chunks from it. Puts `--size-mib` of random 8 MiB chunks (write, fsync,
 * rename), then reads every chunk back `--passes` times with `get` (read the
 * file, SHA-256 it, compare), one chunk at a time on one thread, as the
 * chunk fetcher will. The entries stay in the page cache, as on a node with
 * free memory. Also reports SHA-256 alone on the same buffers: the ceiling.
 *
 *   node bench/cache-read.ts [--size-mib 512] [--passes 3]
 */
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createChunkCache } from '../src/cache/index.ts';

const { values } = parseArgs({
  options: { 'size-mib': { type: 'string', default: '512' }, passes: { type: 'string', default: '3' } },
});
const CHUNK = 8 * 1024 * 1024;
const count = Math.max(1, Math.floor((Number(values['size-mib']) * 1024 * 1024) / CHUNK));
const passes = Number(values.passes);
const mbps = (bytes: number, ms: number) => bytes / (ms / 1000) / 1e6;

const dir = await mkdtemp(join(tmpdir(), 'mg-cache-bench-'));
try {
  const cache = await createChunkCache({ dir: join(dir, 'cache'), maxBytes: 2 * count * CHUNK });
  const digests: string[] = [];
  const chunk = Buffer.allocUnsafe(CHUNK);
  let putMs = 0;
  for (let i = 0; i < count; i++) {
    randomFillSync(chunk);
    const hex = createHash('sha256').update(chunk).digest('hex');
    digests.push(hex);
    const started = performance.now();
    await cache.put(hex, chunk);
    putMs += performance.now() - started;
  }
  const target = Buffer.allocUnsafe(CHUNK);
  const reads: number[] = [];
  const hashes: number[] = [];
  for (let pass = 0; pass < passes; pass++) {
    let started = performance.now();
    for (const hex of digests) {
      const got = await cache.get(hex, CHUNK, AbortSignal.timeout(60_000), target);
      if (got === undefined) throw new Error(`cache miss for ${hex}`);
    }
    reads.push(mbps(count * CHUNK, performance.now() - started));
    started = performance.now();
    for (let i = 0; i < count; i++) createHash('sha256').update(target).digest('hex');
    hashes.push(mbps(count * CHUNK, performance.now() - started));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  console.log(`cache: ${count} × 8 MiB chunks`);
  console.log(`  put (write + fsync + rename): ${mbps(count * CHUNK, putMs).toFixed(0)} MB/s`);
  console.log(
    `  get (read + SHA-256 + compare), one thread: median ${median(reads).toFixed(0)} MB/s (runs ${reads.map((r) => r.toFixed(0)).join(' ')})`,
  );
  console.log(
    `  SHA-256 alone, same thread: median ${median(hashes).toFixed(0)} MB/s (runs ${hashes.map((r) => r.toFixed(0)).join(' ')})`,
  );
  await cache.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
