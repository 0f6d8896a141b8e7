/**
 * SQLite on better-sqlite3: one long-lived connection per store, WAL, prepared statements.
 * better-sqlite3 is synchronous, which is what makes group commit cheap: a whole batch runs
 * between two event-loop turns.
 */
import Database from 'better-sqlite3';
import type {
  Backend, BlobOps, BlobRecord, KvOps, OpenOptions, SqlOps, SqlValue, StoreEngine,
} from '../backend.js';
import { assertSqlAllowed } from '../sql-guard.js';

type Db = Database.Database;

function openDatabase(path: string, options: OpenOptions, schema: string): Db {
  const db = new Database(path, { readonly: options.readOnly ?? false, fileMustExist: options.readOnly ?? false });
  try {
    if (!options.readOnly) {
      db.pragma('journal_mode = WAL');
      db.exec(schema);
    }
    // FULL: every commit is fsynced (survives power loss); NORMAL survives a process crash.
    db.pragma(`synchronous = ${options.durability === 'normal' ? 'NORMAL' : 'FULL'}`);
    db.pragma('busy_timeout = 5000');
    // Touch the schema so a corrupt or foreign file fails here, at open, not at the first request.
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** Raw SQL: writes run on the store's connection (inside a batch), reads on pooled readers. */
class SqliteSql implements SqlOps {
  private readonly readers: Db[] = [];

  constructor(private readonly writer: Db, private readonly path: string, private readonly inMemory: boolean) {}

  private acquireReader(): Db {
    const pooled = this.readers.pop();
    if (pooled) return pooled;
    if (this.inMemory) return this.writer;
    const reader = new Database(this.path, { fileMustExist: true });
    reader.pragma('query_only = ON');
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
        stmt.run();
        return;
      }
      stmt.safeIntegers(true).raw(true);
      if (db === this.writer) {
        // A writing statement (INSERT … RETURNING) completes inside its batch before rows are sent.
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
    if (stmt.reader) {
      // Execute answers rows changed; run a RETURNING statement fully and count what it touched.
      const before = this.writer.prepare('SELECT total_changes()').pluck().get() as number;
      stmt.all();
      return (this.writer.prepare('SELECT total_changes()').pluck().get() as number) - before;
    }
    return stmt.run().changes;
  }

  close(): void {
    for (const r of this.readers.splice(0)) r.close();
  }
}

class SqliteEngine<Ops> implements StoreEngine<Ops> {
  readonly sql: SqliteSql;
  private readonly begin: Database.Statement;
  private readonly commit: Database.Statement;
  private readonly rollback: Database.Statement;

  constructor(private readonly db: Db, readonly ops: Ops, path: string) {
    this.sql = new SqliteSql(db, path, path === ':memory:' || path === '');
    this.begin = db.prepare('BEGIN IMMEDIATE');
    this.commit = db.prepare('COMMIT');
    this.rollback = db.prepare('ROLLBACK');
  }

  async batch<T>(work: (ops: Ops) => Promise<T>): Promise<T> {
    this.begin.run();
    let result: T;
    try {
      result = await work(this.ops);
    } catch (err) {
      if (this.db.inTransaction) this.rollback.run();
      throw err;
    }
    try {
      this.commit.run();
    } catch (err) {
      if (this.db.inTransaction) this.rollback.run();
      throw err;
    }
    return result;
  }

  close(): void {
    this.sql.close();
    if (this.db.open) this.db.close();
  }
}

const KV_SCHEMA = 'CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;';
// AUTOINCREMENT: ids are never reused, not even the largest after it is deleted.
const BLOB_SCHEMA = 'CREATE TABLE IF NOT EXISTS blob (id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB, metadata TEXT);';

function kvOps(db: Db): KvOps {
  const get = db.prepare<[string], string>('SELECT value FROM kv WHERE key = ?').pluck();
  const put = db.prepare<[string, string]>('INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)');
  const del = db.prepare<[string]>('DELETE FROM kv WHERE key = ?');
  return {
    get: (key) => get.get(key) ?? undefined,
    put: (key, value) => { put.run(key, value); },
    delete: (key) => del.run(key).changes > 0,
  };
}

function blobOps(db: Db): BlobOps {
  const get = db.prepare<[number], { data: Buffer | null; metadata: string | null }>(
    'SELECT data, metadata FROM blob WHERE id = ?');
  const insert = db.prepare<[Uint8Array, string | null]>('INSERT INTO blob (data, metadata) VALUES (?, ?)');
  const updateBoth = db.prepare<[Uint8Array, string | null, number]>('UPDATE blob SET data = ?, metadata = ? WHERE id = ?');
  const updateData = db.prepare<[Uint8Array, number]>('UPDATE blob SET data = ? WHERE id = ?');
  const updateMeta = db.prepare<[string | null, number]>('UPDATE blob SET metadata = ? WHERE id = ?');
  const exists = db.prepare<[number], number>('SELECT 1 FROM blob WHERE id = ?').pluck();
  const del = db.prepare<[number]>('DELETE FROM blob WHERE id = ?');
  return {
    get: (id): BlobRecord | undefined => {
      const row = get.get(id);
      if (!row) return undefined;
      // Raw SQL may have stored text or numbers in `data`; the Blob API always answers bytes.
      const data = row.data === null ? Buffer.alloc(0) : Buffer.isBuffer(row.data) ? row.data : Buffer.from(String(row.data));
      return { data, metadata: row.metadata === null ? null : String(row.metadata) };
    },
    insert: (data, metadata) => Number(insert.run(data, metadata).lastInsertRowid),
    update: (id, data, metadata) => {
      if (data !== undefined && metadata !== undefined) return updateBoth.run(data, metadata, id).changes > 0;
      if (data !== undefined) return updateData.run(data, id).changes > 0;
      if (metadata !== undefined) return updateMeta.run(metadata, id).changes > 0;
      return exists.get(id) !== undefined;
    },
    delete: (id) => del.run(id).changes > 0,
  };
}

export const sqliteBackend: Backend = {
  name: 'sqlite',
  capabilities: { rawSql: true, nativeTransactions: true },
  async openKv(path, options = {}) {
    const db = openDatabase(path, options, KV_SCHEMA);
    return new SqliteEngine(db, kvOps(db), path);
  },
  async openBlob(path, options = {}) {
    const db = openDatabase(path, options, BLOB_SCHEMA);
    return new SqliteEngine(db, blobOps(db), path);
  },
};
