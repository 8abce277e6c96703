/**
 * One core's SHA-256 rate, measured in the bench process itself, so the
 * single-stream target ("≥ 0.5 of one core's SHA-256 rate") compares the
 * proxy with a figure taken on the same machine under the same load.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { median } from './report.ts';

export interface Sha256Rate {
  /** Median MB/s (10^6 bytes per second) over the rounds. */
  mbps: number;
  runsMBps: number[];
}

/** 8 MiB: the size of one manifest chunk, hashed the way the proxy hashes it (one update per chunk). */
const PIECE_BYTES = 8 * 1024 * 1024;

/** Hashes an in-memory buffer for about `seconds` on this thread, in `rounds` rounds; the median round is the rate. */
export function measureSha256Rate(seconds = 1, rounds = 3): Sha256Rate {
  const piece = randomFillSync(Buffer.allocUnsafe(PIECE_BYTES));
  const runsMBps: number[] = [];
  for (let round = 0; round < rounds; round += 1) {
    const budgetNs = BigInt(Math.round((seconds / rounds) * 1e9));
    const start = process.hrtime.bigint();
    let hashed = 0;
    let elapsed = 0n;
    do {
      createHash('sha256').update(piece).digest();
      hashed += PIECE_BYTES;
      elapsed = process.hrtime.bigint() - start;
    } while (elapsed < budgetNs);
    runsMBps.push(hashed / (Number(elapsed) / 1e9) / 1e6);
  }
  return { mbps: median(runsMBps), runsMBps };
}
