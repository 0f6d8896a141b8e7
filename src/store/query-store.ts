/** Raw SQL on the KV or BLOB store, for backends that declare the `rawSql` capability. */
import type { SqlOps, SqlValue, StoreEngine } from '../backends/backend.js';
import { invalidArgument, toStoreError, unimplemented } from './errors.js';
import type { GroupCommitter } from './group-commit.js';

export type Target = 'kv' | 'blob';

interface SqlTarget {
  engine: StoreEngine<unknown>;
  committer: GroupCommitter<unknown>;
}

export class QueryStore {
  constructor(
    private readonly backendName: string,
    private readonly sqlBackends: string[],
    private readonly targets: Record<Target, SqlTarget>,
  ) {}

  private sqlFor(target: Target): { sql: SqlOps; committer: GroupCommitter<unknown> } {
    const t = this.targets[target];
    if (!t) throw invalidArgument(`unknown target store ${String(target)}; use KV (0) or BLOB (1)`);
    if (!t.engine.sql) {
      throw unimplemented(
        `raw SQL is not available on the ${this.backendName} backend; ` +
          `it is supported by: ${this.sqlBackends.join(', ')}`,
      );
    }
    return { sql: t.engine.sql, committer: t.committer };
  }

  /**
   * Rows as they are read. A read-only statement streams straight from a reader; one that writes
   * (INSERT … RETURNING) runs inside a group-commit batch and its rows are released after commit.
   */
  async *query(sql: string, target: Target): AsyncGenerator<SqlValue[]> {
    const { sql: ops, committer } = this.sqlFor(target);
    let readOnly: boolean;
    try {
      readOnly = await ops.isReadOnly(sql);
    } catch (err) {
      throw toStoreError(err);
    }
    if (readOnly) {
      try {
        for await (const row of ops.query(sql)) yield row;
      } catch (err) {
        throw toStoreError(err);
      }
      return;
    }
    const rows = await committer
      .run(async () => {
        const out: SqlValue[][] = [];
        for await (const row of ops.query(sql)) out.push(row);
        return out;
      })
      .catch((err: unknown) => {
        throw toStoreError(err);
      });
    yield* rows;
  }

  /** Whether `sql` only reads (asked by the permission check before a Query runs; runs nothing). */
  async isReadOnly(sql: string, target: Target): Promise<boolean> {
    return this.sqlFor(target).sql.isReadOnly(sql);
  }

  /** Runs one statement and answers the number of rows it changed, once committed. */
  async execute(sql: string, target: Target): Promise<number> {
    const { sql: ops, committer } = this.sqlFor(target);
    return committer
      .run(() => ops.execute(sql))
      .catch((err: unknown) => {
        throw toStoreError(err);
      });
  }
}
