/**
 * Committed rows of a table kept in memory, so reads need no statement (DuckDB pays about a
 * millisecond for a point read, and every write of the store reads the key's record first).
 * Only this process writes the store (DuckDB locks the file) and raw SQL cannot write kv_state or
 * `_buffdb_*` tables, so a cached row stays true until this engine commits a change to it.
 */

/** Bytes a cached entry costs beyond its key and value (the Map slot, the record object). */
const OVERHEAD = 96;

export class RowCache<R> {
  /** null: the key is known to be absent. Least recently used first. */
  private readonly rows = new Map<string, R | null>();
  private bytes = 0;

  private constructor(
    /** Bytes of keys and values held at most; Infinity: every row of the table (a miss is an absent key). */
    private readonly budget: number,
    private readonly sizeOf: (row: R) => number,
  ) {}

  /** A bounded cache of recently read or written rows (and of keys found absent). */
  static bounded<R>(budget: number, sizeOf: (row: R) => number): RowCache<R> {
    return new RowCache(budget, sizeOf);
  }

  /** The whole table, for small ones: load every row with `set` once, at open. */
  static complete<R>(sizeOf: (row: R) => number): RowCache<R> {
    return new RowCache(Number.POSITIVE_INFINITY, sizeOf);
  }

  get complete(): boolean {
    return this.budget === Number.POSITIVE_INFINITY;
  }

  /** The row; null if the key is known to be absent; undefined if unknown. */
  get(k: string): R | null | undefined {
    const row = this.rows.get(k);
    if (row === undefined) return this.complete ? null : undefined;
    if (!this.complete) {
      this.rows.delete(k);
      this.rows.set(k, row);
    }
    return row;
  }

  set(k: string, row: R | null): void {
    const old = this.rows.get(k);
    if (old !== undefined) {
      this.bytes -= this.cost(k, old);
      this.rows.delete(k);
    }
    if (row === null && this.complete) return;
    this.rows.set(k, row);
    this.bytes += this.cost(k, row);
    for (const [first, r] of this.rows) {
      if (this.bytes <= this.budget) break;
      this.rows.delete(first);
      this.bytes -= this.cost(first, r);
    }
  }

  /** Every cached row (of a complete cache: the table). */
  values(): R[] {
    return [...this.rows.values()].filter((r): r is R => r !== null);
  }

  private cost(k: string, row: R | null): number {
    return OVERHEAD + k.length + (row === null ? 0 : this.sizeOf(row));
  }
}
