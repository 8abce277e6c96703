import type { StoresConfig } from '../config/config.types.ts';
import { createFileStore } from './file/file-store.ts';
import { type Store, type StoreKind, storeKindOf } from './store.ts';

/** The configured stores, chosen by a location's scheme. */
export interface StoreSet {
  /** The store for a location's scheme, or undefined when the scheme is unknown or its store is not configured. */
  forLocation(location: string): Store | undefined;
  /** The kinds configured, in a fixed order (file, s3, gcs, azure). */
  kinds(): StoreKind[];
  /** The configured store of a kind (readiness probes each one). */
  byKind(kind: StoreKind): Store | undefined;
  /** Closes every store (sockets, agents); safe to call twice. */
  close(): Promise<void>;
}

/**
 * Creates only the configured stores. Each cloud module is imported lazily,
 * so a file-only deployment never loads a cloud SDK (and its start-up cost
 * and credential probing).
 */
export async function createStores(config: StoresConfig): Promise<StoreSet> {
  const stores = new Map<StoreKind, Store>();
  if (config.file !== undefined) stores.set('file', createFileStore(config.file));
  if (config.s3 !== undefined) {
    const { createS3Store } = await import('./s3/s3-store.ts');
    stores.set('s3', createS3Store(config.s3));
  }
  if (config.gcs !== undefined) {
    const { createGcsStore } = await import('./gcs/gcs-store.ts');
    stores.set('gcs', createGcsStore(config.gcs));
  }
  if (config.azure !== undefined) {
    const { createAzureStore } = await import('./azure/azure-store.ts');
    stores.set('azure', createAzureStore(config.azure));
  }
  let closing: Promise<void> | undefined;
  return {
    forLocation(location: string): Store | undefined {
      const kind = storeKindOf(location);
      return kind === undefined ? undefined : stores.get(kind);
    },
    kinds: () => [...stores.keys()],
    byKind: (kind) => stores.get(kind),
    close(): Promise<void> {
      closing ??= Promise.allSettled([...stores.values()].map((store) => store.close())).then(() => {});
      return closing;
    },
  };
}
