/** Raw SQL on a SQLite store: writes run on the store's connection (inside a batch), reads on pooled readers. */
import Database from 'better-sqlite3';
import type { SqlOps, SqlValue } from '../backend.js';
import { assertSqlAllowed } from '../sql-guard.js';
import type { WriteCounter } from './wal-sync.js';

type Db = Database.Database;

export class SqliteSql implements SqlOps {
  private readonly readers: Db[] = [];
  private readonly staged: Database.Statement<[], [Buffer, Buffer | null, Buffer | null]> | undefined;
  private readonly clearStaged: Database.Statement | undefined;

  constructor(
    private readonly writer: Db,
    private readonly path: string,
    private readonly inMemory: boolean,
    /** The KV store: raw SQL writes to the `kv` view are staged for the store to turn into a revision. */
    kvStore: boolean,
    /** The durability the store gives (`PRAGMA synchronous` through Query reports it). */
    private readonly synchronous: number,
    private readonly written: WriteCounter,
  ) {
    if (kvStore && !writer.readonly) {
      this.staged = writer
        .prepare<[], [Buffer, Buffer | null, Buffer | null]>(
          'SELECT CAST(key AS BLOB), CAST(value AS BLOB), CAST(old_key AS BLOB) FROM _buffdb_kv_writes ORDER BY seq',
        )
        .raw(true);
      this.clearStaged = writer.prepare('DELETE FROM _buffdb_kv_writes');
    }
  }

  private acquireReader(): Db {
    const pooled = this.readers.pop();
    if (pooled) return pooled;
    if (this.inMemory) return this.writer;
    const reader = new Database(this.path, { fileMustExist: true, readonly: this.writer.readonly });
    reader.pragma('query_only = ON');
    // Readers never commit, but `PRAGMA synchronous` through Query should report the store's setting.
    reader.pragma(`synchronous = ${this.synchronous}`);
    reader.pragma('busy_timeout = 5000');
    return reader;
  }

  private releaseReader(reader: Db): void {
    if (reader === this.writer) return;
    if (this.readers.length < 4) this.readers.push(reader);
    else reader.close();
  }

  isReadOnly(sql: string): boolean {
    assertSqlAllowed(sql);
    return this.writer.prepare(sql).readonly;
  }

  *query(sql: string): Iterable<SqlValue[]> {
    assertSqlAllowed(sql);
    let db = this.writer;
    const probe = this.writer.prepare(sql);
    // Read-only statements stream from a reader so a long result does not hold up writes.
    if (probe.readonly) db = this.acquireReader();
    try {
      const stmt = db === this.writer ? probe : db.prepare(sql);
      if (!stmt.reader) {
        this.written.writes++;
        stmt.run();
        return;
      }
      stmt.safeIntegers(true).raw(true);
      if (db === this.writer) {
        // A writing statement (INSERT … RETURNING) completes inside its batch before rows are sent.
        this.written.writes++;
        yield* stmt.all() as SqlValue[][];
      } else {
        yield* stmt.iterate() as IterableIterator<SqlValue[]>;
      }
    } finally {
      if (db !== this.writer) this.releaseReader(db);
    }
  }

  execute(sql: string): number {
    assertSqlAllowed(sql);
    const stmt = this.writer.prepare(sql);
    this.written.writes++;
    const before = this.stagedCount();
    const totalBefore = this.writer.prepare('SELECT total_changes()').pluck().get() as number;
    // Execute answers rows changed; a RETURNING statement runs fully and counts what it touched.
    const changes = stmt.reader ? 0 : stmt.run().changes;
    if (stmt.reader) stmt.all();
    // SQLite counts no changes for a statement on a view: the rows staged for `kv` are its changes.
    const staged = this.stagedCount() - before;
    if (staged > 0) return staged;
    if (!stmt.reader) return changes;
    return (this.writer.prepare('SELECT total_changes()').pluck().get() as number) - totalBefore;
  }

  private stagedCount(): number {
    return this.staged ? (this.writer.prepare('SELECT count(*) FROM _buffdb_kv_writes').pluck().get() as number) : 0;
  }

  /** What raw SQL wrote to `kv` since the last call: a changed key becomes a delete of the old one. */
  takeKvWrites(): { key: Buffer; value: Buffer | null }[] {
    if (!this.staged) return [];
    const out: { key: Buffer; value: Buffer | null }[] = [];
    for (const [key, value, oldKey] of this.staged.all()) {
      if (oldKey !== null && !oldKey.equals(key)) out.push({ key: oldKey, value: null });
      out.push({ key, value });
    }
    if (out.length > 0) this.clearStaged!.run();
    return out;
  }

  close(): void {
    for (const r of this.readers.splice(0)) r.close();
  }
}
