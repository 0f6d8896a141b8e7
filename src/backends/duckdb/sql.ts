/**
 * Raw SQL on a DuckDB store: read-only statements stream from a small pool of reader connections
 * beside the writes (DuckDB is MVCC); writing statements run on the writer, inside their batch.
 */
import {
  DuckDBBlobValue,
  type DuckDBConnection,
  DuckDBDecimalValue,
  type DuckDBInstance,
  type DuckDBType,
  DuckDBTypeId,
  type DuckDBValue,
  ResultReturnType,
  StatementType,
} from '@duckdb/node-api';
import { readOnlyStore } from '../../errors.js';
import type { SqlOps, SqlValue } from '../backend.js';
import { assertSqlAllowed, SqlRefusedError, tokenize } from '../sql-guard.js';
import type { Writer } from './writer.js';

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
const WRITE_TYPES = new Set<number>([StatementType.INSERT, StatementType.UPDATE, StatementType.DELETE]);

/** DuckDB's refusals of a write to a view. */
const VIEW_WRITE = /is not an? table|Can only (update|delete from|insert into) base table/i;

export class DuckSql implements SqlOps {
  private readonly idle: DuckDBConnection[] = [];
  private readonly open = new Set<DuckDBConnection>();

  constructor(
    private readonly instance: DuckDBInstance,
    private readonly writer: Writer,
    /** Puts the batch's pending writes into the transaction, so raw SQL sees them. */
    private readonly flushPending: () => Promise<void>,
    /** The KV store, whose `kv` is a view raw SQL may only read. */
    private readonly kvStore: boolean,
    private readonly readOnly: boolean,
  ) {}

  /**
   * DuckDB refuses writes to a view with a binder error; a write to `kv` gets a refusal that says
   * why: every KV write must be a revision that watchers see, and raw SQL here cannot make one. On
   * a read-only store, that it is read-only is the answer, as for every other write.
   */
  private explain(err: unknown, sql: string): unknown {
    const message = err instanceof Error ? err.message : '';
    if (
      this.kvStore &&
      VIEW_WRITE.test(message) &&
      tokenize(sql).some((t) => t.kind === 'word' && t.text.toLowerCase() === 'kv')
    ) {
      if (this.readOnly) return readOnlyStore();
      return new SqlRefusedError(
        'writes to the kv table are refused on the duckdb backend: kv is a read-only view of the revisioned ' +
          'key space; write with Kv Set/Delete or the etcd API (Put, DeleteRange, Txn) so that every change ' +
          'is a revision watchers see',
      );
    }
    return err;
  }

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
    } catch (err) {
      throw this.explain(err, sql);
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
    const reader = await this.writer
      .serial(() => this.writer.conn.runAndReadAll(sql))
      .catch((err: unknown) => {
        throw this.explain(err, sql);
      });
    yield* convertRows(reader.getRows(), reader.columnTypes());
  }

  async execute(sql: string): Promise<number> {
    assertSqlAllowed(sql);
    await this.flushPending();
    const result = await this.writer
      .serial(() => this.writer.conn.run(sql))
      .catch((err: unknown) => {
        throw this.explain(err, sql);
      });
    if (result.returnType === ResultReturnType.QUERY_RESULT) {
      // INSERT … RETURNING answers rows, not a count: what it returned is what it changed.
      const chunks = await result.fetchAllChunks();
      return WRITE_TYPES.has(result.statementType) ? chunks.reduce((n, c) => n + c.rowCount, 0) : 0;
    }
    return result.rowsChanged;
  }

  close(): void {
    for (const c of this.open) c.closeSync();
    this.open.clear();
    this.idle.length = 0;
  }
}
