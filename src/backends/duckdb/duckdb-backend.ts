/**
 * DuckDB on `@duckdb/node-api`: one database file per store with the tables raw SQL sees (`kv`,
 * `blob`), a writer connection that runs each buffdb batch as one transaction, and a small pool of
 * reader connections that stream read-only raw SQL beside the writes (DuckDB is MVCC).
 *
 * Sandbox: the instance is created with file-system access and extension loading switched off
 * (`enable_external_access=false`, no autoload/autoinstall), and the configuration is locked once
 * the schema exists, so raw SQL cannot switch them back. assertSqlAllowed refuses the rest.
 */

import { existsSync, statSync, unlinkSync } from 'node:fs';
import {
  DuckDBBlobValue,
  type DuckDBConnection,
  DuckDBDecimalValue,
  DuckDBInstance,
  type DuckDBPreparedStatement,
  type DuckDBType,
  DuckDBTypeId,
  type DuckDBValue,
  LIST,
  listValue,
  ResultReturnType,
  StatementType,
  VARCHAR,
} from '@duckdb/node-api';
import { StoreError, status } from '../../store/errors.js';
import type { Backend, BlobOps, BlobRecord, KvOps, OpenOptions, SqlOps, SqlValue, StoreEngine } from '../backend.js';
import { readFileHead } from '../file-head.js';
import { withSnapshots } from '../snapshot.js';
import { assertSqlAllowed } from '../sql-guard.js';
import { duckdbSnapshot } from './snapshot.js';

const KV_SCHEMA = ['CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT)'];
// A sequence, not max(id)+1: ids are never reused, not even the largest after it is deleted.
const BLOB_SCHEMA = [
  'CREATE SEQUENCE IF NOT EXISTS blob_id_seq START 1',
  'CREATE TABLE IF NOT EXISTS blob (id BIGINT PRIMARY KEY, data BLOB, metadata TEXT)',
];

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** A DuckDB value as raw SQL answers it: integers as bigint, DECIMAL as double, the rest as text. */
function toSqlValue(value: DuckDBValue, type: DuckDBType): SqlValue {
  if (value === null || value === undefined) return null;
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
      return Boolean(value);
    case DuckDBTypeId.TINYINT:
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UTINYINT:
    case DuckDBTypeId.USMALLINT:
    case DuckDBTypeId.UINTEGER:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
    case DuckDBTypeId.BIGNUM: {
      const n = typeof value === 'bigint' ? value : BigInt(value as number);
      // Int64Value on the wire: wider integers travel as text rather than wrap around.
      return n >= INT64_MIN && n <= INT64_MAX ? n : n.toString();
    }
    case DuckDBTypeId.FLOAT:
    case DuckDBTypeId.DOUBLE:
      return value as number;
    case DuckDBTypeId.DECIMAL:
      return value instanceof DuckDBDecimalValue ? value.toDouble() : Number(value);
    case DuckDBTypeId.VARCHAR:
      return String(value);
    case DuckDBTypeId.BLOB:
      return value instanceof DuckDBBlobValue ? value.bytes : new Uint8Array(0);
    default:
      return typeof value === 'boolean' || typeof value === 'number' ? value : String(value);
  }
}

function convertRows(rows: DuckDBValue[][], types: DuckDBType[]): SqlValue[][] {
  return rows.map((row) => row.map((v, i) => toSqlValue(v, types[i]!)));
}

/** Statement kinds that only read: they may stream from a reader connection outside a batch. */
const READ_ONLY_TYPES = new Set<number>([StatementType.SELECT, StatementType.EXPLAIN, StatementType.PRAGMA]);

class DuckSql implements SqlOps {
  private readonly idle: DuckDBConnection[] = [];
  private readonly open = new Set<DuckDBConnection>();

  constructor(
    private readonly instance: DuckDBInstance,
    private readonly writer: DuckDBConnection,
    /** Puts the batch's pending writes into the transaction, so raw SQL sees them. */
    private readonly flushPending: () => Promise<void>,
  ) {}

  private async acquire(): Promise<DuckDBConnection> {
    const c = this.idle.pop() ?? (await this.instance.connect());
    this.open.add(c);
    return c;
  }

  private release(c: DuckDBConnection): void {
    if (this.idle.length < 4) {
      this.idle.push(c);
    } else {
      this.open.delete(c);
      c.closeSync();
    }
  }

  async isReadOnly(sql: string): Promise<boolean> {
    assertSqlAllowed(sql);
    const c = await this.acquire();
    try {
      const stmt = await c.prepare(sql);
      const readOnly = READ_ONLY_TYPES.has(stmt.statementType);
      stmt.destroySync();
      return readOnly;
    } finally {
      this.release(c);
    }
  }

  async *query(sql: string): AsyncIterable<SqlValue[]> {
    if (await this.isReadOnly(sql)) {
      const c = await this.acquire();
      try {
        const result = await c.stream(sql);
        const types = result.columnTypes();
        for await (const rows of result.yieldRows()) {
          for (const row of rows) yield row.map((v, i) => toSqlValue(v, types[i]!));
        }
      } finally {
        this.release(c);
      }
      return;
    }
    // A writing statement (INSERT … RETURNING) runs inside its batch, on the writer.
    await this.flushPending();
    const reader = await this.writer.runAndReadAll(sql);
    yield* convertRows(reader.getRows(), reader.columnTypes());
  }

  async execute(sql: string): Promise<number> {
    assertSqlAllowed(sql);
    await this.flushPending();
    const result = await this.writer.run(sql);
    if (result.returnType === ResultReturnType.QUERY_RESULT) {
      // INSERT … RETURNING answers rows, not a count: what it returned is what it changed.
      const chunks = await result.fetchAllChunks();
      const isWrite =
        result.statementType === StatementType.INSERT ||
        result.statementType === StatementType.UPDATE ||
        result.statementType === StatementType.DELETE;
      return isWrite ? chunks.reduce((n, c) => n + c.rowCount, 0) : 0;
    }
    return result.rowsChanged;
  }

  close(): void {
    for (const c of this.open) c.closeSync();
    this.open.clear();
    this.idle.length = 0;
  }
}

/** Runs a prepared statement with fresh bindings. */
async function runWith(stmt: DuckDBPreparedStatement, bind: (s: DuckDBPreparedStatement) => void) {
  stmt.clearBindings();
  bind(stmt);
  return stmt.runAndReadAll();
}

const bindText = (s: DuckDBPreparedStatement, i: number, v: string | null): void => {
  if (v === null) s.bindNull(i);
  else s.bindVarchar(i, v);
};

/**
 * KV writes of a batch wait in memory (the batch's own reads see them) and reach DuckDB as one
 * bulk upsert and one bulk delete just before COMMIT: DuckDB pays a millisecond or more per
 * statement, so a thousand single-row statements would cost a second.
 */
class DuckKvOps implements KvOps {
  private readonly pending = new Map<string, string | null>();

  private constructor(
    private readonly readOnly: boolean,
    private readonly getStmt: DuckDBPreparedStatement,
    private readonly upsertStmt: DuckDBPreparedStatement,
    private readonly deleteStmt: DuckDBPreparedStatement,
  ) {}

  static async create(c: DuckDBConnection, readOnly: boolean): Promise<DuckKvOps> {
    return new DuckKvOps(
      readOnly,
      await c.prepare('SELECT value FROM kv WHERE key = $1'),
      await c.prepare('INSERT OR REPLACE INTO kv (key, value) SELECT unnest($1::VARCHAR[]), unnest($2::VARCHAR[])'),
      await c.prepare('DELETE FROM kv WHERE key IN (SELECT unnest($1::VARCHAR[]))'),
    );
  }

  async get(key: string): Promise<string | undefined> {
    if (this.pending.has(key)) return this.pending.get(key) ?? undefined;
    const rows = (await runWith(this.getStmt, (s) => s.bindVarchar(1, key))).getRows();
    if (rows.length === 0) return undefined;
    const v = rows[0]![0];
    // A NULL stored by raw SQL reads as absent, as on SQLite.
    return v === null || v === undefined ? undefined : String(v);
  }

  put(key: string, value: string): void {
    if (this.readOnly) throw readOnlyError();
    this.pending.set(key, value);
  }

  async delete(key: string): Promise<boolean> {
    if (this.readOnly) throw readOnlyError();
    if ((await this.get(key)) === undefined) return false;
    this.pending.set(key, null);
    return true;
  }

  /** Writes the batch's pending writes into the open transaction. */
  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const upKeys: string[] = [];
    const upValues: string[] = [];
    const delKeys: string[] = [];
    for (const [k, v] of this.pending) {
      if (v === null) delKeys.push(k);
      else {
        upKeys.push(k);
        upValues.push(v);
      }
    }
    this.pending.clear();
    if (delKeys.length > 0) {
      await runWith(this.deleteStmt, (s) => s.bind([listValue(delKeys)], [LIST(VARCHAR)]));
    }
    if (upKeys.length > 0) {
      await runWith(this.upsertStmt, (s) =>
        s.bind([listValue(upKeys), listValue(upValues)], [LIST(VARCHAR), LIST(VARCHAR)]),
      );
    }
  }

  discard(): void {
    this.pending.clear();
  }
}

const readOnlyError = (): StoreError =>
  new StoreError(status.FAILED_PRECONDITION, 'the store is open read-only; writes are refused');

async function blobOps(c: DuckDBConnection): Promise<BlobOps & Deferred> {
  const get = await c.prepare('SELECT data, metadata FROM blob WHERE id = $1');
  const exists = await c.prepare('SELECT 1 FROM blob WHERE id = $1');
  const next = await c.prepare("SELECT nextval('blob_id_seq')");
  // One statement in the common case; an id that raw SQL already used is skipped, not a
  // constraint error (which would abort the whole batch's transaction).
  const insertNew = await c.prepare(
    "INSERT INTO blob (id, data, metadata) VALUES (nextval('blob_id_seq'), $1, $2) ON CONFLICT DO NOTHING RETURNING id",
  );
  const insert = await c.prepare('INSERT OR REPLACE INTO blob (id, data, metadata) VALUES ($1, $2, $3)');
  const updateBoth = await c.prepare('UPDATE blob SET data = $2, metadata = $3 WHERE id = $1');
  const updateData = await c.prepare('UPDATE blob SET data = $2 WHERE id = $1');
  const updateMeta = await c.prepare('UPDATE blob SET metadata = $2 WHERE id = $1');
  const del = await c.prepare('DELETE FROM blob WHERE id = $1');
  const byId =
    (id: number) =>
    (s: DuckDBPreparedStatement): void =>
      s.bindBigInt(1, BigInt(id));
  const has = async (id: number): Promise<boolean> => (await runWith(exists, byId(id))).getRows().length > 0;

  const reserveId = async (): Promise<number> => {
    // Raw SQL may have inserted ids of its own: skip those rather than fail on the primary key
    // (a constraint error would abort the whole batch's transaction).
    for (;;) {
      const id = Number((await runWith(next, () => {})).getRows()[0]![0]);
      if (!(await has(id))) return id;
    }
  };
  const insertWithId = async (id: number, data: Uint8Array, metadata: string | null): Promise<void> => {
    await runWith(insert, (s) => {
      byId(id)(s);
      s.bindBlob(2, data);
      bindText(s, 3, metadata);
    });
  };

  return {
    async get(id): Promise<BlobRecord | undefined> {
      const rows = (await runWith(get, byId(id))).getRows();
      if (rows.length === 0) return undefined;
      const [data, metadata] = rows[0]!;
      return {
        data: data instanceof DuckDBBlobValue ? data.bytes : new Uint8Array(0),
        metadata: metadata === null || metadata === undefined ? null : String(metadata),
      };
    },
    reserveId,
    insertWithId,
    async insert(data, metadata) {
      for (;;) {
        const rows = (
          await runWith(insertNew, (s) => {
            s.bindBlob(1, data);
            bindText(s, 2, metadata);
          })
        ).getRows();
        if (rows.length > 0) return Number(rows[0]![0]);
      }
    },
    async update(id, data, metadata) {
      let r: Awaited<ReturnType<typeof runWith>>;
      if (data !== undefined && metadata !== undefined) {
        r = await runWith(updateBoth, (s) => {
          byId(id)(s);
          s.bindBlob(2, data);
          bindText(s, 3, metadata);
        });
      } else if (data !== undefined) {
        r = await runWith(updateData, (s) => {
          byId(id)(s);
          s.bindBlob(2, data);
        });
      } else if (metadata !== undefined) {
        r = await runWith(updateMeta, (s) => {
          byId(id)(s);
          bindText(s, 2, metadata);
        });
      } else {
        return has(id);
      }
      return r.rowsChanged > 0;
    },
    async delete(id) {
      return (await runWith(del, byId(id))).rowsChanged > 0;
    },
  };
}

/** Ops that hold writes back until the end of the batch. */
interface Deferred {
  flush?(): Promise<void>;
  discard?(): void;
}

class DuckEngine<Ops extends Deferred> implements StoreEngine<Ops> {
  readonly sql: DuckSql;

  constructor(
    private readonly instance: DuckDBInstance,
    private readonly writer: DuckDBConnection,
    private readonly ops: Ops,
  ) {
    this.sql = new DuckSql(instance, writer, async () => {
      await this.ops.flush?.();
    });
  }

  async batch<T>(work: (ops: Ops) => Promise<T>): Promise<T> {
    // DuckDB writes and syncs its WAL at COMMIT; there is no weaker per-commit setting.
    await this.writer.run('BEGIN TRANSACTION');
    let result: T;
    try {
      result = await work(this.ops);
      await this.ops.flush?.();
      await this.writer.run('COMMIT');
    } catch (err) {
      this.ops.discard?.();
      // After an error DuckDB keeps the transaction open but aborted; ROLLBACK ends it either way.
      await this.writer.run('ROLLBACK').catch(() => {});
      throw err;
    }
    return result;
  }

  close(): void {
    this.sql.close();
    this.writer.closeSync();
    this.instance.closeSync();
  }
}

/** DuckDB files carry "DUCK" at byte 8. */
function isDuckDbFile(path: string): boolean {
  return readFileHead(path, 12).subarray(8, 12).toString('latin1') === 'DUCK';
}

async function openDuck<Ops extends Deferred>(
  path: string,
  options: OpenOptions,
  schema: string[],
  makeOps: (c: DuckDBConnection, readOnly: boolean) => Promise<Ops>,
): Promise<DuckEngine<Ops>> {
  const readOnly = options.readOnly ?? false;
  if (readOnly && path !== ':memory:' && !existsSync(path)) {
    throw new StoreError(status.FAILED_PRECONDITION, `${path} does not exist`);
  }
  if (path !== ':memory:') {
    const st = statSync(path, { throwIfNoEntry: false });
    if (st?.isFile() && st.size === 0) {
      // An empty file is a fresh store (as on the other backends); DuckDB itself refuses it.
      if (!readOnly && !existsSync(`${path}.wal`)) unlinkSync(path);
    } else if (st?.isFile() && !isDuckDbFile(path)) {
      // Without this DuckDB tries to read a SQLite file through an extension and says so, obscurely.
      throw new StoreError(
        status.FAILED_PRECONDITION,
        'file is not a duckdb store (made by another backend, or damaged); choose the backend it was made with',
      );
    }
  }
  const instance = await DuckDBInstance.create(path, {
    access_mode: readOnly ? 'READ_ONLY' : 'READ_WRITE',
    enable_external_access: 'false',
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
    allow_community_extensions: 'false',
  });
  let writer: DuckDBConnection | undefined;
  try {
    writer = await instance.connect();
    if (!readOnly) for (const stmt of schema) await writer.run(stmt);
    // From here on no statement can change a setting, whatever the SQL guard lets through.
    await writer.run('SET lock_configuration = true');
    return new DuckEngine(instance, writer, await makeOps(writer, readOnly));
  } catch (err) {
    writer?.closeSync();
    instance.closeSync();
    throw err;
  }
}

export const duckdbBackend: Backend = {
  name: 'duckdb',
  capabilities: { rawSql: true, nativeTransactions: true, snapshot: 'held' },
  async openKv(path, options = {}) {
    return withSnapshots(await openDuck(path, options, KV_SCHEMA, DuckKvOps.create), duckdbSnapshot(path));
  },
  async openBlob(path, options = {}) {
    return withSnapshots(await openDuck(path, options, BLOB_SCHEMA, blobOps), duckdbSnapshot(path));
  },
};
