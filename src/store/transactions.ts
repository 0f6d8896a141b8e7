/**
 * Transactions across the KV and BLOB stores, written once in the store layer for every backend.
 *
 * Optimistic concurrency control (see docs/transactions.md):
 * - a transaction keeps its writes in an overlay (key → value | deleted, id → record | deleted)
 *   that nobody else sees; its own reads see the overlay first;
 * - every key or blob it touches is read once from the store and remembered (the read set, which
 *   includes the keys it writes) — later reads of it inside the transaction answer that value;
 * - commit re-reads the read set inside the commit batch and applies the overlay only if nothing
 *   it saw has changed since; otherwise the commit is ABORTED and nothing is applied. Every commit
 *   runs inside one KV engine batch (the KV engine never runs two batches at once), so commits are
 *   totally ordered: serialisable, and never a lost update.
 * - nothing is locked: plain requests are never blocked by open transactions.
 * - a commit that writes both stores first writes its final writes to a commit log beside the KV
 *   store, then commits the BLOB batch, then the KV batch, then removes the log; a log left by a
 *   crash is replayed when the stores next open, so such a commit lands entirely or not at all.
 */
import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { BlobOps, BlobRecord, KvOps } from '../backends/backend.js';
import { type BlobId, type BlobStore, type BlobUpdate, toLocalId } from './blob-store.js';
import {
  failedPrecondition,
  idNotFound,
  invalidArgument,
  keyNotFound,
  StoreError,
  status,
  toStoreError,
} from './errors.js';
import type { Done, Sequence } from './group-commit.js';
import type { KvStore } from './kv-store.js';

/** Server default when BeginTransaction has no timeout_ms. */
export const DEFAULT_TRANSACTION_TIMEOUT_MS = 30_000;
/** Finished ids remembered for a precise error message ("committed", "expired", …). */
const REMEMBERED_FINISHED = 100_000;
/**
 * After the connection that began a transaction closes, the transaction is rolled back unless its
 * id is used again within this many ms (clients that open a connection per call keep working).
 */
export const DEFAULT_DISCONNECT_GRACE_MS = 2_000;
/** Open transactions at once; beyond, BeginTransaction is RESOURCE_EXHAUSTED. */
export const MAX_OPEN_TRANSACTIONS = 10_000;

export interface BeginOptions {
  readOnly?: boolean;
  /** Rolled back if not committed within this many ms (default: the manager's, 30 s). */
  timeoutMs?: number;
}

/** How KvStore/BlobStore hand requests that carry a transaction id to the transaction manager. */
export interface TransactionRouter {
  kvGet(txId: string, key: string, done: Done<string>, seq?: Sequence): void;
  kvSet(txId: string, key: string, value: string, done: Done<void>, seq?: Sequence): void;
  kvDelete(txId: string, key: string, done: Done<void>, seq?: Sequence): void;
  blobGet(txId: string, id: BlobId, done: Done<BlobRecord>, seq?: Sequence): void;
  blobStore(txId: string, bytes: Uint8Array, metadata: string | undefined, done: Done<number>, seq?: Sequence): void;
  blobUpdate(txId: string, id: BlobId, update: BlobUpdate, done: Done<void>, seq?: Sequence): void;
  blobDelete(txId: string, id: BlobId, done: Done<void>, seq?: Sequence): void;
}

type Ending = 'committed' | 'rolled back' | 'expired' | 'disconnected' | 'aborted' | 'failed' | 'closed';

interface BlobWrite {
  /** null: deleted. */
  record: BlobRecord | null;
  /** Stored by this transaction under a reserved id (not in the store yet). */
  isNew: boolean;
}

class Tx {
  state: 'open' | 'committing' = 'open';
  timer: NodeJS.Timeout | undefined;
  /** Operations on this transaction run one after another, in arrival order. */
  tail: Promise<void> = Promise.resolve();
  /** Committed value seen at first touch (undefined: absent) — validated at commit. */
  readonly kvSeen = new Map<string, string | undefined>();
  /** null: deleted. */
  readonly kvWrites = new Map<string, string | null>();
  readonly blobSeen = new Map<number, BlobRecord | undefined>();
  readonly blobWrites = new Map<number, BlobWrite>();
  connection: EventEmitter | undefined;
  /** Set once the connection that began it has closed: rolls it back unless the id is used again. */
  orphanTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    readonly readOnly: boolean,
    readonly timeoutMs: number,
  ) {}
}

/** What a commit writes; also the commit log's content. */
interface WriteSet {
  kv: [string, string | null][];
  blob: [number, BlobRecord | null, boolean][];
}

interface LogFile {
  version: 1;
  transactionId: string;
  kv: [string, string | null][];
  blob: [number, { data: string; metadata: string | null } | null, boolean][];
}

const copyBytes = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes);

function sameRecord(a: BlobRecord | undefined, b: BlobRecord | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.metadata !== b.metadata || a.data.byteLength !== b.data.byteLength) return false;
  return Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(
    Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength),
  );
}

const conflict = (txId: string, what: string): StoreError =>
  new StoreError(
    status.ABORTED,
    `transaction ${JSON.stringify(txId)} aborted: ${what} was changed by another writer after this transaction ` +
      'read or wrote it; nothing of the transaction was applied — retry it',
  );

export interface TransactionManagerOptions {
  defaultTimeoutMs?: number;
  /** See DEFAULT_DISCONNECT_GRACE_MS. */
  disconnectGraceMs?: number;
  /**
   * The KV store's path: commit logs for commits that write both stores are kept beside it.
   * Undefined (in-memory stores): no log (then a crash between the two stores' commits can
   * leave half a transaction — there is nothing left after a crash anyway).
   */
  kvPath?: string;
}

export class TransactionManager implements TransactionRouter {
  readonly defaultTimeoutMs: number;
  readonly disconnectGraceMs: number;
  private readonly open = new Map<string, Tx>();
  private readonly finished = new Map<string, { ending: Ending; timeoutMs: number }>();
  private readonly byConnection = new WeakMap<EventEmitter, Set<Tx>>();
  /** Streams where a transactional request failed: their later transactional requests are not applied. */
  private readonly failedStreams = new WeakSet<Sequence>();
  private readonly logDir: string | undefined;
  private readonly logPrefix: string | undefined;
  private closed = false;

  constructor(
    private readonly kv: KvStore,
    private readonly blob: BlobStore,
    options: TransactionManagerOptions = {},
  ) {
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_TRANSACTION_TIMEOUT_MS;
    this.disconnectGraceMs = options.disconnectGraceMs ?? DEFAULT_DISCONNECT_GRACE_MS;
    if (options.kvPath && options.kvPath !== ':memory:') {
      this.logDir = dirname(options.kvPath);
      this.logPrefix = `${basename(options.kvPath)}.txlog-`;
    }
  }

  /** Number of open transactions. */
  get openCount(): number {
    return this.open.size;
  }

  // ---------------------------------------------------------------- lifecycle

  begin(options: BeginOptions = {}): string {
    if (this.closed) throw new StoreError(status.UNAVAILABLE, 'the store is shutting down');
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 2 ** 31 - 1) {
      throw invalidArgument(
        `timeout_ms must be a positive number of milliseconds (at most ${2 ** 31 - 1}), got ${timeoutMs}`,
      );
    }
    if (this.open.size >= MAX_OPEN_TRANSACTIONS) {
      throw new StoreError(
        status.RESOURCE_EXHAUSTED,
        `too many open transactions (${MAX_OPEN_TRANSACTIONS}); commit or roll back some, or let them time out`,
      );
    }
    const tx = new Tx(randomUUID(), options.readOnly ?? false, timeoutMs);
    tx.timer = setTimeout(() => this.end(tx, 'expired'), timeoutMs);
    tx.timer.unref();
    this.open.set(tx.id, tx);
    return tx.id;
  }

  /** Whether `txId` is open (for tools and tests; does not count as a use). */
  isOpen(txId: string): boolean {
    return this.open.has(txId);
  }

  /**
   * Binds the transaction to `connection` (the client's HTTP/2 session): once it closes, the
   * transaction is rolled back unless its id is used again within the disconnect grace period
   * (which each use restarts) — a client that disconnects loses its open transactions, while a
   * client that opens one connection per call keeps working.
   */
  bindToConnection(txId: string, connection: EventEmitter & { closed?: boolean; destroyed?: boolean }): void {
    const tx = this.open.get(txId);
    if (!tx) return;
    if (connection.closed || connection.destroyed) {
      this.orphan(tx);
      return;
    }
    tx.connection = connection;
    let set = this.byConnection.get(connection);
    if (!set) {
      const txs = new Set<Tx>();
      set = txs;
      this.byConnection.set(connection, txs);
      connection.once('close', () => {
        for (const t of [...txs]) if (t.state === 'open') this.orphan(t);
        txs.clear();
      });
    }
    set.add(tx);
  }

  private orphan(tx: Tx): void {
    tx.connection = undefined;
    tx.orphanTimer = setTimeout(() => {
      if (tx.state === 'open') this.end(tx, 'disconnected');
    }, this.disconnectGraceMs);
    tx.orphanTimer.unref();
  }

  /** Discards the transaction's writes. */
  rollback(txId: string): void {
    const tx = this.lookup(txId);
    this.end(tx, 'rolled back');
  }

  /**
   * Commits: resolves once every write is durable in both stores. Rejects with ABORTED (nothing
   * applied) if something the transaction read or wrote was changed by someone else meanwhile.
   */
  async commit(txId: string): Promise<void> {
    const tx = this.lookup(txId);
    tx.state = 'committing';
    clearTimeout(tx.timer);
    clearTimeout(tx.orphanTimer);
    // Operations that arrived before the commit finish first.
    await tx.tail;
    try {
      await this.apply(tx);
    } catch (err) {
      const e = toStoreError(err);
      this.end(tx, e.code === status.ABORTED ? 'aborted' : 'failed');
      throw e;
    }
    this.end(tx, 'committed');
  }

  /** Rolls back every open transaction (the stores are closing). */
  close(): void {
    this.closed = true;
    for (const tx of [...this.open.values()]) if (tx.state === 'open') this.end(tx, 'closed');
  }

  private end(tx: Tx, ending: Ending): void {
    clearTimeout(tx.timer);
    clearTimeout(tx.orphanTimer);
    if (this.open.get(tx.id) !== tx) return;
    this.open.delete(tx.id);
    tx.kvWrites.clear();
    tx.blobWrites.clear();
    tx.kvSeen.clear();
    tx.blobSeen.clear();
    if (tx.connection) this.byConnection.get(tx.connection)?.delete(tx);
    this.finished.set(tx.id, { ending, timeoutMs: tx.timeoutMs });
    if (this.finished.size > REMEMBERED_FINISHED) {
      this.finished.delete(this.finished.keys().next().value!);
    }
  }

  /** The open transaction, or a FAILED_PRECONDITION saying why there is none. */
  private lookup(txId: string): Tx {
    const tx = this.open.get(txId);
    if (tx?.state === 'open') {
      // A use: a transaction whose connection closed lives on while it is being used.
      tx.orphanTimer?.refresh();
      return tx;
    }
    const id = JSON.stringify(txId);
    if (tx) return fail(`transaction ${id} is being committed; no more operations can join it`);
    const done = this.finished.get(txId);
    switch (done?.ending) {
      case undefined:
        return fail(
          `unknown transaction id ${id}: it was not begun on this server (or finished long ago); ` +
            'begin one with BeginTransaction',
        );
      case 'committed':
        return fail(`transaction ${id} is already committed; begin a new one for more work`);
      case 'rolled back':
        return fail(`transaction ${id} was rolled back; begin a new one`);
      case 'expired':
        return fail(
          `transaction ${id} expired: it was not committed within its timeout of ${done.timeoutMs} ms and ` +
            'was rolled back; begin a new one (BeginTransaction timeout_ms sets the limit)',
        );
      case 'disconnected':
        return fail(`transaction ${id} was rolled back because the client that began it disconnected`);
      case 'aborted':
        return fail(`transaction ${id} was aborted by a conflicting write and rolled back; begin a new one`);
      case 'failed':
        return fail(`transaction ${id} failed to commit; begin a new one`);
      case 'closed':
        return fail(`transaction ${id} was rolled back because the server shut down`);
    }
  }

  // ---------------------------------------------------------------- operations

  /** Queues `work` on the transaction, after its earlier operations; answers through `done`. */
  private enqueue<R>(
    txId: string,
    writes: boolean,
    seq: Sequence | undefined,
    done: Done<R>,
    work: (tx: Tx) => Promise<R>,
  ): void {
    let tx: Tx;
    try {
      tx = this.lookup(txId);
      if (writes && tx.readOnly) {
        throw failedPrecondition(`transaction ${JSON.stringify(txId)} is read-only: it cannot write`);
      }
    } catch (err) {
      if (seq) this.failedStreams.add(seq);
      done(toStoreError(err));
      return;
    }
    tx.tail = tx.tail.then(async () => {
      // As in the group committer: after a failure in its stream, later requests are not applied
      // (and not answered: the stream ends at the failure).
      if (seq && (seq.failed || this.failedStreams.has(seq))) return;
      let result: R;
      try {
        if (this.open.get(tx.id) !== tx) this.lookup(tx.id);
        result = await work(tx);
      } catch (err) {
        if (seq) this.failedStreams.add(seq);
        done(toStoreError(err));
        return;
      }
      done(null, result);
    });
  }

  /** The committed value, remembered at first touch. */
  private seenKv(tx: Tx, key: string): Promise<string | undefined> {
    return firstSeen(tx.kvSeen, key, () => this.kv.committer.run((ops) => ops.get(key)));
  }

  /** The value as this transaction sees it. */
  private async currentKv(tx: Tx, key: string): Promise<string | undefined> {
    const written = tx.kvWrites.get(key);
    if (written !== undefined) return written ?? undefined;
    return this.seenKv(tx, key);
  }

  private seenBlob(tx: Tx, id: number): Promise<BlobRecord | undefined> {
    return firstSeen(tx.blobSeen, id, () => this.blob.committer.run((ops) => ops.get(id)));
  }

  private async currentBlob(tx: Tx, id: number): Promise<BlobRecord | undefined> {
    const written = tx.blobWrites.get(id);
    if (written !== undefined) return written.record ?? undefined;
    return this.seenBlob(tx, id);
  }

  kvGet(txId: string, key: string, done: Done<string>, seq?: Sequence): void {
    this.enqueue(txId, false, seq, done, async (tx) => {
      const value = await this.currentKv(tx, key);
      if (value === undefined) throw keyNotFound(key);
      return value;
    });
  }

  kvSet(txId: string, key: string, value: string, done: Done<void>, seq?: Sequence): void {
    this.enqueue(txId, true, seq, done, async (tx) => {
      // Remember what was there: a concurrent commit to this key aborts this transaction.
      await this.seenKv(tx, key);
      tx.kvWrites.set(key, value);
    });
  }

  kvDelete(txId: string, key: string, done: Done<void>, seq?: Sequence): void {
    this.enqueue(txId, true, seq, done, async (tx) => {
      if ((await this.currentKv(tx, key)) === undefined) throw keyNotFound(key);
      tx.kvWrites.set(key, null);
    });
  }

  blobGet(txId: string, id: BlobId, done: Done<BlobRecord>, seq?: Sequence): void {
    this.enqueue(txId, false, seq, done, async (tx) => {
      const local = toLocalId(id);
      const record = local === undefined ? undefined : await this.currentBlob(tx, local);
      if (record === undefined) throw idNotFound(id);
      return record;
    });
  }

  blobStore(txId: string, bytes: Uint8Array, metadata: string | undefined, done: Done<number>, seq?: Sequence): void {
    const data = copyBytes(bytes);
    this.enqueue(txId, true, seq, done, async (tx) => {
      // The id is reserved now (so the client gets it now) and the blob stored at commit.
      const id = await this.blob.committer.run((ops) => {
        if (!ops.reserveId || !ops.insertWithId) {
          throw new StoreError(
            status.UNIMPLEMENTED,
            'Blob Store inside a transaction is not supported by this ' +
              'backend (it cannot reserve blob ids); store the blob outside the transaction or use the sqlite backend',
          );
        }
        return ops.reserveId();
      });
      tx.blobWrites.set(id, { record: { data, metadata: metadata ?? null }, isNew: true });
      return id;
    });
  }

  blobUpdate(txId: string, id: BlobId, update: BlobUpdate, done: Done<void>, seq?: Sequence): void {
    const bytes = update.bytes === undefined ? undefined : copyBytes(update.bytes);
    const metadata = update.shouldUpdateMetadata ? (update.metadata ?? null) : undefined;
    // As outside transactions: setting metadata to null needs no existing blob.
    const mayBeMissing = bytes === undefined && metadata === null;
    this.enqueue(txId, true, seq, done, async (tx) => {
      const local = toLocalId(id);
      const current = local === undefined ? undefined : await this.currentBlob(tx, local);
      if (current === undefined || local === undefined) {
        if (mayBeMissing) return;
        throw idNotFound(id);
      }
      tx.blobWrites.set(local, {
        record: { data: bytes ?? current.data, metadata: metadata === undefined ? current.metadata : metadata },
        isNew: tx.blobWrites.get(local)?.isNew ?? false,
      });
    });
  }

  blobDelete(txId: string, id: BlobId, done: Done<void>, seq?: Sequence): void {
    this.enqueue(txId, true, seq, done, async (tx) => {
      const local = toLocalId(id);
      const current = local === undefined ? undefined : await this.currentBlob(tx, local);
      if (current === undefined || local === undefined) throw idNotFound(id);
      tx.blobWrites.set(local, { record: null, isNew: tx.blobWrites.get(local)?.isNew ?? false });
    });
  }

  // ---------------------------------------------------------------- commit

  private async apply(tx: Tx): Promise<void> {
    const kvTouched = tx.kvSeen.size > 0 || tx.kvWrites.size > 0;
    const blobTouched = tx.blobSeen.size > 0 || tx.blobWrites.size > 0;
    if (!kvTouched && !blobTouched) return;
    const writes: WriteSet = {
      kv: [...tx.kvWrites],
      // A blob stored and deleted inside the transaction never reaches the store.
      blob: [...tx.blobWrites]
        .filter(([, w]) => !(w.isNew && w.record === null))
        .map(([id, w]) => [id, w.record, w.isNew]),
    };
    // One name per commit: a batch retried by the group committer rewrites the same file.
    const logTarget =
      writes.kv.length > 0 && writes.blob.length > 0 && this.logDir !== undefined
        ? join(this.logDir, `${this.logPrefix!}${Date.now().toString().padStart(15, '0')}-${tx.id}.json`)
        : undefined;
    const needLog = logTarget !== undefined;
    let blobCommitted = false;
    let logFile: string | undefined;
    try {
      // The KV batch is the commit lock: one commit at a time, validated and applied atomically.
      await this.kv.committer.run(async (kvOps) => {
        if (!blobCommitted) {
          await validateKv(kvOps, tx);
          if (blobTouched) {
            try {
              await this.blob.committer.run(async (blobOps) => {
                await validateBlob(blobOps, tx);
                if (logTarget) logFile = this.writeLog(tx.id, writes, logTarget);
                await applyBlob(blobOps, writes.blob);
              });
            } catch (err) {
              if (logFile) removeFile(logFile);
              logFile = undefined;
              // Nothing is written to KV yet: fail only this job, not the batch it shares.
              throw toStoreError(err);
            }
            blobCommitted = true;
            if (needLog && process.env.BUFFDB_FAULT === 'crash-between-stores') {
              // Fault injection for the test suite: die exactly between the two stores' commits.
              process.kill(process.pid, 'SIGKILL');
              await new Promise(() => {});
            }
          }
        }
        await applyKv(kvOps, writes.kv);
      });
    } catch (err) {
      if (!blobCommitted || writes.blob.length === 0) throw err;
      // The BLOB part is committed but the KV part could not be: keep the KV part in the log.
      const where = logFile ?? 'nowhere (in-memory store)';
      if (logFile) this.writeLog(tx.id, { kv: writes.kv, blob: [] }, logFile);
      throw new StoreError(
        status.INTERNAL,
        `transaction ${JSON.stringify(tx.id)}: its BLOB writes are committed but ` +
          `its KV writes could not be (${toStoreError(err).message}); they are kept in the commit log ${where} and ` +
          'applied when the stores are next opened',
      );
    }
    if (logFile) removeFile(logFile);
  }

  // ---------------------------------------------------------------- commit log

  /** Writes the log atomically (temp file, fsync, rename, fsync directory). */
  private writeLog(txId: string, writes: WriteSet, target: string): string {
    const content: LogFile = {
      version: 1,
      transactionId: txId,
      kv: writes.kv,
      blob: writes.blob.map(([id, r, isNew]) => [
        id,
        r && { data: Buffer.from(r.data).toString('base64'), metadata: r.metadata },
        isNew,
      ]),
    };
    const tmp = `${target}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, JSON.stringify(content));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
    syncDir(dirname(target));
    return target;
  }

  /**
   * Completes commits a crash interrupted between the two stores: replays every commit log beside
   * the KV store (idempotently), then removes it. Called by BuffDb.open before serving.
   */
  async recover(): Promise<number> {
    if (!this.logDir || !this.logPrefix) return 0;
    let names: string[];
    try {
      names = readdirSync(this.logDir)
        .filter((n) => n.startsWith(this.logPrefix!))
        .sort();
    } catch {
      return 0;
    }
    let replayed = 0;
    for (const name of names) {
      const file = join(this.logDir, name);
      // A temp file is a log whose commit never started: the transaction did not happen.
      if (name.endsWith('.tmp')) {
        removeFile(file);
        continue;
      }
      let log: LogFile;
      try {
        log = JSON.parse(readFileSync(file, 'utf8')) as LogFile;
      } catch (err) {
        throw new Error(
          `the commit log ${file} is unreadable (${(err as Error).message}); ` +
            'it holds a committed transaction: restore it, or remove it to give that transaction up',
        );
      }
      const blob = log.blob.map(([id, r, isNew]): [number, BlobRecord | null, boolean] => [
        id,
        r && { data: Buffer.from(r.data, 'base64'), metadata: r.metadata },
        isNew,
      ]);
      if (blob.length > 0) await this.blob.committer.run((ops) => applyBlob(ops, blob, true));
      if (log.kv.length > 0) await this.kv.committer.run((ops) => applyKv(ops, log.kv));
      removeFile(file);
      replayed++;
    }
    return replayed;
  }
}

function fail(message: string): never {
  throw failedPrecondition(message);
}

async function validateKv(ops: KvOps, tx: Tx): Promise<void> {
  for (const [key, seen] of tx.kvSeen) {
    if ((await ops.get(key)) !== seen) throw conflict(tx.id, `key ${JSON.stringify(key)}`);
  }
}

async function validateBlob(ops: BlobOps, tx: Tx): Promise<void> {
  for (const [id, seen] of tx.blobSeen) {
    if (!sameRecord(await ops.get(id), seen)) throw conflict(tx.id, `blob ${id}`);
  }
}

async function applyKv(ops: KvOps, writes: [string, string | null][]): Promise<void> {
  for (const [key, value] of writes) {
    if (value === null) await ops.delete(key);
    else await ops.put(key, value);
  }
}

/** `replay`: the log may be applied twice (idempotent forms only). */
async function applyBlob(ops: BlobOps, writes: [number, BlobRecord | null, boolean][], replay = false): Promise<void> {
  for (const [id, record, isNew] of writes) {
    if (record === null) await ops.delete(id);
    else if (isNew || (replay && ops.insertWithId)) await ops.insertWithId!(id, record.data, record.metadata);
    else await ops.update(id, record.data, record.metadata);
  }
}

function removeFile(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some platforms cannot fsync a directory; the rename is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A transaction as the library sees it: promise-returning operations on both stores. */
export class Transaction {
  constructor(
    private readonly manager: TransactionManager,
    readonly id: string,
    readonly readOnly: boolean,
  ) {}

  private call<R>(f: (done: Done<R>) => void): Promise<R> {
    return new Promise((resolve, reject) => f((err, r) => (err ? reject(err) : resolve(r as R))));
  }

  readonly kv = {
    get: (key: string): Promise<string> => this.call((d) => this.manager.kvGet(this.id, key, d)),
    set: (key: string, value: string): Promise<void> => this.call((d) => this.manager.kvSet(this.id, key, value, d)),
    delete: (key: string): Promise<void> => this.call((d) => this.manager.kvDelete(this.id, key, d)),
  };

  readonly blob = {
    get: (id: BlobId): Promise<BlobRecord> => this.call((d) => this.manager.blobGet(this.id, id, d)),
    store: (bytes: Uint8Array, metadata?: string): Promise<number> =>
      this.call((d) => this.manager.blobStore(this.id, bytes, metadata, d)),
    update: (id: BlobId, update: BlobUpdate): Promise<void> =>
      this.call((d) => this.manager.blobUpdate(this.id, id, update, d)),
    delete: (id: BlobId): Promise<void> => this.call((d) => this.manager.blobDelete(this.id, id, d)),
  };

  commit(): Promise<void> {
    return this.manager.commit(this.id);
  }

  async rollback(): Promise<void> {
    this.manager.rollback(this.id);
  }
}

/** For tests and tools: whether a commit log is pending beside `kvPath`. */
export function pendingCommitLogs(kvPath: string): string[] {
  try {
    const prefix = `${basename(kvPath)}.txlog-`;
    return readdirSync(dirname(kvPath)).filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
}

/**
 * The value `read` gives the first time `key` is touched, remembered in `seen`: later reads in the
 * transaction see the same committed value (and a concurrent first read keeps the earlier one).
 */
async function firstSeen<K, V>(seen: Map<K, V>, key: K, read: () => Promise<V>): Promise<V> {
  if (seen.has(key)) return seen.get(key)!;
  const value = await read();
  if (!seen.has(key)) seen.set(key, value);
  return seen.get(key)!;
}
