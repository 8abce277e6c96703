/**
 * Least-recently-used accounting by bytes, in memory: the order in which the
 * disk cache evicts. Pure bookkeeping (no I/O) so the policy has its own unit
 * tests; the cache owns the files.
 *
 * A Map keeps insertion order, so "most recently used" is "last inserted":
 * a use moves the key to the end, and the oldest keys come first.
 */
export interface LruEntry {
  size: number;
  /** When it was last used (ms since the epoch): a file's mtime after a scan, or this process's own use. */
  usedAt: number;
}

export class ByteLru {
  readonly #entries = new Map<string, LruEntry>();
  #total = 0;

  /** Bytes of all entries. */
  get total(): number {
    return this.#total;
  }

  get size(): number {
    return this.#entries.size;
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  get(key: string): LruEntry | undefined {
    return this.#entries.get(key);
  }

  /** Adds or replaces `key` as the most recently used entry. */
  set(key: string, size: number, usedAt: number): void {
    this.delete(key);
    this.#entries.set(key, { size, usedAt });
    this.#total += size;
  }

  /** Marks `key` used now (moves it to the most recent end); false when absent. */
  touch(key: string, usedAt: number): boolean {
    const entry = this.#entries.get(key);
    if (entry === undefined) return false;
    this.#entries.delete(key);
    this.#entries.set(key, { size: entry.size, usedAt: Math.max(entry.usedAt, usedAt) });
    return true;
  }

  delete(key: string): boolean {
    const entry = this.#entries.get(key);
    if (entry === undefined) return false;
    this.#entries.delete(key);
    this.#total -= entry.size;
    return true;
  }

  /**
   * The oldest entries whose removal brings the total to `limit` or below,
   * oldest first. Nothing is removed here: the caller deletes each file and
   * then the key, or keeps it when the file turns out to be in use.
   */
  victims(limit: number): Array<[string, LruEntry]> {
    const out: Array<[string, LruEntry]> = [];
    let excess = this.#total - limit;
    for (const item of this.#entries) {
      if (excess <= 0) break;
      out.push(item);
      excess -= item[1].size;
    }
    return out;
  }

  /** Replaces everything with `entries`, which are ordered oldest first. */
  reset(entries: Iterable<[string, LruEntry]>): void {
    this.#entries.clear();
    this.#total = 0;
    for (const [key, entry] of entries) this.set(key, entry.size, entry.usedAt);
  }
}
