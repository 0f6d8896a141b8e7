/** Raw SQL on the KV or BLOB store, for backends whose capabilities name a SQL dialect. */
import type { SqlOps, SqlValue, StoreEngine } from '../backends/backend.js';
import { invalidArgument, unimplemented } from '../errors.js';
import type { BlobStore } from './blob/blob-store.js';
import type { GroupCommitter } from './group-commit.js';
import type { KvStore } from './kv/kv-store.js';
import type { MvccBatch } from './kv/mvcc-batch.js';

export type Target = 'kv' | 'blob';

/** Applies what raw SQL wrote to the `kv` table as one revision, so watchers see it. */
async function applyKvWrites(sql: SqlOps, b: MvccBatch): Promise<void> {
  const writes = (await sql.takeKvWrites?.()) ?? [];
  if (writes.length === 0) return;
  await b.mutate(async () => {
    for (const { key, value } of writes) {
      const prev = await b.ops.get(key);
      if (value !== null) await b.put(key, value, 0n, prev);
      else if (prev) await b.delete(prev);
    }
  });
}

export class QueryStore {
  constructor(
    private readonly backendName: string,
    /** Backends that have raw SQL, named when this one has none. */
    private readonly sqlBackends: readonly string[],
    private readonly kv: KvStore,
    private readonly blob: BlobStore,
  ) {}

  private sqlOf(engine: StoreEngine<unknown>): SqlOps {
    if (!engine.sql) {
      throw unimplemented(
        `raw SQL is not available on the ${this.backendName} backend; it is supported by: ${this.sqlBackends.join(', ')}`,
      );
    }
    return engine.sql;
  }

  private target(target: Target): { sql: SqlOps; engine: StoreEngine<unknown> } {
    if (target === 'kv') return { sql: this.sqlOf(this.kv.engine), engine: this.kv.engine };
    if (target === 'blob') return { sql: this.sqlOf(this.blob.engine), engine: this.blob.engine };
    throw invalidArgument(`unknown target store ${String(target)}; use KV (0) or BLOB (1)`);
  }

  /** Runs `work` in a write batch of the target store (KV: SQL writes to `kv` become a revision). */
  private inBatch<T>(target: Target, sql: SqlOps, work: () => Promise<T> | T): Promise<T> {
    if (target === 'kv') {
      return this.kv.committer.run(async (b) => {
        const result = await work();
        await applyKvWrites(sql, b);
        return result;
      });
    }
    return (this.blob.committer as GroupCommitter<unknown>).run(work);
  }

  /**
   * Rows as they are read. A read-only statement streams straight from a reader; one that writes
   * (INSERT … RETURNING) runs inside a group-commit batch and its rows are released after commit.
   */
  async *query(sqlText: string, target: Target): AsyncGenerator<SqlValue[]> {
    const { sql, engine } = this.target(target);
    let readOnly: boolean;
    try {
      readOnly = await sql.isReadOnly(sqlText);
    } catch (err) {
      throw engine.mapError(err);
    }
    if (readOnly) {
      try {
        for await (const row of sql.query(sqlText)) yield row;
      } catch (err) {
        throw engine.mapError(err);
      }
      return;
    }
    const rows = await this.inBatch(target, sql, async () => {
      const out: SqlValue[][] = [];
      for await (const row of sql.query(sqlText)) out.push(row);
      return out;
    });
    yield* rows;
  }

  /** Whether `sql` only reads (asked by the permission check before a Query runs; runs nothing). */
  async isReadOnly(sqlText: string, target: Target): Promise<boolean> {
    const { sql, engine } = this.target(target);
    try {
      return await sql.isReadOnly(sqlText);
    } catch (err) {
      throw engine.mapError(err);
    }
  }

  /**
   * Runs one statement and answers the number of rows it changed, once committed. Async so that a
   * refusal (no SQL on this backend, unknown target) is a rejection, as for every other call.
   */
  async execute(sqlText: string, target: Target): Promise<number> {
    const { sql } = this.target(target);
    return this.inBatch(target, sql, () => sql.execute(sqlText));
  }
}
