/**
 * The storage-engine interface. A backend only stores and fetches; every buffdb rule (NOT_FOUND,
 * eq/not-eq, update combinations, ordering, group commit, transactions) lives in src/store and is
 * written once for all engines. Adding an engine means one folder under src/backends implementing
 * `Backend`, plus one line in src/backends/index.ts.
 */

import type { SnapshotMode } from './snapshot.js';

export type MaybePromise<T> = T | Promise<T>;

export interface BlobRecord {
  data: Uint8Array;
  metadata: string | null;
}

/** Operations on a key-value store. Only ever called inside `StoreEngine.batch`. */
export interface KvOps {
  get(key: string): MaybePromise<string | undefined>;
  put(key: string, value: string): MaybePromise<void>;
  /** Returns false if the key did not exist. */
  delete(key: string): MaybePromise<boolean>;
}

/** Operations on a blob store. Only ever called inside `StoreEngine.batch`. */
export interface BlobOps {
  get(id: number): MaybePromise<BlobRecord | undefined>;
  /** Stores a new blob under a fresh id: positive, larger than every id ever handed out. */
  insert(data: Uint8Array, metadata: string | null): MaybePromise<number>;
  /**
   * `undefined` leaves a column unchanged; `metadata: null` sets it to null.
   * Returns false if the id did not exist.
   */
  update(id: number, data: Uint8Array | undefined, metadata: string | null | undefined): MaybePromise<boolean>;
  /** Returns false if the id did not exist. */
  delete(id: number): MaybePromise<boolean>;
  /**
   * Optional (transactions): allocates a fresh id exactly as `insert` would — positive, larger than
   * every id handed out — without storing a blob, and durably marks it used so it is never handed
   * out again. A backend without it (or without `insertWithId`) refuses Blob Store inside a
   * transaction with UNIMPLEMENTED; everything else in transactions still works.
   */
  reserveId?(): MaybePromise<number>;
  /** Optional (transactions): stores a blob under an id from `reserveId`, replacing any blob there. */
  insertWithId?(id: number, data: Uint8Array, metadata: string | null): MaybePromise<void>;
}

/** A SQL value as raw SQL sees it. Integers are bigint so 64-bit values survive. */
export type SqlValue = bigint | number | string | Uint8Array | boolean | null;

/** Raw SQL over one store, present only on backends that declare `rawSql`. */
export interface SqlOps {
  /** Rows as they are read. The backend refuses anything that reaches outside its store. */
  query(sql: string): AsyncIterable<SqlValue[]> | Iterable<SqlValue[]>;
  /** Runs a statement that returns no rows and answers the number of rows changed. */
  execute(sql: string): MaybePromise<number>;
  /** Whether `sql` only reads (a reader may then run it beside writes, outside the write batch). */
  isReadOnly(sql: string): MaybePromise<boolean>;
}

export interface StoreEngine<Ops> {
  /**
   * Runs `work` as one atomic unit and resolves only once it is committed with the engine's
   * durability setting. The store never runs two batches of one engine at once.
   */
  batch<T>(work: (ops: Ops) => Promise<T>): Promise<T>;
  /** Present iff the backend declares `rawSql`. Execute runs inside `batch`; query may not. */
  readonly sql?: SqlOps;
  close(): MaybePromise<void>;
}

export interface BackendCapabilities {
  /** The Query service (raw SQL) works on this backend. */
  rawSql: boolean;
  /** The engine has native transactions (buffdb transactions work on every backend). */
  nativeTransactions: boolean;
  /** Online backup: how the engine's snapshot() copies (./snapshot.ts); absent: no backup. */
  snapshot?: SnapshotMode;
}

export type Durability = 'full' | 'normal';

export interface OpenOptions {
  /** `full`: fsync on every commit (survives power loss). `normal`: survives a process crash. */
  durability?: Durability;
  readOnly?: boolean;
}

export interface Backend {
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  openKv(path: string, options?: OpenOptions): Promise<StoreEngine<KvOps>>;
  openBlob(path: string, options?: OpenOptions): Promise<StoreEngine<BlobOps>>;
}
