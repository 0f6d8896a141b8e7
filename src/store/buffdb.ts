/** Opens a backend's KV and BLOB stores together: the unit the server, CLI and library share. */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Backend, Durability } from '../backends/backend.js';
import { SQL_BACKENDS } from '../backends/index.js';
import { DEFAULT_BLOB_STORE, DEFAULT_KV_STORE } from '../defaults.js';
import { BlobStore } from './blob-store.js';
import type { GroupCommitter } from './group-commit.js';
import { KvStore } from './kv-store.js';
import { openBlobStore, openKvStore, resolveBackend } from './open-store.js';
import { QueryStore } from './query-store.js';
import { guardStoreFile } from './store-file-guard.js';
import { type BeginOptions, Transaction, TransactionManager, type TransactionManagerOptions } from './transactions.js';

export { DEFAULT_BLOB_STORE, DEFAULT_KV_STORE };

export interface BuffDbOptions {
  /** Backend name (`sqlite` by default) or a Backend object. */
  backend?: string | Backend;
  kvStore?: string;
  blobStore?: string;
  durability?: Durability;
  readOnly?: boolean;
  /** Transactions begun without a timeout are rolled back after this many ms (default 30 000). */
  transactionTimeoutMs?: number;
  /**
   * A transaction whose client connection closed is rolled back unless its id is used again
   * within this many ms (default 2 000).
   */
  transactionDisconnectGraceMs?: number;
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

/** Names the store an open error came from (keeps the engine's error code for mapping). */
function inContext(err: unknown, which: string, path: string): unknown {
  if (err instanceof Error) err.message = `cannot open the ${which} store ${path}: ${err.message}`;
  return err;
}

export class BuffDb {
  readonly query: QueryStore;
  /** Transactions spanning both stores (docs/transactions.md). */
  readonly transactions: TransactionManager;

  private constructor(
    readonly backend: Backend,
    readonly kv: KvStore,
    readonly blob: BlobStore,
    transactionOptions: TransactionManagerOptions = {},
  ) {
    this.transactions = new TransactionManager(kv, blob, transactionOptions);
    kv.transactions = this.transactions;
    blob.transactions = this.transactions;
    this.query = new QueryStore(backend.name, [...SQL_BACKENDS], {
      kv: { engine: kv.engine, committer: kv.committer as GroupCommitter<unknown> },
      blob: { engine: blob.engine, committer: blob.committer as GroupCommitter<unknown> },
    });
  }

  static async open(options: BuffDbOptions = {}): Promise<BuffDb> {
    const backend = await resolveBackend(options.backend);
    const kvPath = options.kvStore ?? DEFAULT_KV_STORE;
    const blobPath = options.blobStore ?? DEFAULT_BLOB_STORE;
    if (kvPath !== ':memory:' && canonicalPath(kvPath) === canonicalPath(blobPath)) {
      throw new Error(`the KV store and the BLOB store must be different files (both are ${kvPath})`);
    }
    const openOptions = { durability: options.durability, readOnly: options.readOnly };
    const kv = guardStoreFile(
      await backend.openKv(kvPath, openOptions).catch((err: unknown) => {
        throw inContext(err, 'KV', kvPath);
      }),
      kvPath,
    );
    let db: BuffDb;
    try {
      const blob = guardStoreFile(
        await backend.openBlob(blobPath, openOptions).catch((err: unknown) => {
          throw inContext(err, 'BLOB', blobPath);
        }),
        blobPath,
      );
      db = new BuffDb(backend, new KvStore(kv), new BlobStore(blob), {
        kvPath,
        defaultTimeoutMs: options.transactionTimeoutMs,
        disconnectGraceMs: options.transactionDisconnectGraceMs,
      });
    } catch (err) {
      await kv.close();
      throw err;
    }
    // Finish any transaction commit a crash interrupted between the two stores (its commit log).
    if (!options.readOnly) {
      try {
        await db.transactions.recover();
      } catch (err) {
        await db.close();
        throw new Error(`cannot complete a transaction commit interrupted by a crash: ${(err as Error).message}`);
      }
    }
    return db;
  }

  /** Begins a transaction spanning both stores; finish it with commit() or rollback(). */
  beginTransaction(options: BeginOptions = {}): Transaction {
    return new Transaction(this.transactions, this.transactions.begin(options), options.readOnly ?? false);
  }

  /**
   * Runs `work` in a transaction: commits when it resolves (rejecting with ABORTED if a
   * concurrent commit conflicted), rolls back when it throws.
   */
  async transaction<T>(work: (tx: Transaction) => Promise<T>, options: BeginOptions = {}): Promise<T> {
    const tx = this.beginTransaction(options);
    let result: T;
    try {
      result = await work(tx);
    } catch (err) {
      try {
        await tx.rollback();
      } catch {
        // already finished (expired, …): nothing to roll back
      }
      throw err;
    }
    await tx.commit();
    return result;
  }

  /** Opens only the KV store (the CLI's `kv` commands need nothing else). */
  static openKv(options: BuffDbOptions = {}): Promise<KvStore> {
    return openKvStore(options.backend, options.kvStore, options);
  }

  /** Opens only the BLOB store. */
  static openBlob(options: BuffDbOptions = {}): Promise<BlobStore> {
    return openBlobStore(options.backend, options.blobStore, options);
  }

  /** Finishes queued work, then closes both stores. */
  async close(): Promise<void> {
    this.transactions.close();
    await Promise.all([this.kv.close(), this.blob.close()]);
  }
}
