/** Opens a backend's KV and BLOB stores together: the unit the server, CLI and library share. */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Backend, Durability, PgDialect } from '../backends/backend.js';
import { SQL_BACKENDS } from '../backends/index.js';
import {
  DEFAULT_AUTO_COMPACT_REVISIONS,
  DEFAULT_BLOB_STORE,
  DEFAULT_KV_STORE,
  DEFAULT_MAX_MESSAGE_SIZE,
} from '../defaults.js';
import type { BlobStore } from './blob/blob-store.js';
import type { KvLimits } from './kv/kv-api.js';
import type { AutoCompact, KvStore } from './kv/kv-store.js';
import { openBlobStore, openKvStore, resolveBackend } from './open-store.js';
import { QueryStore } from './query-store.js';
import type { BlobRequests, KvRequests } from './requests.js';
import { fileFingerprint } from './sync/identity.js';
import { SyncStore, type SyncStoreOptions } from './sync/sync-store.js';
import { Committer } from './transactions/commit.js';
import { type CommitLog, FileCommitLog } from './transactions/commit-log.js';
import { StoreCommitLog } from './transactions/commit-log-store.js';
import { type BeginOptions, TransactionManager } from './transactions/manager.js';
import { Transaction } from './transactions/transaction.js';

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
  /** History kept (default: the last 100 000 revisions); `false`: keep everything until compacted. */
  autoCompact?: AutoCompact | false;
  /** etcd limits (operations per Txn). */
  limits?: Partial<KvLimits>;
  /** Lease expiry and auto-compaction in the background (default true; one-shot tools turn it off). */
  background?: boolean;
  /** The server's message limit: Get answers a blob only if it fits (default 64 MiB). */
  maxMessageSize?: number;
  /** How long an unfinished resumable upload is kept after its last call, in ms (default 1 h). */
  uploadTtlMs?: number;
  /** Stores on a database server: wait while it is unreachable at open instead of failing. */
  waitForStore?: boolean;
  /** Raw SQL statements are cancelled after this many ms where the engine can (default 30 000). */
  sqlTimeoutMs?: number;
  /** PostgreSQL-compatible server (postgres backend only). */
  pgDialect?: PgDialect;
  /**
   * Names this server in transaction ids, so another server given one can say where it lives
   * (e.g. its gRPC address). Default: host name and process id.
   */
  serverName?: string;
  /** Sync (docs/sync.md): history retention for peers, and whether this store is an edge. */
  sync?: SyncStoreOptions;
}

/** Room left in a Get answer for its framing and the metadata. */
const GET_OVERHEAD = 64 * 1024;

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

  private constructor(
    readonly backend: Backend,
    readonly kv: KvStore,
    readonly blob: BlobStore,
    /** Transactions spanning both stores (docs/transactions.md). */
    readonly transactions: TransactionManager,
    /** The KV store's path as given (its size on disk is etcd's Status.dbSize). */
    readonly kvPath: string,
    /** Edge ⇄ hub sync over the KV store (docs/sync.md). */
    readonly sync: SyncStore,
  ) {
    this.query = new QueryStore(backend.name, SQL_BACKENDS, kv, blob);
  }

  static async open(options: BuffDbOptions = {}): Promise<BuffDb> {
    const backend = await resolveBackend(options.backend);
    const kvPath = options.kvStore ?? DEFAULT_KV_STORE;
    const blobPath = options.blobStore ?? DEFAULT_BLOB_STORE;
    const urls = backend.capabilities.storeLocation === 'url';
    // Stores on a database server may share a database (each keeps to its own schema).
    if (!urls && kvPath !== ':memory:' && canonicalPath(kvPath) === canonicalPath(blobPath)) {
      throw new Error(`the KV store and the BLOB store must be different files (both are ${kvPath})`);
    }
    const openOptions = {
      durability: options.durability,
      readOnly: options.readOnly,
      waitForStore: options.waitForStore,
      sqlTimeoutMs: options.sqlTimeoutMs,
      pgDialect: options.pgDialect,
    };
    const kv = await openKvStore(backend, kvPath, {
      ...openOptions,
      autoCompact:
        options.autoCompact === false
          ? undefined
          : (options.autoCompact ?? { revisions: DEFAULT_AUTO_COMPACT_REVISIONS }),
      limits: options.limits,
      background: options.background ?? true,
      fingerprint: urls || kvPath === ':memory:' ? undefined : () => fileFingerprint(kvPath),
    });
    let blob: BlobStore;
    try {
      blob = await openBlobStore(backend, blobPath, {
        ...openOptions,
        maxGetBytes: (options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE) - GET_OVERHEAD,
        uploadTtlMs: options.uploadTtlMs,
        background: options.background ?? true,
        // Blob writes are stamped by the KV store's sync identity (docs/sync.md "Blobs").
        stamper: kv.identity,
      });
    } catch (err) {
      await kv.close();
      throw err;
    }
    const log: CommitLog | undefined = urls
      ? new StoreCommitLog(kv, blob)
      : kvPath === ':memory:'
        ? undefined
        : new FileCommitLog(kvPath);
    const committer = new Committer(kv, blob, log);
    const transactions = new TransactionManager(kv, blob, committer, {
      defaultTimeoutMs: options.transactionTimeoutMs,
      disconnectGraceMs: options.transactionDisconnectGraceMs,
      serverName: options.serverName,
    });
    let sync: SyncStore;
    try {
      sync = await SyncStore.open(kv, options.sync);
    } catch (err) {
      await Promise.all([kv.close(), blob.close()]);
      throw err;
    }
    if ((options.background ?? true) && !options.readOnly) sync.startUpkeep();
    const db = new BuffDb(backend, kv, blob, transactions, kvPath, sync);
    // Finish any transaction commit a crash interrupted between the two stores (its commit log).
    if (!options.readOnly) {
      try {
        await committer.recover();
      } catch (err) {
        await db.close();
        throw new Error(`cannot complete a transaction commit interrupted by a crash: ${(err as Error).message}`);
      }
    }
    return db;
  }

  /** Where a KV request goes: the store, or the transaction it names. */
  kvFor(txId: string | undefined): KvRequests {
    return txId ? this.transactions.kvRequests(txId) : this.kv;
  }

  /** Where a BLOB request goes: the store, or the transaction it names. */
  blobFor(txId: string | undefined): BlobRequests {
    return txId ? this.transactions.blobRequests(txId) : this.blob;
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
  static async openKv(options: BuffDbOptions = {}): Promise<KvStore> {
    return openKvStore(await resolveBackend(options.backend), options.kvStore, {
      durability: options.durability,
      readOnly: options.readOnly,
      limits: options.limits,
      background: false,
    });
  }

  /** Opens only the BLOB store. */
  static async openBlob(options: BuffDbOptions = {}): Promise<BlobStore> {
    return openBlobStore(await resolveBackend(options.backend), options.blobStore, options);
  }

  /** Finishes queued work, then closes both stores. */
  async close(): Promise<void> {
    this.transactions.close();
    this.sync.stop();
    await Promise.all([this.kv.close(), this.blob.close()]);
  }
}
