/**
 * Opening one store on its own. Kept apart from buffdb.ts so the CLI's `kv` and `blob` commands load
 * only this (not the query and transaction modules, which cost start-up time).
 */
import type { Backend, OpenOptions } from '../backends/backend.js';
import { DEFAULT_BACKEND, loadBackend } from '../backends/index.js';
import { DEFAULT_BLOB_STORE, DEFAULT_KV_STORE } from '../defaults.js';
import { blobLimitOf } from './blob/blob-limit.js';
import { BlobStore, type BlobStoreOptions } from './blob/blob-store.js';
import { KvStore, type KvStoreOptions } from './kv/kv-store.js';
import { guardStoreFile } from './store-file-guard.js';

/** A backend given by name (default `sqlite`) or as an object. */
export async function resolveBackend(backend: string | Backend | undefined): Promise<Backend> {
  return typeof backend === 'object' ? backend : loadBackend(backend ?? DEFAULT_BACKEND);
}

/** A store location for messages and logs: a URL's password is never shown. */
export function displayLocation(path: string): string {
  return path.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, '$1***@');
}

/** Names the store an open error came from (keeps the engine's error code for mapping). */
function inContext(err: unknown, which: string, path: string): unknown {
  if (err instanceof Error) err.message = `cannot open the ${which} store ${displayLocation(path)}: ${err.message}`;
  return err;
}

export async function openKvStore(
  backend: Backend,
  path: string = DEFAULT_KV_STORE,
  options: OpenOptions & Omit<KvStoreOptions, 'multiProcess' | 'readOnly'> = {},
): Promise<KvStore> {
  const engine = guardStoreFile(
    await backend.openKv(path, options).catch((err: unknown) => {
      throw inContext(err, 'KV', path);
    }),
    path,
  );
  try {
    return await KvStore.open(engine, { ...options, multiProcess: backend.capabilities.multiProcess });
  } catch (err) {
    await engine.close();
    throw inContext(err, 'KV', path);
  }
}

export async function openBlobStore(
  backend: Backend,
  path: string = DEFAULT_BLOB_STORE,
  options: OpenOptions & BlobStoreOptions = {},
): Promise<BlobStore> {
  const engine = guardStoreFile(
    await backend.openBlob(path, options).catch((err: unknown) => {
      throw inContext(err, 'BLOB', path);
    }),
    path,
  );
  const store = new BlobStore(engine, { ...options, limit: blobLimitOf(backend) });
  // Uploads a crash left unfinished, and chunks nothing uses any more, go before serving.
  if (!options.readOnly && options.background) await store.expireUploads(true);
  return store;
}
