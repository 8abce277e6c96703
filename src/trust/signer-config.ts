import type { KeySource, SignerSpec } from './verifier.types.ts';

/** A signer entry as the configuration holds it: every key source optional (the schema ensures exactly one). */
export interface SignerEntry {
  name: string;
  jwksFile?: string;
  publicKeyFile?: string;
  certificate?: { caFile: string };
  sigstore?: { trustedRoot: string; identities: unknown[]; tlogThreshold?: number };
  revoked?: { at: string; reason: string };
}

/**
 * A configuration signer entry as a SignerSpec (exactly one key source). The
 * schema already refused entries with none or several; this narrows the type
 * and fails loudly if that ever changed.
 */
export function toSignerSpec<E extends SignerEntry>(
  entry: E,
): SignerSpec & Omit<E, 'jwksFile' | 'publicKeyFile' | 'certificate' | 'sigstore'> {
  const { jwksFile, publicKeyFile, certificate, sigstore, ...rest } = entry;
  const sources: KeySource[] = [];
  if (jwksFile !== undefined) sources.push({ jwksFile });
  if (publicKeyFile !== undefined) sources.push({ publicKeyFile });
  if (certificate !== undefined) sources.push({ certificate });
  if (sigstore !== undefined) {
    sources.push({ sigstore: sigstore as Extract<KeySource, { sigstore: unknown }>['sigstore'] });
  }
  const [source, ...more] = sources;
  if (source === undefined || more.length > 0) {
    throw new Error(`signer "${entry.name}": expected exactly one key source, got ${sources.length}`);
  }
  return { ...rest, ...source } as SignerSpec &
    Omit<E, 'jwksFile' | 'publicKeyFile' | 'certificate' | 'sigstore'>;
}
