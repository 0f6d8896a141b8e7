/**
 * SQLite on better-sqlite3: one long-lived connection per store, WAL, prepared statements.
 * better-sqlite3 is synchronous, which is what makes group commit cheap: a whole batch runs
 * between two event-loop turns.
 */
import Database from 'better-sqlite3';
import { StoreError, status } from '../../store/errors.js';
import type { Backend, BlobOps, BlobRecord, KvOps, OpenOptions, SqlOps, SqlValue, StoreEngine } from '../backend.js';
import { withSnapshots } from '../snapshot.js';
import { assertSqlAllowed } from '../sql-guard.js';
import { sqliteSnapshot } from './snapshot.js';

type Db = Database.Database;

/**
 * Fault handling (issue 6): a full disk can be simulated without root by capping the file size.
 * BUFFDB_SQLITE_MAX_PAGE_COUNT=N sets `PRAGMA max_page_count = N` on every store opened; writes
 * beyond it fail with SQLITE_FULL (RESOURCE_EXHAUSTED), exactly as on a full filesystem.
 */
function maxPageCount(): number | undefined {
  const raw = process.env.BUFFDB_SQLITE_MAX_PAGE_COUNT;
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function openDatabase(path: string, options: OpenOptions, schema: string): Db {
  const db = new Database(path, { readonly: options.readOnly ?? false, fileMustExist: options.readOnly ?? false });
  try {
    // Fault handling: SQLite silently falls back to read-only when the file or its directory is
    // not writable; say so at start instead of failing every write later.
    if (!options.readOnly && db.readonly) {
      throw new StoreError(
        status.FAILED_PRECONDITION,
        'the file or its directory is not writable (use --read-only to serve it read-only)',
      );
    }
    const cap = maxPageCount();
    if (cap !== undefined) db.pragma(`max_page_count = ${cap}`);
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

  constructor(
    private readonly writer: Db,
    private readonly path: string,
    private readonly inMemory: boolean,
  ) {}

  private acquireReader(): Db {
    const pooled = this.readers.pop();
    if (pooled) return pooled;
    if (this.inMemory) return this.writer;
    const reader = new Database(this.path, { fileMustExist: true, readonly: this.writer.readonly });
    reader.pragma('query_only = ON');
    // Readers never commit, but `PRAGMA synchronous` through Query should report the store's setting.
    reader.pragma(`synchronous = ${Number(this.writer.pragma('synchronous', { simple: true }))}`);
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

  constructor(
    private readonly db: Db,
    readonly ops: Ops,
    path: string,
  ) {
    this.sql = new SqliteSql(db, path, path === ':memory:' || path === '');
    // Fault handling: a read-only connection cannot take the write lock BEGIN IMMEDIATE asks for
    // (on a read-only filesystem it fails); a deferred BEGIN gives reads a consistent snapshot.
    this.begin = db.prepare(db.readonly ? 'BEGIN' : 'BEGIN IMMEDIATE');
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
    put: (key, value) => {
      put.run(key, value);
    },
    delete: (key) => del.run(key).changes > 0,
  };
}

function blobOps(db: Db): BlobOps {
  const get = db.prepare<[number], { data: Buffer | null; metadata: string | null }>(
    'SELECT data, metadata FROM blob WHERE id = ?',
  );
  const insert = db.prepare<[Uint8Array, string | null]>('INSERT INTO blob (data, metadata) VALUES (?, ?)');
  const updateBoth = db.prepare<[Uint8Array, string | null, number]>(
    'UPDATE blob SET data = ?, metadata = ? WHERE id = ?',
  );
  const updateData = db.prepare<[Uint8Array, number]>('UPDATE blob SET data = ? WHERE id = ?');
  const updateMeta = db.prepare<[string | null, number]>('UPDATE blob SET metadata = ? WHERE id = ?');
  const exists = db.prepare<[number], number>('SELECT 1 FROM blob WHERE id = ?').pluck();
  const del = db.prepare<[number]>('DELETE FROM blob WHERE id = ?');
  // Transactions (issue 7): ids handed out before the blob is stored. AUTOINCREMENT keeps the
  // largest id ever used in sqlite_sequence; bumping it reserves an id no insert will reuse.
  let reserve:
    | {
        current: Database.Statement<[], number>;
        bump: Database.Statement<[number]>;
        first: Database.Statement<[number]>;
      }
    | undefined;
  let insertWithId: Database.Statement<[number, Uint8Array, string | null]> | undefined;
  return {
    get: (id): BlobRecord | undefined => {
      const row = get.get(id);
      if (!row) return undefined;
      // Raw SQL may have stored text or numbers in `data`; the Blob API always answers bytes.
      const data =
        row.data === null ? Buffer.alloc(0) : Buffer.isBuffer(row.data) ? row.data : Buffer.from(String(row.data));
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
    reserveId: () => {
      reserve ??= {
        current: db
          .prepare<[], number>(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'blob'), 0), " +
              'coalesce((SELECT max(id) FROM blob), 0))',
          )
          .pluck(),
        bump: db.prepare<[number]>("UPDATE sqlite_sequence SET seq = ? WHERE name = 'blob'"),
        first: db.prepare<[number]>("INSERT INTO sqlite_sequence (name, seq) VALUES ('blob', ?)"),
      };
      const id = Number(reserve.current.get()) + 1;
      if (reserve.bump.run(id).changes === 0) reserve.first.run(id);
      return id;
    },
    insertWithId: (id, data, metadata) => {
      insertWithId ??= db.prepare<[number, Uint8Array, string | null]>(
        'INSERT OR REPLACE INTO blob (id, data, metadata) VALUES (?, ?, ?)',
      );
      insertWithId.run(id, data, metadata);
    },
  };
}

export const sqliteBackend: Backend = {
  name: 'sqlite',
  capabilities: { rawSql: true, nativeTransactions: true, snapshot: 'online' },
  async openKv(path, options = {}) {
    const db = openDatabase(path, options, KV_SCHEMA);
    return withSnapshots(new SqliteEngine(db, kvOps(db), path), sqliteSnapshot(path));
  },
  async openBlob(path, options = {}) {
    const db = openDatabase(path, options, BLOB_SCHEMA);
    return withSnapshots(new SqliteEngine(db, blobOps(db), path), sqliteSnapshot(path));
  },
};
