/**
 * Opening one store on its own. Kept apart from buffdb.ts so the CLI's `kv` and `blob` commands load
 * only this (not the query and transaction modules, which cost start-up time).
 */
import type { Backend, OpenOptions } from '../backends/backend.js';
import { DEFAULT_BACKEND, loadBackend } from '../backends/index.js';
import { DEFAULT_BLOB_STORE, DEFAULT_KV_STORE } from '../defaults.js';
import { BlobStore } from './blob-store.js';
import { KvStore } from './kv-store.js';

/** A backend given by name (default `sqlite`) or as an object. */
export async function resolveBackend(backend: string | Backend | undefined): Promise<Backend> {
  return typeof backend === 'object' ? backend : loadBackend(backend ?? DEFAULT_BACKEND);
}

export async function openKvStore(
  backend: string | Backend | undefined,
  path = DEFAULT_KV_STORE,
  options: OpenOptions = {},
): Promise<KvStore> {
  return new KvStore(await (await resolveBackend(backend)).openKv(path, options));
}

export async function openBlobStore(
  backend: string | Backend | undefined,
  path = DEFAULT_BLOB_STORE,
  options: OpenOptions = {},
): Promise<BlobStore> {
  return new BlobStore(await (await resolveBackend(backend)).openBlob(path, options));
}
