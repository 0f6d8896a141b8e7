/**
 * Raw SQL (Query/Execute) in PostgreSQL's dialect. The wall is a role: statements run on their
 * own connections, logged in as a role that may read the store's tables, write only `blob` (BLOB
 * store) and tables it creates itself, and has no other rights — so SET ROLE, RESET ROLE or
 * set_config cannot lead back to buffdb's login role (the session user *is* the sandbox role).
 * The token guard (sql-guard.ts, and the checks below) is the first line, for clear messages.
 *
 * A writing statement runs inside a batch of its store, in a transaction of the sandbox
 * connection that commits just before the batch's own (batch.ts): alone in its batch (RunAloneError),
 * so it can neither wait on a row the batch itself locked nor be applied twice by a re-run.
 */
import type postgres from 'postgres';
import { failedPrecondition, readOnlyStore } from '../../errors.js';
import type { SqlOps, SqlValue } from '../backend.js';
import { assertSqlAllowed, SqlRefusedError, tokenize } from '../sql-guard.js';
import { type Batch, RunAloneError } from './batch.js';
import type { Sql } from './client.js';
import { isConnectionError } from './errors.js';
import type { StoreKind } from './location.js';

/** Raw SQL's view of values: integers as bigint, numeric as a double, dates and JSON as text. */
export const SANDBOX_TYPES: Record<string, postgres.PostgresType> = {
  int4: { to: 23, from: [21, 23], serialize: (x: unknown) => String(x), parse: (x: string) => BigInt(x) },
  numeric: { to: 1700, from: [1700], serialize: (x: unknown) => String(x), parse: (x: string) => Number(x) },
  json: { to: 114, from: [114, 3802], serialize: (x: unknown) => String(x), parse: (x: string) => x },
  date: {
    to: 1184,
    from: [1082, 1083, 1114, 1184, 1266],
    serialize: (x: unknown) => String(x),
    parse: (x: string) => x,
  },
};

/** Statements and objects only an administrator should touch, refused before the database sees them. */
const ADMIN_OBJECTS =
  /^(role|user|group|database|extension|tablespace|server|foreign|subscription|publication|event|language|function|procedure|trigger|rule|schema|cast|operator|aggregate|conversion|access|system|policy|transform|collation)$/i;
const REFUSED_FIRST =
  /^(do|listen|notify|unlisten|lock|discard|prepare|execute|deallocate|grant|revoke|security|reindex|cluster|load|import|comment)$/i;
const PG_REFUSED_FUNCTIONS = new Set([
  'set_config',
  'pg_read_file',
  'pg_read_binary_file',
  'pg_ls_dir',
  'pg_stat_file',
  'pg_ls_logdir',
  'pg_ls_waldir',
  'pg_ls_tmpdir',
  'pg_ls_archive_statusdir',
  'lo_import',
  'lo_export',
  'lo_from_bytea',
  'lo_create',
  'lo_creat',
  'lo_unlink',
  'lo_put',
  'lo_get',
  'lo_open',
  'dblink',
  'dblink_exec',
  'dblink_connect',
  'dblink_connect_u',
  'dblink_send_query',
  'pg_terminate_backend',
  'pg_cancel_backend',
  'pg_reload_conf',
  'pg_rotate_logfile',
  'pg_promote',
  'pg_switch_wal',
  'pg_create_restore_point',
  'pg_logical_emit_message',
  'pg_notify',
  'pg_advisory_lock',
  'pg_advisory_xact_lock',
  'pg_advisory_lock_shared',
  'pg_try_advisory_lock',
  'pg_file_write',
  'pg_file_rename',
  'pg_file_unlink',
]);

/** The guard's checks plus PostgreSQL's own ways out of a store. */
export function assertPgSqlAllowed(sql: string): void {
  assertSqlAllowed(sql);
  const tokens = tokenize(sql);
  const words = tokens.filter((t) => t.kind === 'word' && !t.quoted).map((t) => t.text.toLowerCase());
  const first = words[0] ?? '';
  if (REFUSED_FIRST.test(first)) throw new SqlRefusedError(`${first.toUpperCase()} refused: not allowed in raw SQL`);
  if (/^(create|alter|drop)$/.test(first)) {
    // The object kind: the first word after modifiers (CREATE OR REPLACE TRUSTED PROCEDURAL LANGUAGE …).
    let i = 1;
    while (
      /^(or|replace|temp|temporary|unlogged|trusted|procedural|default|global|local|constraint)$/.test(words[i] ?? '')
    )
      i++;
    const object = words[i] !== undefined && ADMIN_OBJECTS.test(words[i]!) ? words[i] : undefined;
    if (object) {
      throw new SqlRefusedError(`${first.toUpperCase()} ${object.toUpperCase()} refused: not allowed in raw SQL`);
    }
  }
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const word = t.text.toLowerCase();
    if (t.kind === 'word' && PG_REFUSED_FUNCTIONS.has(word) && tokens[i + 1]?.text === '(') {
      throw new SqlRefusedError(`${word}() refused: it reaches outside the store`);
    }
  }
}

const WRITE_WORDS =
  /^(insert|update|delete|merge|create|drop|alter|truncate|into|for|nextval|setval|copy|call|vacuum|analyze|refresh|lock)$/i;

/** Read-only statements stream outside any batch (and run in a READ ONLY transaction to be sure). */
export function pgIsReadOnly(sql: string): boolean {
  const words = tokenize(sql)
    .filter((t) => t.kind === 'word' && !t.quoted)
    .map((t) => t.text.toLowerCase());
  if (!/^(select|with|values|table|show|explain)$/.test(words[0] ?? '')) return false;
  return !words.some((w) => WRITE_WORDS.test(w));
}

function toSqlValue(v: unknown): SqlValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Uint8Array) return v;
  if (v instanceof Date) return v.toISOString();
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
}

const ROW_PAGE = 256;

export class PgSql implements SqlOps {
  constructor(
    /** undefined: raw SQL is unavailable, for the reason given. */
    private readonly sandbox: Sql | undefined,
    private readonly unavailableReason: string,
    private readonly kind: StoreKind,
    /** The batch running now, which a writing statement joins. */
    private readonly currentBatch: () => Batch | undefined,
    /** --sql-timeout: the longest a statement may keep the database busy. */
    private readonly timeoutMs: number,
    /** --read-only: writing statements are refused as every other write is. */
    private readonly readOnly: boolean,
    /** `schema._buffdb_take_kv_writes`, quoted. */
    private readonly takeFunction: string,
  ) {}

  /** What raw SQL wrote to `kv` in the current batch (staged by triggers): a changed key also deletes the old one. */
  async takeKvWrites(): Promise<{ key: Buffer; value: Buffer | null }[]> {
    const tx = this.kind === 'kv' ? this.currentBatch()?.sandbox : undefined;
    if (!tx) return [];
    const out: { key: Buffer; value: Buffer | null }[] = [];
    for (const [key, value, oldKey] of (await tx.takeKvWrites()) as [Buffer, Buffer | null, Buffer | null][]) {
      if (oldKey !== null && !oldKey.equals(key)) out.push({ key: oldKey, value: null });
      out.push({ key, value });
    }
    return out;
  }

  private client(): Sql {
    if (!this.sandbox) throw failedPrecondition(`raw SQL is not available on this store: ${this.unavailableReason}`);
    return this.sandbox;
  }

  isReadOnly(sql: string): boolean {
    const readOnly = pgIsReadOnly(sql);
    if (this.readOnly && !readOnly) throw readOnlyStore();
    assertPgSqlAllowed(sql);
    return readOnly;
  }

  async *query(sql: string): AsyncIterable<SqlValue[]> {
    if (!this.isReadOnly(sql)) {
      yield* await this.inBatch(async (c) => ((await c.unsafe(sql).values()) as unknown as unknown[][]).map(row));
      return;
    }
    const c = await this.client().reserve();
    let open = false;
    // A closed connection takes no more statements (the driver would write to a closed socket)
    // and goes back to the pool by itself.
    let lost = false;
    try {
      // The database's statement timeout would count the time a slow client takes to read the
      // rows; here only the time spent waiting for the database counts.
      await c.unsafe('BEGIN READ ONLY');
      open = true;
      await c.unsafe('SET LOCAL statement_timeout = 0');
      const query = c.unsafe(sql).values();
      const pages = query.cursor(ROW_PAGE)[Symbol.asyncIterator]();
      let waited = 0;
      for (;;) {
        const start = performance.now();
        const timer = setTimeout(() => void query.cancel(), Math.max(1, this.timeoutMs - waited));
        let next: IteratorResult<unknown>;
        try {
          next = await pages.next();
        } finally {
          clearTimeout(timer);
        }
        waited += performance.now() - start;
        if (next.done) break;
        for (const r of next.value as unknown[][]) yield row(r);
      }
      await c.unsafe('COMMIT');
      open = false;
    } catch (err) {
      lost = isConnectionError(err);
      throw err;
    } finally {
      if (!lost) {
        if (open) await c.unsafe('ROLLBACK').catch(() => {});
        c.release();
      }
    }
  }

  execute(sql: string): Promise<number> {
    if (this.readOnly && !pgIsReadOnly(sql)) throw readOnlyStore();
    assertPgSqlAllowed(sql);
    return this.inBatch(async (c) => {
      const result = await c.unsafe(sql);
      return /^(INSERT|UPDATE|DELETE|MERGE)/.test(result.command ?? '') ? result.count : 0;
    });
  }

  /** Runs a writing statement in the sandbox's transaction, committed with the current batch. */
  private async inBatch<T>(run: (c: postgres.ReservedSql<{ bigint: bigint }>) => Promise<T>): Promise<T> {
    const b = this.currentBatch();
    if (!b) throw new Error('a writing raw SQL statement ran outside a batch');
    if (b.dirty || b.sandbox) throw new RunAloneError('a writing raw SQL statement runs in a batch of its own');
    const c = await this.client().reserve();
    let released = false;
    let lost = false;
    const noteLost = (err: unknown): never => {
      lost ||= isConnectionError(err);
      throw err;
    };
    const end = async (how: 'COMMIT' | 'ROLLBACK'): Promise<void> => {
      if (released) return;
      released = true;
      if (lost) return;
      try {
        await c.unsafe(how).catch(noteLost);
      } finally {
        if (!lost) c.release();
      }
    };
    b.sandbox = {
      commit: () => end('COMMIT'),
      rollback: () => end('ROLLBACK'),
      takeKvWrites: async () =>
        (await c
          .unsafe(`SELECT key, value, old_key FROM ${this.takeFunction}()`)
          .values()
          .catch(noteLost)) as unknown as unknown[][],
    };
    await c.unsafe('BEGIN').catch(noteLost);
    return run(c as unknown as postgres.ReservedSql<{ bigint: bigint }>).catch(noteLost);
  }
}

const row = (r: unknown[]): SqlValue[] => r.map(toSqlValue);
