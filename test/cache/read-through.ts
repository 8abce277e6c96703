import { createHash } from 'node:crypto';
import type { ChunkCache } from '../../src/cache/index.ts';

/**
 * How the chunk fetcher is meant to use the cache (the wiring the integrator
 * adds): look, claim on a miss, read the source only as the claim's owner,
 * verify, publish, release. A waiter that saw the claim go loops and finds
 * the entry (or claims itself when the owner gave up).
 */
export async function readThrough(
  cache: ChunkCache,
  hex: string,
  size: number,
  readSource: () => Promise<Uint8Array>,
  signal: AbortSignal,
): Promise<{ bytes: Uint8Array; fromSource: boolean }> {
  for (;;) {
    const cached = await cache.get(hex, size, signal);
    if (cached !== undefined) return { bytes: cached, fromSource: false };
    await using claim = await cache.claim(hex, signal);
    if (!claim.owner) continue;
    const bytes = await readSource();
    if (createHash('sha256').update(bytes).digest('hex') !== hex)
      throw new Error('source bytes do not match the digest');
    await cache.put(hex, bytes);
    return { bytes, fromSource: true };
  }
}
