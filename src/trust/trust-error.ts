import type { TrustRefusalReason } from './verifier.types.ts';

/** A signature refused by a trust verifier, with the stable `reason` callers branch on. */
export class TrustRefusedError extends Error {
  readonly reason: TrustRefusalReason;

  constructor(reason: TrustRefusalReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TrustRefusedError';
    this.reason = reason;
  }
}

/** A signer spec that cannot be loaded (missing file, bad PEM, bad trusted root). Names the file. */
export class TrustConfigError extends Error {
  readonly file: string;

  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(`${file}: ${message}`, options);
    this.name = 'TrustConfigError';
    this.file = file;
  }
}
