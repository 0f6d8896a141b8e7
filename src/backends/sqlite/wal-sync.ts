/**
 * Durable commits of large batches without holding the event loop (issue #12), for SQLite stores
 * written with `--durability full`.
 *
 * In WAL mode, `synchronous=FULL` differs from `NORMAL` by exactly one thing: an fsync of the WAL
 * file at the end of each COMMIT (both sync the WAL header when the WAL restarts, and the WAL and
 * the database at checkpoints). better-sqlite3 runs that fsync inside COMMIT, on the event loop, so
 * while a batch of blobs is being synced the server receives nothing. A batch that follows one that
 * wrote more than LARGE_BATCH_BYTES therefore runs at NORMAL, and after its COMMIT this class
 * fdatasyncs the `-wal` file before the batch resolves, i.e. before anything in it is acknowledged:
 * the same durability as FULL. That sync runs on the libuv thread pool if this batch too was large
 * (the event loop meanwhile receives and decodes the next requests), in line otherwise. Batches
 * after a small one run at FULL exactly as before, so small writes pay no thread-pool round trip
 * (which cost small Kv Set batches more than it saved, when every batch took it).
 *
 * Between the COMMIT and the end of its sync, another connection (a Query reader, the CLI) can see
 * the new rows before they are durable — as with NORMAL; nothing is acknowledged before the sync.
 * A failed sync leaves committed data of unknown durability: the engine then refuses every later
 * batch with DATA_LOSS (restart the server; SQLite recovers from the WAL) rather than let the
 * group committer retry the batch and apply it twice.
 */
import { closeSync, fdatasync, fdatasyncSync, openSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { StoreError, status } from '../../errors.js';

/** Batches that wrote more bytes than this are synced off the event loop. */
export const LARGE_BATCH_BYTES = 256 * 1024;

/** What a batch wrote, counted by the store operations (bytes of blob data, keys and values). */
export interface WriteCounter {
  writes: number;
  bytes: number;
}

export class WalSync {
  private fd: number | undefined;
  private broken: Error | undefined;
  /** The next batch runs at NORMAL and is synced here (the last one wrote a lot). */
  private own = false;
  /** The level the connection is at: true = NORMAL (synced here), false = FULL. */
  private applied = false;
  constructor(
    private readonly db: Database.Database,
    private readonly walPath: string,
  ) {}

  /** Before BEGIN (the level cannot change inside a transaction). Throws if a sync failed. */
  beforeBatch(): void {
    if (this.broken) throw this.broken;
    if (this.applied === this.own) return;
    // Not a kept prepared statement: SQLite applies `PRAGMA synchronous = …` when it prepares it.
    this.db.pragma(this.own ? 'synchronous = NORMAL' : 'synchronous = FULL');
    this.applied = this.own;
  }

  /**
   * After COMMIT: makes the batch durable if it ran at NORMAL — in line, or (a large batch) on the
   * thread pool, when it returns a promise — and chooses the level of the next batch.
   */
  afterCommit(written: WriteCounter): Promise<void> | undefined {
    const { writes, bytes } = written;
    written.writes = 0;
    written.bytes = 0;
    const large = bytes > LARGE_BATCH_BYTES;
    this.own = large;
    // At FULL, SQLite has synced inside COMMIT.
    if (!this.applied || writes === 0) return undefined;
    try {
      // The -wal file exists from the first commit on and stays while this connection is open.
      this.fd ??= openSync(this.walPath, 'r');
      if (!large) {
        fdatasyncSync(this.fd);
        return undefined;
      }
    } catch (err) {
      throw this.fail(err);
    }
    const fd = this.fd;
    return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(this.fail(err)) : resolve())));
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private fail(err: unknown): Error {
    this.broken ??= new StoreError(
      status.DATA_LOSS,
      `cannot sync the write-ahead log ${this.walPath} (${(err as Error).message}); ` +
        'the last writes may not be durable: restart the server',
    );
    return this.broken;
  }
}
