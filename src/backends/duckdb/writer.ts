/** The writer connection of a store, used one statement at a time. */
import type {
  DuckDBAppender,
  DuckDBConnection,
  DuckDBPreparedStatement,
  DuckDBResultReader,
  DuckDBValue,
} from '@duckdb/node-api';
import { DuckDBBlobValue } from '@duckdb/node-api';

/** A value bound to a statement parameter or appended to a row. */
export type Param = Buffer | Uint8Array | bigint | string | boolean | null;

function bindParam(s: DuckDBPreparedStatement, i: number, v: Param): void {
  if (v === null) s.bindNull(i);
  else if (typeof v === 'bigint') s.bindBigInt(i, v);
  else if (typeof v === 'string') s.bindVarchar(i, v);
  else if (typeof v === 'boolean') s.bindBoolean(i, v);
  else s.bindBlob(i, v);
}

export function appendParam(a: DuckDBAppender, v: Param): void {
  if (v === null) a.appendNull();
  else if (typeof v === 'bigint') a.appendBigInt(v);
  else if (typeof v === 'string') a.appendVarchar(v);
  else if (typeof v === 'boolean') a.appendBoolean(v);
  else a.appendBlob(v);
}

/** A BLOB column as a Buffer (the API answers a fresh copy, wrapped). */
export function blobOf(v: DuckDBValue): Buffer {
  if (v instanceof DuckDBBlobValue) {
    const b = v.bytes;
    return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  }
  return v === null || v === undefined ? Buffer.alloc(0) : Buffer.from(String(v));
}

export class Writer {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly statements = new Map<string, Promise<DuckDBPreparedStatement>>();
  /** `wanted`: a batch is open but has not needed DuckDB yet. */
  private transaction: 'none' | 'wanted' | 'open' = 'none';

  constructor(readonly conn: DuckDBConnection) {}

  /**
   * Runs `work` once every earlier call has finished. The store may issue engine calls of one batch
   * concurrently, and binding a prepared statement while it still executes would change its
   * parameters under it.
   */
  serial<T>(work: () => Promise<T>, inTransaction = true): Promise<T> {
    const run = async (): Promise<T> => {
      if (inTransaction && this.transaction === 'wanted') {
        this.transaction = 'open';
        await this.run('BEGIN TRANSACTION');
      }
      return work();
    };
    const next = this.tail.then(run, run);
    this.tail = next.catch(() => {});
    return next;
  }

  /**
   * Starts a batch. Its DuckDB transaction begins with its first statement: a batch answered from
   * memory (reads of cached rows) costs no statement at all. Only this engine writes the store, so
   * what it read before the transaction began is what the transaction sees.
   */
  begin(): void {
    this.transaction = 'wanted';
  }

  /** Ends the batch: commits (or rolls back) its transaction if it began one. */
  end(commit: boolean): Promise<void> {
    return this.serial(async () => {
      const open = this.transaction === 'open';
      this.transaction = 'none';
      if (!open) return;
      if (!commit) {
        await this.run('ROLLBACK');
        return;
      }
      try {
        await this.run('COMMIT');
      } catch (err) {
        // Whatever state a failed COMMIT left, the next batch starts clean.
        await this.run('ROLLBACK').catch(() => {});
        throw err;
      }
    }, false);
  }

  /** The prepared statement for `sql`, prepared once per connection. */
  private prepared(sql: string): Promise<DuckDBPreparedStatement> {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      stmt = this.conn.prepare(sql);
      this.statements.set(sql, stmt);
      stmt.catch(() => this.statements.delete(sql));
    }
    return stmt;
  }

  /** Runs buffdb's own `sql` (prepared once) with `params` ($1, $2, …) and reads every row. */
  exec(sql: string, params: readonly Param[] = []): Promise<DuckDBResultReader> {
    return this.serial(() => this.run(sql, params));
  }

  private async run(sql: string, params: readonly Param[] = []): Promise<DuckDBResultReader> {
    const stmt = await this.prepared(sql);
    stmt.clearBindings();
    params.forEach((p, i) => {
      bindParam(stmt, i + 1, p);
    });
    return stmt.runAndReadAll();
  }

  async rows(sql: string, params: readonly Param[] = []): Promise<DuckDBValue[][]> {
    return (await this.exec(sql, params)).getRows();
  }

  close(): void {
    this.statements.clear();
    this.conn.closeSync();
  }
}
