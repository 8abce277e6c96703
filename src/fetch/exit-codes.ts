/**
 * Exit codes of `modelgate fetch`. An init container's exit code is what a
 * Kubernetes operator sees first (`kubectl get pod` → `Init:Error`), so each
 * failure class has its own code and the stderr line names the server's
 * error code.
 */
export const FETCH_EXIT = {
  /** Every file is in DEST, verified, and `.modelgate-release.json` is written. */
  ok: 0,
  /** An unexpected local failure (disk full, permission denied, unexpected HTTP status). */
  failure: 1,
  /** Bad flags, unreadable token or CA file, malformed model or release reference. */
  usage: 2,
  /** The proxy refused the identity (401) or the access (403). Never retried. */
  authRefused: 10,
  /** Unknown model, release or file (404), or a conflicting version (409). Never retried. */
  notFound: 11,
  /** Bytes or manifest did not verify, on the client or at the proxy; retried once, then fatal. */
  integrity: 12,
  /** The proxy or its source is unavailable (502 source errors, 503, 504, connection failures) after retries. */
  unavailable: 13,
  /**
   * Something planted in DEST would redirect a write out of it: a symlink at
   * `.modelgate-tmp`, a partial or final file, a folder of a nested path, or
   * the release record. Never retried; nothing outside DEST was written.
   */
  unsafeDestination: 14,
} as const;

export type FetchExitCode = (typeof FETCH_EXIT)[keyof typeof FETCH_EXIT];
