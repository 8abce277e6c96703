/** The `transfer:` section for integrity tests: no retries, no backoff, no cache, inline hashing, unless overridden. */
import type { TransferConfig } from '../../src/config/config.types.ts';

export function transferConfig(overrides: Partial<TransferConfig> = {}): TransferConfig {
  return {
    readAhead: 2,
    chunkCacheBytes: 0,
    maxBufferedBytes: 8 * 1024 * 1024,
    memoryWaitSeconds: 1,
    hashWorkers: false,
    retries: 0,
    retryBackoffMs: 0,
    retryBackoffMaxMs: 0,
    retryBudgetSeconds: 30,
    ...overrides,
  };
}
