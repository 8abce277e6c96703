/**
 * "Concurrent callers share one in-flight promise", written once.
 *
 * `run(key, fn)` starts `fn()` unless a call for `key` is already running, in
 * which case it returns that call's promise. The entry lives only while the
 * call runs, so a failure is never remembered: the next caller tries again.
 * Used by the catalog (one scan at a time), the authenticator (one signature
 * check per new token) and issuer keys (one key fetch per issuer).
 */
export interface SingleFlight<K, V> {
  run(key: K, fn: () => Promise<V>): Promise<V>;
  /** The promise of the call running for `key`, if any. */
  current(key: K): Promise<V> | undefined;
  /** How many calls are running. */
  readonly size: number;
}

export function createSingleFlight<K, V>(): SingleFlight<K, V> {
  const running = new Map<K, Promise<V>>();
  return {
    run(key, fn) {
      const existing = running.get(key);
      if (existing !== undefined) return existing;
      const started = (async () => fn())();
      running.set(key, started);
      const forget = () => {
        if (running.get(key) === started) running.delete(key);
      };
      started.then(forget, forget);
      return started;
    },
    current: (key) => running.get(key),
    get size() {
      return running.size;
    },
  };
}

/**
 * Single flight with one trailing call: while a call runs, later callers
 * share ONE follow-up call that starts after it, so each caller's request is
 * served by a run that began after it asked (a SIGHUP during a catalog scan
 * must see the files changed before the signal).
 */
export function createCoalescer<V>(fn: () => Promise<V>): () => Promise<V> {
  let running: Promise<V> | undefined;
  let queued: Promise<V> | undefined;
  const start = (): Promise<V> => {
    const started = (async () => fn())();
    running = started;
    const forget = () => {
      if (running === started) running = undefined;
    };
    started.then(forget, forget);
    return started;
  };
  return () => {
    if (running === undefined) return start();
    const before = running;
    queued ??= before
      .catch(() => undefined)
      .then(() => {
        queued = undefined;
        return running === undefined ? start() : running;
      });
    return queued;
  };
}
