/**
 * One table as a batch sees it. DuckDB pays about a millisecond per statement, and a batch reads
 * every key it writes and writes one history row per key: a statement each would cost far more
 * than the commit. So:
 *
 * - a batch's writes wait here (its own reads and ranges see them) and reach DuckDB in a few bulk
 *   statements just before COMMIT. Rows known to be new (a read found no row, or the key is above
 *   every key in the table, as history keys always are) go through an appender — no statement;
 *   the others: one row with prepared statements; more, staged in a temporary table through an
 *   appender, then one DELETE and one INSERT OR REPLACE … SELECT. (DuckDB 1.5's INSERT OR REPLACE
 *   of a single row costs several times a DELETE + INSERT, hence knowing which rows are new.)
 * - reads go to a cache of committed rows first (./row-cache.ts), and a key above the largest
 *   stored key is absent without a read.
 */
import type { DuckDBAppender, DuckDBValue } from '@duckdb/node-api';
import type { RangeQuery } from '../backend.js';
import { ReadOnlyWriteError } from './errors.js';
import type { RowCache } from './row-cache.js';
import { stageTable } from './schema.js';
import { appendParam, blobOf, type Param, type Writer } from './writer.js';

export interface Row {
  key: Buffer;
}

export interface TableSpec<R extends Row> {
  table: string;
  /** The key column (BLOB, primary key). */
  key: string;
  /** The other columns and their DuckDB types, in order. */
  columns: readonly (readonly [name: string, type: 'BLOB' | 'BIGINT'])[];
  values(r: R): Param[];
  /** A row read as `key, columns…`. */
  fromRow(row: DuckDBValue[]): R;
  /** Keys-only reads: the select list after the key, and a pending row reduced the same way. */
  keysOnly?: { select: string; row: (r: R) => R };
}

type Entry<R> = { key: Buffer; row: R | null };

/** What the engine does with every table around a transaction. */
export interface DeferredWrites {
  /** Writes the pending rows into the open transaction. */
  flush(): Promise<void>;
  onCommit(): void;
  onRollback(): void;
  stageDdl(): string;
  close(): void;
}

/** Point reads before the largest key is worth a scan (a one-shot CLI read never pays it). */
const READS_BEFORE_MAX = 64;
/** Above this many pending rows a range flushes them rather than merging them into its result. */
const MERGE_LIMIT = 64;
const id = (key: Buffer): string => key.toString('latin1');
const byKey = (a: Row, b: Row): number => Buffer.compare(a.key, b.key);

function inRange(key: Buffer, q: { start: Buffer; end: Buffer | undefined }): boolean {
  return Buffer.compare(key, q.start) >= 0 && (q.end === undefined || Buffer.compare(key, q.end) < 0);
}

export class PendingTable<R extends Row> implements DeferredWrites {
  private readonly pending = new Map<string, Entry<R>>();
  /** With a cache: every write of the open transaction, flushed or not (the cache holds committed rows). */
  private readonly tx = new Map<string, R | null>();
  /** Whether DuckDB (as this transaction sees it) holds a key: from this batch's reads and flushes. */
  private readonly known = new Map<string, boolean>();
  /** No key in the table is above this (null: empty; undefined: not read yet). Kept per transaction. */
  private committedMax: Buffer | null | undefined;
  private txMax: Buffer | null | undefined;
  /** Point reads that went to DuckDB (see `read`). */
  private reads = 0;
  private appender: DuckDBAppender | undefined;
  private stager: DuckDBAppender | undefined;
  private readonly cols: string;
  private readonly stage: string;

  constructor(
    private readonly db: Writer,
    private readonly spec: TableSpec<R>,
    private readonly readOnly: boolean,
    /** A read-only store made before this table existed: it reads as empty. */
    private readonly missing: boolean,
    private readonly cache?: RowCache<R>,
  ) {
    this.cols = [spec.key, ...spec.columns.map(([c]) => c)].join(', ');
    this.stage = stageTable(spec.table);
  }

  /** The temporary table bulk flushes stage rows in (per connection, so created at every open). */
  stageDdl(): string {
    const cols = this.spec.columns.map(([c, t]) => `${c} ${t}`).join(', ');
    return `CREATE TEMP TABLE IF NOT EXISTS ${this.stage} (${this.spec.key} BLOB, ${cols}, del BOOLEAN)`;
  }

  /** A complete cache starts with every row of the table. */
  async load(): Promise<void> {
    if (!this.cache?.complete) return;
    const all = { start: Buffer.alloc(0), end: undefined, limit: 2 ** 62, reverse: false };
    for (const r of await this.readRange(all, false, all.limit)) this.cache.set(id(r.key), r);
  }

  get(key: Buffer): R | undefined | Promise<R | undefined> {
    const k = id(key);
    if (this.cache) {
      const written = this.tx.get(k);
      if (written !== undefined) return written ?? undefined;
      const cached = this.cache.get(k);
      if (cached !== undefined) return cached ?? undefined;
    } else {
      const entry = this.pending.get(k);
      if (entry) return entry.row ?? undefined;
    }
    if (this.missing) return undefined;
    return this.read(k, key);
  }

  private async read(k: string, key: Buffer): Promise<R | undefined> {
    // A stream of new keys reads each key before writing it. Keys above every stored key (ascending
    // ids, timestamps) are absent without a read once the largest key is known.
    if (this.txMax === undefined && ++this.reads > READS_BEFORE_MAX) await this.loadMax();
    if (this.above(key)) {
      this.known.set(k, false);
      return undefined;
    }
    const rows = await this.db.rows(`SELECT ${this.cols} FROM ${this.spec.table} WHERE ${this.spec.key} = $1`, [key]);
    const row = rows.length > 0 ? this.spec.fromRow(rows[0]!) : null;
    this.known.set(k, row !== null);
    // Not written in this transaction (else it would be in `tx`): what DuckDB answered is committed.
    this.cache?.set(k, row);
    return row ?? undefined;
  }

  /** Reads the largest key (a scan of the key column, once per open store). */
  private async loadMax(): Promise<void> {
    const rows = await this.db.rows(`SELECT max(${this.spec.key}) FROM ${this.spec.table}`);
    this.txMax = rows[0]![0] === null ? null : blobOf(rows[0]![0]!);
  }

  put(row: R): void {
    this.write(row.key, row);
  }

  delete(key: Buffer): void {
    this.write(key, null);
  }

  private write(key: Buffer, row: R | null): void {
    if (this.readOnly) throw new ReadOnlyWriteError();
    const k = id(key);
    this.pending.set(k, { key, row });
    if (this.cache) this.tx.set(k, row);
  }

  /** Rows in `[start, end)` in key order, pending writes included. */
  async range(q: RangeQuery, keysOnly = false): Promise<R[]> {
    if (this.cache?.complete) return this.rangeInMemory(q);
    if (this.pending.size > MERGE_LIMIT) await this.flush();
    const overlay = [...this.pending.values()].filter((e) => inRange(e.key, q));
    // Each pending key hides at most one stored row: read that many more.
    const stored = await this.readRange(q, keysOnly, q.limit + overlay.length);
    if (overlay.length === 0) return stored;
    const reduce = keysOnly && this.spec.keysOnly ? this.spec.keysOnly.row : (r: R) => r;
    return mergeRange(stored, overlay, q, reduce);
  }

  private rangeInMemory(q: RangeQuery): R[] {
    const view = new Map(this.cache!.values().map((r) => [id(r.key), r]));
    for (const [k, w] of this.tx) {
      if (w) view.set(k, w);
      else view.delete(k);
    }
    const out = [...view.values()].filter((r) => inRange(r.key, q));
    out.sort(q.reverse ? (a, b) => byKey(b, a) : byKey);
    return out.slice(0, q.limit);
  }

  private async readRange(q: RangeQuery, keysOnly: boolean, limit: number): Promise<R[]> {
    if (this.missing) return [];
    const { key, table } = this.spec;
    const select = keysOnly && this.spec.keysOnly ? `${key}, ${this.spec.keysOnly.select}` : this.cols;
    const end = q.end !== undefined ? ` AND ${key} < $3` : '';
    const rows = await this.db.rows(
      `SELECT ${select} FROM ${table} WHERE ${key} >= $1${end} ORDER BY ${key} ${q.reverse ? 'DESC' : 'ASC'} LIMIT $2`,
      q.end !== undefined ? [q.start, BigInt(limit), q.end] : [q.start, BigInt(limit)],
    );
    return rows.map((r) => this.spec.fromRow(r));
  }

  /** Number of rows in `[start, end)`: flushes first, then DuckDB counts. */
  async count(start: Buffer, end: Buffer | undefined): Promise<number> {
    await this.flush();
    const { key, table } = this.spec;
    const rows = await this.db.rows(
      `SELECT count(*) FROM ${table} WHERE ${key} >= $1${end !== undefined ? ` AND ${key} < $2` : ''}`,
      end !== undefined ? [start, end] : [start],
    );
    return Number(rows[0]![0]);
  }

  /** Whether DuckDB holds `key` in this transaction, if known without a read. */
  private stored(k: string): boolean | undefined {
    const known = this.known.get(k);
    if (known !== undefined || !this.cache) return known;
    // Not flushed in this transaction (else it would be known): DuckDB holds the committed row.
    const cached = this.cache.get(k);
    return cached === undefined ? undefined : cached !== null;
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const entries = [...this.pending.values()];
    this.pending.clear();
    const fresh: R[] = [];
    const others: Entry<R>[] = [];
    if (this.txMax === undefined && entries.some((e) => e.row && this.stored(id(e.key)) === undefined)) {
      await this.loadMax();
    }
    for (const e of entries) {
      const there = this.stored(id(e.key));
      if (e.row === null) {
        if (there !== false) others.push(e);
      } else if (there === false || (there === undefined && this.above(e.key))) {
        fresh.push(e.row);
      } else {
        others.push(e);
      }
    }
    try {
      if (fresh.length > 0) await this.append(fresh);
      if (others.length === 1) await this.writeOne(others[0]!);
      else if (others.length > 1) await this.writeStaged(others);
    } catch (err) {
      this.dropAppenders();
      throw err;
    }
    for (const e of entries) {
      this.known.set(id(e.key), e.row !== null);
      if (e.row && this.txMax !== undefined && (this.txMax === null || Buffer.compare(e.key, this.txMax) > 0)) {
        this.txMax = e.key;
      }
    }
  }

  private above(key: Buffer): boolean {
    return this.txMax === null || (this.txMax !== undefined && Buffer.compare(key, this.txMax) > 0);
  }

  private async append(rows: R[]): Promise<void> {
    this.appender ??= await this.db.serial(() => this.db.conn.createAppender(this.spec.table));
    const a = this.appender;
    for (const r of rows) {
      appendParam(a, r.key);
      for (const v of this.spec.values(r)) appendParam(a, v);
      a.endRow();
    }
    await this.db.serial(async () => a.flushSync());
  }

  private async writeOne(e: Entry<R>): Promise<void> {
    const { key, table, columns } = this.spec;
    if (e.row !== null && this.stored(id(e.key)) === true) {
      const set = columns.map(([c], i) => `${c} = $${i + 2}`).join(', ');
      await this.db.exec(`UPDATE ${table} SET ${set} WHERE ${key} = $1`, [e.key, ...this.spec.values(e.row)]);
      return;
    }
    await this.db.exec(`DELETE FROM ${table} WHERE ${key} = $1`, [e.key]);
    if (e.row !== null) {
      const params = columns.map((_, i) => `$${i + 2}`).join(', ');
      await this.db.exec(`INSERT INTO ${table} (${this.cols}) VALUES ($1, ${params})`, [
        e.key,
        ...this.spec.values(e.row),
      ]);
    }
  }

  private async writeStaged(entries: Entry<R>[]): Promise<void> {
    this.stager ??= await this.db.serial(() => this.db.conn.createAppender(this.stage, 'main', 'temp'));
    const a = this.stager;
    const nulls = this.spec.columns.map(() => null);
    let deletes = 0;
    for (const e of entries) {
      appendParam(a, e.key);
      for (const v of e.row ? this.spec.values(e.row) : nulls) appendParam(a, v);
      appendParam(a, e.row === null);
      a.endRow();
      if (e.row === null) deletes++;
    }
    await this.db.serial(async () => a.flushSync());
    const { key, table } = this.spec;
    if (deletes > 0) {
      await this.db.exec(`DELETE FROM ${table} WHERE ${key} IN (SELECT ${key} FROM ${this.stage} WHERE del)`);
    }
    if (deletes < entries.length) {
      await this.db.exec(`INSERT OR REPLACE INTO ${table} SELECT ${this.cols} FROM ${this.stage} WHERE NOT del`);
    }
    await this.db.exec(`DELETE FROM ${this.stage}`);
  }

  /** After an error an appender may still hold rows: never reuse it. */
  private dropAppenders(): void {
    for (const a of [this.appender, this.stager]) {
      try {
        // Drop rows it still holds: closing flushes them.
        a?.clear();
        a?.closeSync();
      } catch {
        // It failed already; the batch is being abandoned.
      }
    }
    this.appender = undefined;
    this.stager = undefined;
  }

  /** The transaction committed. */
  onCommit(): void {
    this.committedMax = this.txMax;
    this.known.clear();
    if (this.cache) for (const [k, row] of this.tx) this.cache.set(k, row);
    this.tx.clear();
  }

  /** The transaction was rolled back: forget its writes and what it learnt. */
  onRollback(): void {
    this.pending.clear();
    this.tx.clear();
    this.known.clear();
    this.txMax = this.committedMax;
  }

  close(): void {
    this.dropAppenders();
  }
}

/** Stored rows with pending writes laid over them, in order, cut to the limit. */
function mergeRange<R extends Row>(stored: R[], overlay: Entry<R>[], q: RangeQuery, reduce: (r: R) => R): R[] {
  const hidden = new Set(overlay.map((e) => id(e.key)));
  const merged = stored.filter((r) => !hidden.has(id(r.key)));
  for (const e of overlay) if (e.row) merged.push(reduce(e.row));
  merged.sort(q.reverse ? (a, b) => byKey(b, a) : byKey);
  return merged.slice(0, q.limit);
}
