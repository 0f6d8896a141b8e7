/**
 * Transactions across the KV and BLOB stores, written once in the store layer for every backend
 * (docs/transactions.md). Optimistic: a transaction keeps its writes in an overlay nobody else
 * sees, remembers the committed state of everything it touches at first touch, and at commit
 * applies the overlay only if none of that changed (else ABORTED). Nothing is locked.
 *
 * This file holds the lifecycle (ids, timeouts, disconnects, endings) and the operations on the
 * overlay; committing is in commit.ts, the commit log in commit-log.ts.
 */
import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { KvRecord } from '../../backends/backend.js';
import { DEFAULT_DISCONNECT_GRACE_MS, DEFAULT_TRANSACTION_TIMEOUT_MS } from '../../defaults.js';
import {
  aborted,
  asStoreError,
  failedPrecondition,
  invalidArgument,
  keyNotFound,
  OutcomeUnknownError,
  resourceExhausted,
  shuttingDown,
  status,
} from '../../errors.js';
import type { BlobStore } from '../blob/blob-store.js';
import { type Reply, type Sequence, settle } from '../group-commit.js';
import type { KvStore } from '../kv/kv-store.js';
import type { BlobRequests, KvRequests } from '../requests.js';
import { txBlobRequests } from './blob-requests.js';
import type { Committer } from './commit.js';
import { type Ending, endedError, firstSeen, Tx } from './tx-state.js';

/** Finished ids remembered for a precise error message ("committed", "expired", …). */
const REMEMBERED_FINISHED = 100_000;
/** Open transactions at once; beyond, BeginTransaction is RESOURCE_EXHAUSTED. */
export const MAX_OPEN_TRANSACTIONS = 10_000;

export interface BeginOptions {
  readOnly?: boolean;
  /** Rolled back if not committed within this many ms (default: the manager's, 30 s). */
  timeoutMs?: number;
}

export interface TransactionManagerOptions {
  defaultTimeoutMs?: number;
  /**
   * After the connection that began a transaction closes, the transaction is rolled back unless its
   * id is used again within this many ms (clients that open a connection per call keep working).
   */
  disconnectGraceMs?: number;
  /** Names this server in transaction ids (default: host name, process id and a random tag). */
  serverName?: string;
}

type Connection = EventEmitter & { closed?: boolean; destroyed?: boolean };

export class TransactionManager {
  readonly defaultTimeoutMs: number;
  readonly disconnectGraceMs: number;
  private readonly open = new Map<string, Tx>();
  private readonly finished = new Map<string, { ending: Ending; timeoutMs: number }>();
  private readonly byConnection = new WeakMap<EventEmitter, Set<Tx>>();
  /** Streams where a transactional request failed: their later transactional requests are not applied. */
  private readonly failedStreams = new WeakSet<Sequence>();
  private closed = false;

  constructor(
    private readonly kv: KvStore,
    private readonly blob: BlobStore,
    private readonly committer: Committer,
    options: TransactionManagerOptions = {},
  ) {
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_TRANSACTION_TIMEOUT_MS;
    this.disconnectGraceMs = options.disconnectGraceMs ?? DEFAULT_DISCONNECT_GRACE_MS;
    this.serverName = options.serverName ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 4)}`;
  }

  /**
   * Transactions live in the memory of the server that began them; their ids end with
   * `@SERVER` so another server sharing the store (postgres) can say where to send them.
   * The server sets this to its address once it listens.
   */
  serverName: string;

  get openCount(): number {
    return this.open.size;
  }

  // ---------------------------------------------------------------- lifecycle

  begin(options: BeginOptions = {}): string {
    if (this.closed) throw shuttingDown();
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 2 ** 31 - 1) {
      throw invalidArgument(
        `timeout_ms must be a positive number of milliseconds (at most ${2 ** 31 - 1}), got ${timeoutMs}`,
      );
    }
    if (this.open.size >= MAX_OPEN_TRANSACTIONS) {
      throw resourceExhausted(
        `too many open transactions (${MAX_OPEN_TRANSACTIONS}); commit or roll back some, or let them time out`,
      );
    }
    const tx = new Tx(`${randomUUID()}@${this.serverName}`, options.readOnly ?? false, timeoutMs);
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
   * transaction is rolled back unless its id is used again within the disconnect grace period.
   */
  bindToConnection(txId: string, connection: Connection): void {
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

  rollback(txId: string): void {
    this.end(this.lookup(txId), 'rolled back');
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
      await this.committer.apply(tx);
    } catch (err) {
      let e = asStoreError(err);
      // The store could not be reached (a database restarting) and nothing was committed: the
      // transaction is over, as after a conflict — retry it.
      if (e.code === status.UNAVAILABLE && !(e instanceof OutcomeUnknownError)) {
        e = aborted(`transaction ${JSON.stringify(txId)} aborted: ${e.message}; nothing of it was applied — retry it`);
      }
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
    tx.clear();
    if (tx.connection) this.byConnection.get(tx.connection)?.delete(tx);
    this.finished.set(tx.id, { ending, timeoutMs: tx.timeoutMs });
    if (this.finished.size > REMEMBERED_FINISHED) this.finished.delete(this.finished.keys().next().value!);
  }

  /** The open transaction, or a FAILED_PRECONDITION saying why there is none. */
  private lookup(txId: string): Tx {
    const tx = this.open.get(txId);
    if (tx?.state === 'open') {
      // A use: a transaction whose connection closed lives on while it is being used.
      tx.orphanTimer?.refresh();
      return tx;
    }
    if (tx)
      throw failedPrecondition(
        `transaction ${JSON.stringify(txId)} is being committed; no more operations can join it`,
      );
    const done = this.finished.get(txId);
    const owner = txId.includes('@') ? txId.slice(txId.indexOf('@') + 1) : undefined;
    if (!done && owner !== undefined && owner !== this.serverName) {
      throw failedPrecondition(
        `transaction ${JSON.stringify(txId)} belongs to the buffdb server ${owner}, not this one (${this.serverName}): ` +
          'a transaction lives in the server that began it; send its requests and its commit there',
      );
    }
    throw endedError(txId, done?.ending, done?.timeoutMs ?? 0);
  }

  // ---------------------------------------------------------------- operations

  /** Queues `work` on the transaction, after its earlier operations; answers through `done`. */
  enqueue<R>(
    txId: string,
    writes: boolean,
    seq: Sequence | undefined,
    done: Reply<R>,
    work: (tx: Tx) => Promise<R>,
  ): void {
    let tx: Tx;
    try {
      tx = this.lookup(txId);
      if (writes && tx.readOnly)
        throw failedPrecondition(`transaction ${JSON.stringify(txId)} is read-only: it cannot write`);
    } catch (err) {
      if (seq) this.failedStreams.add(seq);
      settle(done, asStoreError(err));
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
        settle(done, asStoreError(err));
        return;
      }
      settle(done, null, result);
    });
  }

  /** The committed record, remembered at first touch. */
  private seenKv(tx: Tx, key: string): Promise<KvRecord | undefined> {
    return firstSeen(tx.kvSeen, key, () => this.kv.committer.run((b) => b.ops.get(Buffer.from(key, 'utf8'))));
  }

  /** The value as this transaction sees it. */
  private async currentKv(tx: Tx, key: string): Promise<string | undefined> {
    const written = tx.kvWrites.get(key);
    if (written !== undefined) return written ?? undefined;
    const record = await this.seenKv(tx, key);
    return record?.value.toString('utf8');
  }

  /** The KV requests of transaction `txId`, with the same interface as the KV store's. */
  kvRequests(txId: string): KvRequests {
    return {
      get: (key, done, seq) =>
        this.enqueue(txId, false, seq, done, async (tx) => {
          const value = await this.currentKv(tx, key);
          if (value === undefined) throw keyNotFound(key);
          return value;
        }),
      set: (key, value, done, seq) =>
        this.enqueue(txId, true, seq, done, async (tx) => {
          // Remember what was there: a concurrent commit to this key aborts this transaction.
          await this.seenKv(tx, key);
          tx.kvWrites.set(key, value);
        }),
      delete: (key, done, seq) =>
        this.enqueue(txId, true, seq, done, async (tx) => {
          if ((await this.currentKv(tx, key)) === undefined) throw keyNotFound(key);
          tx.kvWrites.set(key, null);
        }),
    };
  }

  /** The BLOB requests of transaction `txId`, with the same interface as the BLOB store's. */
  blobRequests(txId: string): BlobRequests {
    return txBlobRequests(this.blob, txId, (writes, seq, done, work) => this.enqueue(txId, writes, seq, done, work));
  }
}
