/**
 * SQLite on better-sqlite3: one long-lived connection per store, WAL, prepared statements.
 * better-sqlite3 is synchronous, which is what makes group commit cheap: a whole batch runs
 * between two event-loop turns. Schema: ./schema.ts; raw SQL: ./sql.ts; errors: ./errors.ts.
 */

import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { failedPrecondition, readOnlyStore } from '../../errors.js';
import {
  BLOB_MAPS,
  type BlobEngineOps,
  type BlobRecord,
  KV_MAPS,
  type KvEngineOps,
  type KvRecord,
  type MapName,
  type MapOps,
  type OpenOptions,
  type RangeQuery,
  type StoreEngine,
} from '../backend.js';
import type { BackendImpl } from '../index.js';
import { withSnapshots } from '../snapshot.js';
import { checkFilePath, writable } from '../store-path.js';
import { mapSqliteError } from './errors.js';
import { blobSchema, kvSchema, mapTable } from './schema.js';
import { sqliteSnapshot } from './snapshot.js';
import { SqliteSql } from './sql.js';
import { WalSync, type WriteCounter } from './wal-sync.js';

type Db = Database.Database;

/**
 * Fault handling: a full disk can be simulated without root by capping the file size.
 * BUFFDB_SQLITE_MAX_PAGE_COUNT=N sets `PRAGMA max_page_count = N` on every store opened; writes
 * beyond it fail with SQLITE_FULL (RESOURCE_EXHAUSTED), exactly as on a full filesystem.
 */
function maxPageCount(): number | undefined {
  const raw = process.env.BUFFDB_SQLITE_MAX_PAGE_COUNT;
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * The BLOB store's page cache, in KiB: SQLite's stock 2 MiB rather than the 16 MB better-sqlite3
 * builds it with. Blob data is read or written once per transfer and goes through the cache page
 * by page, so a larger cache only keeps 16 MB of pages nobody reads again resident in the server
 * (measured: the peak RSS of the blob bench section; docs/performance.md).
 */
const BLOB_CACHE_KIB = 2048;
/**
 * The KV store's page cache, in KiB. Filled by any write-heavy run, 16 MB of cache held ~24 MB of
 * native memory for good; with 4 MiB a Kv flood's peak RSS fell by ~20 MB and Get and Set streams
 * ran no slower (pages past the cache come from the OS page cache; docs/performance.md).
 */
const KV_CACHE_KIB = 4096;

/** Large batches synced off the event loop (file stores written with durability full). */
function walSyncFor(db: Db, path: string, options: OpenOptions): WalSync | undefined {
  const inMemory = path === ':memory:' || path === '';
  return options.durability !== 'normal' && !options.readOnly && !inMemory ? new WalSync(db, `${path}-wal`) : undefined;
}

function openDatabase(path: string, options: OpenOptions, schema: (db: Db) => void): Db {
  const db = new Database(path, { readonly: options.readOnly ?? false, fileMustExist: options.readOnly ?? false });
  try {
    // First: another process (the CLI beside a server) may hold the lock the steps below need.
    db.pragma('busy_timeout = 5000');
    // SQLite silently falls back to read-only when the file or its directory is not writable;
    // say so at start instead of failing every write later.
    if (!options.readOnly && db.readonly) {
      throw failedPrecondition('the file or its directory is not writable (use --read-only to serve it read-only)');
    }
    const cap = maxPageCount();
    if (cap !== undefined) db.pragma(`max_page_count = ${cap}`);
    // Touch the schema so a corrupt or foreign file fails here, at open, not at the first request.
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
    if (!options.readOnly) {
      db.pragma('journal_mode = WAL');
      schema(db);
    }
    // FULL: every commit is fsynced (survives power loss); NORMAL survives a process crash.
    db.pragma(`synchronous = ${options.durability === 'normal' ? 'NORMAL' : 'FULL'}`);
  } catch (err) {
    db.close();
    // At open, SQLite's own words ("file is not a database") say it best.
    throw err;
  }
  return db;
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
    kvStore: boolean,
    private readonly written: WriteCounter,
    private readonly walSync: WalSync | undefined,
  ) {
    const synchronous = Number(db.pragma('synchronous', { simple: true }));
    this.sql = new SqliteSql(db, path, path === ':memory:' || path === '', kvStore, synchronous, written);
    // A read-only connection cannot take the write lock BEGIN IMMEDIATE asks for (on a read-only
    // filesystem it fails); a deferred BEGIN gives reads a consistent snapshot.
    this.begin = db.prepare(db.readonly ? 'BEGIN' : 'BEGIN IMMEDIATE');
    this.commit = db.prepare('COMMIT');
    this.rollback = db.prepare('ROLLBACK');
  }

  mapError = mapSqliteError;

  async batch<T>(work: (ops: Ops) => Promise<T>): Promise<T> {
    this.walSync?.beforeBatch();
    this.written.writes = 0;
    this.written.bytes = 0;
    this.begin.run();
    let result: T;
    try {
      result = await work(this.ops);
      this.commit.run();
    } catch (err) {
      if (this.db.inTransaction) this.rollback.run();
      throw err;
    }
    // A large batch ran at NORMAL: durable only once its WAL is synced (see wal-sync.ts).
    const synced = this.walSync?.afterCommit(this.written);
    if (synced) await synced;
    return result;
  }

  close(): void {
    this.sql.close();
    if (this.db.open) this.db.close();
    this.walSync?.close();
  }
}

type Row = [key: Buffer, value: Buffer, createRev: number, modRev: number, version: number, lease: bigint];
/** A Row without its key (a read by key). */
type RecordRow = [value: Buffer, createRev: number, modRev: number, version: number, lease: bigint];

function toRecord(row: Row): KvRecord {
  return {
    key: row[0],
    value: row[1],
    createRev: Number(row[2]),
    modRev: Number(row[3]),
    version: Number(row[4]),
    lease: BigInt(row[5]),
  };
}

const COLUMNS = 'CAST(key AS BLOB), CAST(value AS BLOB), create_rev, mod_rev, version, lease';
const KEY_COLUMNS = "CAST(key AS BLOB), x'', create_rev, mod_rev, version, lease";

/** Prepared range statements for one table, by (bounded end, reverse, keys only). */
function rangeStatements(
  db: Db,
  table: string,
  columns: (keysOnly: boolean) => string,
  key: string,
  bound: (param: string) => string,
) {
  const cache = new Map<string, Database.Statement>();
  return (q: RangeQuery, keysOnly: boolean): Database.Statement => {
    const id = `${q.end !== undefined}${q.reverse}${keysOnly}`;
    let stmt = cache.get(id);
    if (!stmt) {
      const end = q.end !== undefined ? ` AND ${key} < ${bound('$end')}` : '';
      stmt = db
        .prepare(
          `SELECT ${columns(keysOnly)} FROM ${table} WHERE ${key} >= ${bound('$start')}${end} ` +
            `ORDER BY ${key} ${q.reverse ? 'DESC' : 'ASC'} LIMIT $limit`,
        )
        .raw(true)
        .safeIntegers(true);
      cache.set(id, stmt);
    }
    return stmt;
  };
}

function mapOps(db: Db, maps: readonly MapName[], written: WriteCounter): MapOps {
  const stmts = new Map(
    maps.map((m) => {
      const t = mapTable(m);
      return [
        m,
        {
          get: db.prepare<[Buffer], Buffer>(`SELECT v FROM ${t} WHERE k = ?`).pluck(),
          put: db.prepare<[Buffer, Buffer]>(`INSERT OR REPLACE INTO ${t} (k, v) VALUES (?, ?)`),
          del: db.prepare<[Buffer]>(`DELETE FROM ${t} WHERE k = ?`),
          delRange: db.prepare<[Buffer, Buffer]>(`DELETE FROM ${t} WHERE k >= ? AND k < ?`),
          // substr of a BLOB counts bytes.
          heads: rangeStatements(
            db,
            t,
            () => 'k, substr(v, 1, $bytes)',
            'k',
            (p) => p,
          ),
          range: rangeStatements(
            db,
            t,
            () => 'k, v',
            'k',
            (p) => p,
          ),
        },
      ] as const;
    }),
  );
  const of = (map: MapName) => {
    const s = stmts.get(map);
    if (!s) throw new Error(`no map ${map} in this store`);
    return s;
  };
  return {
    get: (map, key) => of(map).get.get(key),
    put: (map, key, value) => {
      written.writes++;
      written.bytes += key.length + value.length;
      of(map).put.run(key, value);
    },
    delete: (map, key) => {
      written.writes++;
      of(map).del.run(key);
    },
    range: (map, q) =>
      of(map).range(q, false).all({ start: q.start, end: q.end, limit: q.limit }) as [Buffer, Buffer][],
    rangeHeads: (map, q, bytes) =>
      of(map).heads(q, false).all({ start: q.start, end: q.end, limit: q.limit, bytes }) as [Buffer, Buffer][],
    deleteRange: (map, start, end) => {
      written.writes += of(map).delRange.run(start, end).changes;
    },
  };
}

const READ_ONLY_MAPS: MapOps = {
  get: () => undefined,
  put: () => {
    throw readOnlyStore();
  },
  delete: () => {
    throw readOnlyStore();
  },
  range: () => [],
};

function tableExists(db: Db, name: string): boolean {
  return db.prepare('SELECT 1 FROM sqlite_schema WHERE name = ?').get(name) !== undefined;
}

function kvOps(db: Db, written: WriteCounter): KvEngineOps {
  if (!tableExists(db, 'kv_state')) {
    throw failedPrecondition(
      tableExists(db, 'kv')
        ? 'the store was written by buffdb 0.1; open it once without --read-only to upgrade it'
        : 'not a buffdb KV store (no kv_state table)',
    );
  }
  // The key is the one asked for: not read back (a Buffer made per column read costs).
  const get = db
    .prepare<[Buffer], RecordRow>(
      'SELECT CAST(value AS BLOB), create_rev, mod_rev, version, lease FROM kv_state WHERE key = CAST(? AS TEXT)',
    )
    .raw(true)
    .safeIntegers(true);
  // A TEXT value read as text: SQLite hands over its bytes, V8 decodes them, any invalid UTF-8
  // becoming U+FFFD. So a string without U+FFFD holds exactly the stored bytes.
  const getText = db.prepare<[string], string>('SELECT value FROM kv_state WHERE key = CAST(? AS TEXT)').pluck();
  const put = db.prepare(
    'INSERT OR REPLACE INTO kv_state (key, value, create_rev, mod_rev, version, lease) ' +
      'VALUES (CAST(? AS TEXT), CAST(? AS TEXT), ?, ?, ?, ?)',
  );
  const del = db.prepare<[Buffer]>('DELETE FROM kv_state WHERE key = CAST(? AS TEXT)');
  const modRevOf = db.prepare<[Buffer], number>('SELECT mod_rev FROM kv_state WHERE key = CAST(? AS TEXT)').pluck();
  const range = rangeStatements(db, 'kv_state', (keysOnly) => (keysOnly ? KEY_COLUMNS : COLUMNS), 'key', asText);
  const countAll = db
    .prepare<[Buffer], bigint>('SELECT count(*) FROM kv_state WHERE key >= CAST(? AS TEXT)')
    .pluck()
    .safeIntegers(true);
  const countTo = db
    .prepare<[Buffer, Buffer], bigint>(
      'SELECT count(*) FROM kv_state WHERE key >= CAST(? AS TEXT) AND key < CAST(? AS TEXT)',
    )
    .pluck()
    .safeIntegers(true);
  return {
    get: (key) => {
      const row = get.get(key);
      return row === undefined
        ? undefined
        : {
            key,
            value: row[0],
            createRev: Number(row[1]),
            modRev: Number(row[2]),
            version: Number(row[3]),
            lease: BigInt(row[4]),
          };
    },
    getText: (key) => {
      const text = getText.get(key);
      // Raw SQL may have stored a number or a blob in `value`: only text is answered here.
      if (text === undefined || (typeof text === 'string' && !text.includes(REPLACEMENT))) return text;
      return null;
    },
    put: (r) => {
      written.writes++;
      written.bytes += r.key.length + r.value.length;
      put.run(r.key, r.value, r.createRev, r.modRev, r.version, r.lease);
    },
    delete: (key) => {
      written.writes++;
      del.run(key);
    },
    range: (q, keysOnly) =>
      (range(q, keysOnly).all({ start: q.start, end: q.end, limit: q.limit }) as Row[]).map(toRecord),
    modRevOf: (key) => modRevOf.get(key),
    count: (start, end) => Number(end === undefined ? countAll.get(start) : countTo.get(start, end)),
    maps:
      db.readonly && !tableExists(db, mapTable('meta'))
        ? READ_ONLY_MAPS
        : // A store from before a map existed, opened read-only: the maps it has.
          mapOps(db, db.readonly ? KV_MAPS.filter((m) => tableExists(db, mapTable(m))) : KV_MAPS, written),
  };
}

/** What V8 decodes an invalid UTF-8 sequence to (and a stored U+FFFD is, too). */
const REPLACEMENT = '\uFFFD';

/** Key bytes compared with the TEXT keys of kv_state: the same bytes, as TEXT (memcmp order). */
const asText = (param: string): string => `CAST(${param} AS TEXT)`;

function blobOps(db: Db, written: WriteCounter): BlobEngineOps {
  const wrote = (data: Uint8Array | undefined): void => {
    written.writes++;
    if (data) written.bytes += data.byteLength;
  };
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
  // Ids handed out before the blob is stored (transactions). AUTOINCREMENT keeps the largest id
  // ever used in sqlite_sequence; bumping it reserves an id no insert will reuse.
  const current = db.prepare<[], number>(
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'blob'), 0), coalesce((SELECT max(id) FROM blob), 0))",
  );
  const bump = db.prepare<[number]>("UPDATE sqlite_sequence SET seq = ? WHERE name = 'blob'");
  const first = db.prepare<[number]>("INSERT INTO sqlite_sequence (name, seq) VALUES ('blob', ?)");
  const ids = db.prepare<[number, number], number>('SELECT id FROM blob WHERE id > ? ORDER BY id LIMIT ?').pluck();
  const insertWithId = db.prepare<[number, Uint8Array, string | null]>(
    'INSERT OR REPLACE INTO blob (id, data, metadata) VALUES (?, ?, ?)',
  );
  return {
    get: (id): BlobRecord | undefined => {
      const row = get.get(id);
      if (!row) return undefined;
      // Raw SQL may have stored text or numbers in `data`; the Blob API always answers bytes.
      const data =
        row.data === null ? Buffer.alloc(0) : Buffer.isBuffer(row.data) ? row.data : Buffer.from(String(row.data));
      return { data, metadata: row.metadata === null ? null : String(row.metadata) };
    },
    insert: (data, metadata) => {
      wrote(data);
      return Number(insert.run(data, metadata).lastInsertRowid);
    },
    update: (id, data, metadata) => {
      wrote(data);
      if (data !== undefined && metadata !== undefined) return updateBoth.run(data, metadata, id).changes > 0;
      if (data !== undefined) return updateData.run(data, id).changes > 0;
      if (metadata !== undefined) return updateMeta.run(metadata, id).changes > 0;
      return exists.get(id) !== undefined;
    },
    delete: (id) => {
      wrote(undefined);
      return del.run(id).changes > 0;
    },
    reserveId: () => {
      const id = Number(current.pluck().get()) + 1;
      if (bump.run(id).changes === 0) first.run(id);
      return id;
    },
    insertWithId: (id, data, metadata) => {
      wrote(data);
      insertWithId.run(id, data, metadata);
    },
    ids: (after, limit) => ids.all(after, limit).map(Number),
    maps: db.readonly && !tableExists(db, mapTable('meta')) ? READ_ONLY_MAPS : mapOps(db, BLOB_MAPS, written),
  };
}

export const sqliteBackend: BackendImpl = {
  async openKv(path, options = {}) {
    const db = openDatabase(path, options, kvSchema);
    try {
      db.pragma(`cache_size = -${KV_CACHE_KIB}`);
      const written = { writes: 0, bytes: 0 };
      const engine = new SqliteEngine(db, kvOps(db, written), path, true, written, walSyncFor(db, path, options));
      return withSnapshots(engine, sqliteSnapshot(path));
    } catch (err) {
      db.close();
      throw mapSqliteError(err);
    }
  },
  async openBlob(path, options = {}) {
    const db = openDatabase(path, options, blobSchema);
    db.pragma(`cache_size = -${BLOB_CACHE_KIB}`);
    const written = { writes: 0, bytes: 0 };
    const engine = new SqliteEngine(db, blobOps(db, written), path, false, written, walSyncFor(db, path, options));
    return withSnapshots(engine, sqliteSnapshot(path));
  },
  checkPath(path, label, readOnly) {
    checkFilePath(path, label, readOnly);
    const abs = resolve(path);
    // SQLite keeps its WAL index in PATH-shm; on read-only media it must already be there.
    if (
      readOnly &&
      path !== ':memory:' &&
      !writable(dirname(abs)) &&
      !statSync(`${abs}-shm`, { throwIfNoEntry: false })
    ) {
      throw failedPrecondition(
        `cannot serve the ${label} store ${path} from a read-only directory: SQLite needs ${path}-shm ` +
          'beside it; copy the store to writable storage (it is still opened read-only)',
      );
    }
  },
};
