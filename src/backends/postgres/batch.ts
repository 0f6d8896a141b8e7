/**
 * One engine batch on PostgreSQL: one transaction on one connection. Statements that answer
 * nothing (puts, deletes, inserts) are sent at once and not waited for — the driver pipelines
 * them — so a batch of a thousand writes costs a few round trips, not a thousand. Their errors
 * surface at commit (and then abandon the batch, as the contract asks). Reads queue behind the
 * writes on the same connection, so a batch always reads its own writes.
 *
 * Every batch first locks the store's `_buffdb_lock` row (SELECT … FOR UPDATE): batches of all
 * servers on one store run one at a time, so commit order is revision order, blob ids follow
 * answer order, and a buffdb transaction validated in a batch stays valid until it commits.
 */
import type postgres from 'postgres';
import { OutcomeUnknownError } from '../../errors.js';
import type { KvRecord, MapName, MapOps, RangeQuery } from '../backend.js';
import type { ConnectionWatch, Sql } from './client.js';
import { isConnectionError } from './errors.js';
import { toRecord } from './records.js';
import type { Tables } from './schema.js';

export type Reserved = postgres.ReservedSql<{ bigint: bigint }>;
type Params = postgres.ParameterOrJSON<never>[];

/** A raw SQL transaction on the sandbox connection that commits with this batch. */
export interface SandboxTx {
  commit(): Promise<void>;
  rollback(): Promise<void>;
  /** Raw SQL's staged writes to the `kv` view, taken (deleted) inside its transaction. */
  takeKvWrites(): Promise<unknown[][]>;
}

/** Raised when raw SQL must run alone in a batch: the group committer then re-runs every job on its own. */
export class RunAloneError extends Error {
  override readonly name = 'RunAloneError';
}

const id = (key: Buffer): string => key.toString('latin1');

/**
 * Map values this long (blob chunks: 1 MiB) are written one statement each, as base64 text the
 * database decodes, and read back as base64: the driver sends and reads bytea only as hex text, and
 * in an array parameter escapes it again — about 17 bytes of short-lived strings and buffers per
 * byte of a chunk, which the garbage collector let pile up to hundreds of MiB over a 1 GiB upload.
 */
const LARGE_VALUE = 64 * 1024;

export class Batch {
  private readonly pending: Promise<unknown>[] = [];
  /** Records read or written in this batch (undefined: absent); valid while the lock is held. */
  private readonly kvCache = new Map<string, KvRecord | undefined>();
  private readonly mapCache = new Map<MapName, Map<string, Buffer | undefined>>();
  /**
   * KV records and map entries written and not yet sent (null: deleted): sent in bulk — one
   * statement per table — before the batch reads a range and at commit.
   */
  private readonly kvPending = new Map<string, KvRecord | null>();
  private readonly mapPending = new Map<MapName, Map<string, [Buffer, Buffer | null]>>();
  /** Maps read whole into the cache: a key missing there is absent. */
  private readonly complete = new Set<MapName>();
  /** Something was written: commit notifies listeners (KV) and raw SQL may no longer join. */
  dirty = false;
  sandbox: SandboxTx | undefined;
  /** Runs on this batch's connection once raw SQL's transaction has committed. */
  afterSandbox: (() => Promise<void>) | undefined;

  /**
   * The connection failed: nothing more is sent on it (the driver would write to a closed socket).
   * Set by the first query that fails with a connection error.
   */
  private lost: unknown;

  /** Stops following the connection's close (see ConnectionWatch). */
  unwatch: (() => void) | undefined;

  constructor(
    readonly conn: Reserved,
    readonly t: Tables,
  ) {}

  /** Sends `text` unless the connection is lost; notes a lost connection from the outcome. */
  private run<T>(make: () => Promise<T>): Promise<T> {
    if (this.lost !== undefined) return Promise.reject(this.lost);
    const q = make();
    q.catch((err: unknown) => {
      if (isConnectionError(err)) this.lost ??= err;
    });
    return q;
  }

  /**
   * KV stores: buffdb writes after raw SQL in the same batch (the revision of raw SQL's kv writes);
   * raw SQL there locks nothing buffdb writes. BLOB stores: raw SQL may hold blob rows, so later
   * writes go to a batch of their own.
   */
  writesAfterSandbox = false;

  private writing(): void {
    if (this.sandbox && !this.writesAfterSandbox) {
      throw new RunAloneError('raw SQL ran in this batch: later writes go to a batch of their own');
    }
    this.dirty = true;
  }

  /**
   * Whether the connection may go back to the pool: not once it closed (the driver reconnects a
   * closed connection by itself; releasing it would put it among the open ones).
   */
  get reusable(): boolean {
    return this.lost === undefined;
  }

  /** The connection closed under this batch: nothing more may be sent on it. */
  connectionClosed(): void {
    this.lost ??= Object.assign(new Error('the connection to the database closed'), { code: 'CONNECTION_CLOSED' });
  }

  /** BEGIN, the lock row (unless read-only), the meta map and the hinted keys, in one round trip. */
  async start(
    begin: string,
    lockTable: string | undefined,
    watch: ConnectionWatch,
    keys: readonly string[] | undefined,
  ): Promise<void> {
    watch.capture = (id) => {
      this.unwatch = watch.watch(id, () => this.connectionClosed());
    };
    const sent = [this.run(() => this.conn.unsafe(begin).execute())];
    if (lockTable)
      sent.push(this.run(() => this.conn.unsafe(`SELECT n FROM ${lockTable} WHERE id = 1 FOR UPDATE`).execute()));
    await Promise.all([...sent, this.preload('meta'), ...(keys?.length ? [this.prefetchKv(keys)] : [])]);
  }

  /** Sends a statement now; its outcome is checked at commit. */
  send(text: string, params: Params = []): void {
    this.writing();
    const q = this.run(() => this.conn.unsafe(text, params).execute());
    // Checked (and rethrown) at commit; never an unhandled rejection meanwhile.
    q.catch(() => {});
    this.pending.push(q);
  }

  /** A statement whose rows are needed now. */
  async rows(text: string, params: Params = []): Promise<postgres.Row[]> {
    const rows = await this.run(() => this.conn.unsafe(text, params));
    // A failed pipelined write aborts the transaction; say that, not "transaction is aborted".
    await this.checkPending();
    return rows as unknown as postgres.Row[];
  }

  async rawRows(text: string, params: Params = []): Promise<unknown[][]> {
    const rows = (await this.run(() => this.conn.unsafe(text, params).values())) as unknown as unknown[][];
    await this.checkPending();
    return rows;
  }

  /** A write whose row count is needed now. */
  async count(text: string, params: Params = []): Promise<number> {
    this.writing();
    const result = await this.run(() => this.conn.unsafe(text, params));
    await this.checkPending();
    return result.count;
  }

  private async checkPending(): Promise<void> {
    if (this.pending.length === 0) return;
    const done = this.pending.splice(0);
    await Promise.all(done);
  }

  /** Waits for every write sent, then commits (raw SQL's transaction first, see sql.ts). */
  async commit(notify: Params | undefined): Promise<void> {
    this.flush();
    // NOTIFY is delivered at commit, so listeners never hear of a batch that rolled back.
    if (notify && this.dirty)
      this.pending.push(this.run(() => this.conn.unsafe('SELECT pg_notify($1, $2)', notify).execute()));
    await this.checkPending();
    if (this.sandbox) {
      await this.sandbox.commit();
      try {
        await this.afterSandbox?.();
        await this.run(() => this.conn.unsafe('COMMIT'));
      } catch (err) {
        // Raw SQL's part is committed: the batch must not run again.
        throw new OutcomeUnknownError(
          `raw SQL committed but buffdb's part of the batch failed: ${String((err as Error).message)}`,
        );
      }
      return;
    }
    try {
      await this.run(() => this.conn.unsafe('COMMIT'));
    } catch (err) {
      if (!isConnectionError(err)) throw err;
      throw new OutcomeUnknownError(
        `the connection to the database was lost during COMMIT: the writes may or may not be committed (${String((err as Error).message)})`,
      );
    }
  }

  /**
   * Abandons the transaction. After a lost connection there is nothing to roll back (the database
   * ended the session), and a statement sent on it would wait for a reconnect: none is sent.
   */
  async rollback(): Promise<void> {
    await Promise.allSettled(this.pending.splice(0));
    if (this.lost !== undefined) return;
    await this.sandbox?.rollback().catch(() => {});
    await this.run(() => this.conn.unsafe('ROLLBACK')).catch(() => {});
  }

  // ---------------------------------------------------------------- KV records

  cachedKv(key: Buffer): KvRecord | undefined | null {
    const k = id(key);
    return this.kvCache.has(k) ? this.kvCache.get(k) : null;
  }

  rememberKv(key: Buffer, record: KvRecord | undefined): void {
    this.kvCache.set(id(key), record);
  }

  // ---------------------------------------------------------------- maps

  private cacheOf(map: MapName): Map<string, Buffer | undefined> {
    let c = this.mapCache.get(map);
    if (!c) {
      c = new Map();
      this.mapCache.set(map, c);
    }
    return c;
  }

  mapOps(): MapOps {
    const t = this.t;
    return {
      get: (map, key) => {
        const c = this.cacheOf(map);
        const k = id(key);
        if (c.has(k) || this.complete.has(map)) return c.get(k);
        // base64, not the driver's bytea text (hex: two characters a byte), see LARGE_VALUE.
        return this.rawRows(`SELECT encode(v, 'base64') FROM ${t.map(map)} WHERE k = $1`, [key]).then((rows) => {
          const text = rows[0]?.[0] as string | undefined;
          const v = text === undefined ? undefined : Buffer.from(text, 'base64');
          c.set(k, v);
          return v;
        });
      },
      put: (map, key, value) => this.writeMap(map, key, value),
      delete: (map, key) => this.writeMap(map, key, null),
      range: (map, q) => {
        this.flush();
        return this.rawRows(rangeSql(t.map(map), 'k', 'k, v', q), rangeParams(q)) as Promise<[Buffer, Buffer][]>;
      },
      rangeHeads: (map, q, bytes) => {
        this.flush();
        const cut = `k, substring(v from 1 for ${Math.trunc(bytes)})`;
        return this.rawRows(rangeSql(t.map(map), 'k', cut, q), rangeParams(q)) as Promise<[Buffer, Buffer][]>;
      },
    };
  }

  private writeMap(map: MapName, key: Buffer, value: Buffer | null): void {
    this.writing();
    const k = id(key);
    this.cacheOf(map).set(k, value ?? undefined);
    let pending = this.mapPending.get(map);
    if (!pending) {
      pending = new Map();
      this.mapPending.set(map, pending);
    }
    pending.set(k, [key, value]);
  }

  writeKv(key: Buffer, record: KvRecord | null): void {
    this.writing();
    const k = id(key);
    this.kvCache.set(k, record ?? undefined);
    this.kvPending.set(k, record);
  }

  /** Sends the pending writes: per table one upsert of every row written and one delete. */
  flush(): void {
    const bytes = (xs: Buffer[]) => this.conn.array(xs, 17) as never;
    const ints = (xs: (number | bigint)[]) => this.conn.array(xs.map(String), 20) as never;
    if (this.kvPending.size > 0) {
      const puts: KvRecord[] = [];
      const dels: Buffer[] = [];
      for (const [k, r] of this.kvPending) {
        if (r) puts.push(r);
        else dels.push(Buffer.from(k, 'latin1'));
      }
      this.kvPending.clear();
      if (dels.length > 0) this.send(`DELETE FROM ${this.t.kvState} WHERE key = ANY($1)`, [bytes(dels)]);
      if (puts.length > 0) {
        this.send(
          `INSERT INTO ${this.t.kvState} (key, value, create_rev, mod_rev, version, lease)
            SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::int8[], $4::int8[], $5::int8[], $6::int8[])
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, create_rev = EXCLUDED.create_rev,
              mod_rev = EXCLUDED.mod_rev, version = EXCLUDED.version, lease = EXCLUDED.lease`,
          [
            bytes(puts.map((r) => r.key)),
            bytes(puts.map((r) => r.value)),
            ints(puts.map((r) => r.createRev)),
            ints(puts.map((r) => r.modRev)),
            ints(puts.map((r) => r.version)),
            ints(puts.map((r) => r.lease)),
          ],
        );
      }
    }
    for (const [map, pending] of this.mapPending) {
      const puts: [Buffer, Buffer][] = [];
      const dels: Buffer[] = [];
      const table = this.t.map(map);
      for (const [key, value] of pending.values()) {
        if (!value) dels.push(key);
        else if (value.length < LARGE_VALUE) puts.push([key, value]);
        else {
          this.send(
            `INSERT INTO ${table} (k, v) VALUES ($1, decode($2, 'base64')) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`,
            [key, value.toString('base64')],
          );
        }
      }
      if (dels.length > 0) this.send(`DELETE FROM ${table} WHERE k = ANY($1)`, [bytes(dels)]);
      if (puts.length > 0) {
        this.send(
          `INSERT INTO ${table} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[])
            ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`,
          [bytes(puts.map((p) => p[0])), bytes(puts.map((p) => p[1]))],
        );
      }
    }
    this.mapPending.clear();
  }

  /** Reads the current records of `keys` into the cache in one query (the batch's hint). */
  prefetchKv(keys: readonly string[]): Promise<void> {
    const unique = [...new Set(keys)].map((k) => Buffer.from(k, 'utf8'));
    const q = this.rawRows(
      `SELECT key, value, create_rev, mod_rev, version, lease FROM ${this.t.kvState} WHERE key = ANY($1)`,
      [this.conn.array(unique, 17) as never],
    );
    return q.then((rows) => {
      for (const key of unique) this.kvCache.set(id(key), undefined);
      for (const row of rows) this.kvCache.set(id(row[0] as Buffer), toRecord(row));
    });
  }

  /** Loads a whole (small) map into the cache: the meta map, read by every batch. */
  async preload(map: MapName): Promise<void> {
    const c = this.cacheOf(map);
    for (const [k, v] of await this.rawRows(`SELECT k, v FROM ${this.t.map(map)}`)) c.set(id(k as Buffer), v as Buffer);
    this.complete.add(map);
  }
}

/** SELECT of a key range in byte order (bytea compares as memcmp). */
export function rangeSql(table: string, key: string, columns: string, q: RangeQuery): string {
  const end = q.end !== undefined ? ` AND ${key} < $2` : '';
  const limit = q.end !== undefined ? '$3' : '$2';
  return `SELECT ${columns} FROM ${table} WHERE ${key} >= $1${end} ORDER BY ${key} ${q.reverse ? 'DESC' : 'ASC'} LIMIT ${limit}`;
}

export function rangeParams(q: RangeQuery): Params {
  const limit = Math.min(q.limit, Number.MAX_SAFE_INTEGER);
  return (q.end !== undefined ? [q.start, q.end, limit] : [q.start, limit]) as Params;
}

export type { Sql };
