/**
 * The storage-engine interface. A backend only stores and fetches; every buffdb rule (NOT_FOUND,
 * revisions and history, leases, ordering, group commit, transactions) lives in src/store and is
 * written once for all engines. Adding an engine means one folder under src/backends implementing
 * `Backend`, one entry in src/backends/index.ts, and passing the conformance suite
 * (src/conformance).
 *
 * Keys and values are bytes (Buffer). Keys sort by their bytes (memcmp order): every range is in
 * that order on every engine.
 */
import type { StoreError } from '../errors.js';
import type { SnapshotMode } from './snapshot.js';

export type MaybePromise<T> = T | Promise<T>;

/** A key's current state: etcd's mvccpb.KeyValue. */
export interface KvRecord {
  key: Buffer;
  value: Buffer;
  /** Revision of the write that created the key (since its last delete). */
  createRev: number;
  /** Revision of the last write to the key. */
  modRev: number;
  /** Writes since creation: 1 for a new key; reset by a delete. */
  version: number;
  /** Lease the key is attached to; 0n for none. */
  lease: bigint;
}

/** `[start, end)` in key byte order; `end` undefined: to the last key. */
export interface RangeQuery {
  start: Buffer;
  end: Buffer | undefined;
  /** At most this many results (a positive number). */
  limit: number;
  /** Largest key first. */
  reverse: boolean;
}

/** The current key-value state. Only ever called inside `StoreEngine.batch`. */
export interface KvOps {
  get(key: Buffer): MaybePromise<KvRecord | undefined>;
  /**
   * Optional, for engines that can read a value as text cheaper than as bytes: the value of `key`
   * as text when it is valid UTF-8; undefined when the key does not exist; null when the engine
   * cannot tell (the store then reads the record with `get`). `key` is a well-formed string: its
   * UTF-8 bytes are the key (bound as is, no Buffer per read).
   */
  getText?(key: string): MaybePromise<string | null | undefined>;
  /**
   * Optional, for engines that can read one column of a record without its value: the revision of
   * the key's last write (`get(key).modRev`), undefined when the key does not exist. History
   * compaction asks it for each dropped event; without it the store reads the record with `get`.
   */
  modRevOf?(key: Buffer): MaybePromise<number | undefined>;
  /** Creates or replaces the record of `record.key`. */
  put(record: KvRecord): MaybePromise<void>;
  delete(key: Buffer): MaybePromise<void>;
  /** Records in the range, in order. `keysOnly`: `value` may be empty (saves reading it). */
  range(query: RangeQuery, keysOnly: boolean): MaybePromise<KvRecord[]>;
  /** Number of keys in `[start, end)`. */
  count(start: Buffer, end: Buffer | undefined): MaybePromise<number>;
}

/**
 * Named ordered byte maps, for what the store keeps beside the data (history, leases, chunks, …).
 * Keys sort by bytes. SQL engines keep each map in a table of its own that raw SQL may read but
 * never write. The names a store uses are fixed (KV_MAPS, BLOB_MAPS), so an engine can create
 * them when it opens.
 */
export interface MapOps {
  get(map: MapName, key: Buffer): MaybePromise<Buffer | undefined>;
  put(map: MapName, key: Buffer, value: Buffer): MaybePromise<void>;
  delete(map: MapName, key: Buffer): MaybePromise<void>;
  range(map: MapName, query: RangeQuery): MaybePromise<[key: Buffer, value: Buffer][]>;
  /**
   * Optional, for engines that delete a key range cheaper than key by key (compaction drops history
   * a page at a time): deletes every key in `[start, end)`. Without it the store deletes each key.
   */
  deleteRange?(map: MapName, start: Buffer, end: Buffer): MaybePromise<void>;
  /**
   * Optional, for engines that can cut a value before handing it over: `range`, with each value cut
   * to its first `bytes` bytes (a shorter value whole). History compaction reads only the head of
   * each event it drops; without it the store reads whole values.
   */
  rangeHeads?(map: MapName, query: RangeQuery, bytes: number): MaybePromise<[key: Buffer, head: Buffer][]>;
}

/** Maps kept in the KV store file. */
export const KV_MAPS = ['meta', 'history', 'lease', 'lease_key', 'sync_stamp', 'sync_peer', 'sync_conflict'] as const;
/** Maps kept in the BLOB store file. */
export const BLOB_MAPS = ['meta', 'chunk', 'large', 'upload', 'blob_log', 'blob_stamp'] as const;
export type MapName = (typeof KV_MAPS)[number] | (typeof BLOB_MAPS)[number];

export interface BlobRecord {
  data: Uint8Array;
  metadata: string | null;
}

/** The blob table (`blob(id, data, metadata)` to raw SQL). Only ever called inside `StoreEngine.batch`. */
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
   * Allocates a fresh id exactly as `insert` would — positive, larger than every id handed out —
   * without storing a blob, and durably marks it used so it is never handed out again.
   */
  reserveId(): MaybePromise<number>;
  /**
   * Stores a blob under an id from `reserveId` (or copied from another store), replacing any blob
   * there; later ids handed out are larger.
   */
  insertWithId(id: number, data: Uint8Array, metadata: string | null): MaybePromise<void>;
  /**
   * The ids of the blobs stored after `after`, ascending, at most `limit` (`buffdb migrate`, and
   * the sync backfill of blobs stored before a store took part in sync, page by page).
   */
  ids(after: number, limit: number): MaybePromise<number[]>;
}

export type KvEngineOps = KvOps & { readonly maps: MapOps };
export type BlobEngineOps = BlobOps & { readonly maps: MapOps };

/** A SQL value as raw SQL sees it. Integers are bigint so 64-bit values survive. */
export type SqlValue = bigint | number | string | Uint8Array | boolean | null;

/** Raw SQL over one store, present only on backends whose capabilities name a SQL dialect. */
export interface SqlOps {
  /** Rows as they are read. The backend refuses anything that reaches outside its store. */
  query(sql: string): AsyncIterable<SqlValue[]> | Iterable<SqlValue[]>;
  /** Runs a statement that returns no rows and answers the number of rows changed. */
  execute(sql: string): MaybePromise<number>;
  /** Whether `sql` only reads (a reader may then run it beside writes, outside the write batch). */
  isReadOnly(sql: string): MaybePromise<boolean>;
  /**
   * Writes raw SQL made to the `kv` table during the last `execute`/writing `query` (engines whose
   * capabilities say `sqlKvWrites`): the store turns them into a revision, so watchers see them.
   * Drained by the call.
   */
  takeKvWrites?(): MaybePromise<{ key: Buffer; value: Buffer | null }[]>;
}

export interface StoreEngine<Ops> {
  /**
   * Runs `work` as one atomic unit and resolves only once it is committed with the engine's
   * durability setting. The store never runs two batches of one engine at once. Errors thrown by
   * the engine inside `work` abandon the batch (nothing of it is applied). An engine may run
   * `work` again after abandoning an attempt (a serialization failure): `work` starts afresh.
   * `keys`: keys (UTF-8) the batch will read (KV stores), a hint an engine may use to fetch them at once.
   */
  batch<T>(work: (ops: Ops) => Promise<T>, keys?: readonly string[]): Promise<T>;
  /** Present iff the backend declares a SQL dialect. Execute runs inside `batch`; query may not. */
  readonly sql?: SqlOps;
  /** The engine's own errors as a status a client can act on (disk full, busy, damaged, …). */
  mapError(err: unknown): StoreError;
  /**
   * Optional, for `multiProcess` engines that can learn cheaply that another process committed
   * (e.g. PostgreSQL LISTEN/NOTIFY): calls `listener` then; returns an unsubscribe function. The
   * store then reads the new revisions at once instead of at its next poll.
   */
  onForeignCommit?(listener: () => void): () => void;
  close(): MaybePromise<void>;
}

export interface BackendCapabilities {
  /** The SQL dialect of the Query service on this backend, or null when it has no raw SQL. */
  sqlDialect: 'sqlite' | 'duckdb' | 'postgres' | null;
  /** Raw SQL may write the `kv` table (its writes become revisions); otherwise they are refused. */
  sqlKvWrites: boolean;
  /**
   * Other processes may write the same store at the same time (the CLI beside a running
   * server): the store re-reads its counters in every batch and replays foreign history to watchers.
   */
  multiProcess: boolean;
  /** `:memory:` works as a store path. */
  inMemory: boolean;
  /** Online backup: how the engine's snapshot() copies (./snapshot.ts); absent: no backup. */
  snapshot?: SnapshotMode;
  /**
   * What a store location is: a file path (default), or a connection URL of a database server
   * (postgres://…): then the KV and BLOB stores may name the same database, nothing is kept in
   * files beside the store (see test/helpers/locations.ts for fresh locations in tests).
   */
  storeLocation?: 'file' | 'url';
  /**
   * The largest blob (in bytes) the store accepts on this engine, or null: no limit beyond
   * storage. Set where the engine itself cannot hold larger ones (DuckDB keeps native memory for
   * the blob bytes written: docs/backends.md); the store refuses larger blobs with RESOURCE_EXHAUSTED.
   */
  maxBlobBytes: number | null;
}

export type Durability = 'full' | 'normal';

export interface OpenOptions {
  /** `full`: fsync on every commit (survives power loss). `normal`: survives a process crash. */
  durability?: Durability;
  readOnly?: boolean;
  /** Network stores: wait (retrying) while the database is unreachable at open, instead of failing. */
  waitForStore?: boolean;
  /** Raw SQL statements running longer than this are cancelled (engines that can; default 30 000). */
  sqlTimeoutMs?: number;
  /** PostgreSQL-compatible servers whose behaviour differs (postgres backend only; default `postgres`). */
  pgDialect?: PgDialect;
}

export const PG_DIALECTS = ['postgres', 'cockroach', 'yugabyte'] as const;
export type PgDialect = (typeof PG_DIALECTS)[number];

export interface Backend {
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  openKv(path: string, options?: OpenOptions): Promise<StoreEngine<KvEngineOps>>;
  openBlob(path: string, options?: OpenOptions): Promise<StoreEngine<BlobEngineOps>>;
  /**
   * Checks a store path given on the command line before anything is opened, so a mistake gets a
   * sentence naming the path (the rules are the engine's: which files it needs beside the store).
   * Throws a StoreError.
   */
  checkPath?(path: string, label: string, readOnly: boolean): void;
}
