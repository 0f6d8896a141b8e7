/** Opens a backend's KV and BLOB stores together: the unit the server, CLI and library share. */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Backend, Durability } from '../backends/backend.js';
import { DEFAULT_BACKEND, loadBackend, SQL_BACKENDS } from '../backends/index.js';
import { BlobStore } from './blob-store.js';
import type { GroupCommitter } from './group-commit.js';
import { KvStore } from './kv-store.js';
import { QueryStore } from './query-store.js';

export const DEFAULT_KV_STORE = 'kv_store.db';
export const DEFAULT_BLOB_STORE = 'blob_store.db';

export interface BuffDbOptions {
  /** Backend name (`sqlite` by default) or a Backend object. */
  backend?: string | Backend;
  kvStore?: string;
  blobStore?: string;
  durability?: Durability;
  readOnly?: boolean;
}

/** Resolves a path through symlinks (as far as it exists) so one file cannot pose as two. */
function canonicalPath(path: string): string {
  const abs = resolve(path);
  try {
    return realpathSync(abs);
  } catch {
    return abs;
  }
}

export class BuffDb {
  readonly query: QueryStore;

  private constructor(readonly backend: Backend, readonly kv: KvStore, readonly blob: BlobStore) {
    this.query = new QueryStore(backend.name, [...SQL_BACKENDS], {
      kv: { engine: kv.engine, committer: kv.committer as GroupCommitter<unknown> },
      blob: { engine: blob.engine, committer: blob.committer as GroupCommitter<unknown> },
    });
  }

  static async open(options: BuffDbOptions = {}): Promise<BuffDb> {
    const backend = typeof options.backend === 'object'
      ? options.backend
      : await loadBackend(options.backend ?? DEFAULT_BACKEND);
    const kvPath = options.kvStore ?? DEFAULT_KV_STORE;
    const blobPath = options.blobStore ?? DEFAULT_BLOB_STORE;
    if (kvPath !== ':memory:' && canonicalPath(kvPath) === canonicalPath(blobPath)) {
      throw new Error(`the KV store and the BLOB store must be different files (both are ${kvPath})`);
    }
    const openOptions = { durability: options.durability, readOnly: options.readOnly };
    const kv = await backend.openKv(kvPath, openOptions);
    try {
      const blob = await backend.openBlob(blobPath, openOptions);
      return new BuffDb(backend, new KvStore(kv), new BlobStore(blob));
    } catch (err) {
      await kv.close();
      throw err;
    }
  }

  /** Opens only the KV store (the CLI's `kv` commands need nothing else). */
  static async openKv(options: BuffDbOptions = {}): Promise<KvStore> {
    const backend = typeof options.backend === 'object' ? options.backend : await loadBackend(options.backend ?? DEFAULT_BACKEND);
    return new KvStore(await backend.openKv(options.kvStore ?? DEFAULT_KV_STORE, options));
  }

  /** Opens only the BLOB store. */
  static async openBlob(options: BuffDbOptions = {}): Promise<BlobStore> {
    const backend = typeof options.backend === 'object' ? options.backend : await loadBackend(options.backend ?? DEFAULT_BACKEND);
    return new BlobStore(await backend.openBlob(options.blobStore ?? DEFAULT_BLOB_STORE, options));
  }

  /** Finishes queued work, then closes both stores. */
  async close(): Promise<void> {
    await Promise.all([this.kv.close(), this.blob.close()]);
  }
}
