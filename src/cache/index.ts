export type {
  CacheFileWriter,
  CacheHash,
  CacheTarget,
  ChunkCache,
  ChunkCacheOptions,
} from './chunk-cache.ts';
export { createChunkCache } from './chunk-cache.ts';
export type { Claim, OwnedClaim, WaitedClaim } from './claims.ts';
