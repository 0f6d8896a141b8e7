/**
 * PostgreSQL (and, by design, CockroachDB / YugabyteDB: --pg-dialect) on the `postgres` driver.
 * A store is a schema in a database named by a URL; any number of buffdb servers may serve one
 * store at once. Batches: batch.ts; operations: ops.ts; tables: schema.ts; raw SQL: sql.ts.
 *
 * Nothing is cached across batches: every batch reads the database, so a write acknowledged by
 * one server is read by every other at once. Serialization failures and deadlocks re-run the
 * batch (with jitter, a few times); a lost connection fails the batch with UNAVAILABLE and the
 * driver reconnects on the next one.
 */
import { randomBytes } from 'node:crypto';
import type { BlobEngineOps, KvEngineOps, OpenOptions, PgDialect, SqlOps, StoreEngine } from '../backend.js';
import type { BackendImpl } from '../index.js';
import { Batch, type Reserved } from './batch.js';
import { ConnectionWatch, checkReachable, createClient, ownerSettings, type Sql } from './client.js';
import { isConnectionError, isRetryable, mapPgError } from './errors.js';
import { type PgLocation, parseLocation, type StoreKind } from './location.js';
import { blobOps, kvOps } from './ops.js';
import { migrate, type SandboxLogin, Tables } from './schema.js';
import { PgSql, SANDBOX_TYPES } from './sql.js';

/** Attempts of a batch that hit a serialization failure or deadlock before it gives up (UNAVAILABLE). */
const MAX_ATTEMPTS = 8;
const DEFAULT_SQL_TIMEOUT_MS = 30_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class PgEngine<Ops> implements StoreEngine<Ops> {
  readonly sql: SqlOps;
  private current: Batch | undefined;
  /** Names this process in its NOTIFY payloads, so it ignores its own. */
  private readonly serverId = randomBytes(8).toString('hex');
  private readonly channel: string;

  constructor(
    private client: Sql,
    private readonly watch: ConnectionWatch,
    /** A fresh pool (see renew). */
    private readonly newClient: () => Sql,
    private readonly sandbox: Sql | undefined,
    sandboxUnavailable: string,
    private readonly t: Tables,
    private readonly kind: StoreKind,
    private readonly makeOps: (b: Batch) => Ops,
    private readonly readOnly: boolean,
    private readonly dialect: PgDialect,
    loc: PgLocation,
    sqlTimeoutMs: number,
  ) {
    this.channel = `buffdb_${loc.schema}`;
    this.sql = new PgSql(
      sandbox,
      sandboxUnavailable,
      kind,
      () => this.current,
      sqlTimeoutMs,
      readOnly,
      t.t('_buffdb_take_kv_writes'),
    );
  }

  mapError = mapPgError;

  async batch<T>(work: (ops: Ops) => Promise<T>, keys?: readonly string[]): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let conn: Reserved;
      try {
        conn = (await this.client.reserve()) as unknown as Reserved;
      } catch (err) {
        if (isConnectionError(err)) this.renew();
        throw err;
      }
      const b = new Batch(conn, this.t);
      if (this.kind === 'blob') b.afterSandbox = () => repairBlobSequence(conn, this.t);
      b.writesAfterSandbox = this.kind === 'kv';
      this.current = b;
      try {
        // The store lock first: every batch of every server on this store runs one at a time.
        await b.start(
          this.readOnly ? 'BEGIN READ ONLY' : 'BEGIN',
          this.readOnly ? undefined : this.t.lock,
          this.watch,
          this.kind === 'kv' ? keys : undefined,
        );
        const result = await work(this.makeOps(b));
        await b.commit(this.notifies() ? [this.channel, this.serverId] : undefined);
        return result;
      } catch (err) {
        await b.rollback();
        if (!b.reusable || isConnectionError(err)) this.renew();
        if (!isRetryable(err) || attempt >= MAX_ATTEMPTS) throw err;
        await sleep(Math.random() * Math.min(5 * 2 ** attempt, 200));
      } finally {
        this.current = undefined;
        b.unwatch?.();
        if (b.reusable) conn.release();
      }
    }
  }

  /**
   * After a lost connection the driver's pool can be left holding connections it never hands out
   * again (seen with PostgreSQL restarting); a new pool is cheap, and reconnects within a second.
   */
  private renew(): void {
    const old = this.client;
    this.client = this.newClient();
    this.unlisten = undefined;
    void old.end({ timeout: 0 }).catch(() => {});
    if (this.foreignListeners.size > 0) this.listen();
  }

  /** LISTEN/NOTIFY is a hint only (the store polls too); CockroachDB and YugabyteDB lack it. */
  private notifies(): boolean {
    return this.kind === 'kv' && this.dialect === 'postgres';
  }

  /** Who wants to hear of other servers' commits; LISTEN is set up again on every new pool. */
  private readonly foreignListeners = new Set<() => void>();
  private unlisten: (() => Promise<void>) | undefined;

  onForeignCommit(listener: () => void): () => void {
    if (!this.notifies()) return () => {};
    this.foreignListeners.add(listener);
    if (this.foreignListeners.size === 1) this.listen();
    return () => {
      this.foreignListeners.delete(listener);
      if (this.foreignListeners.size === 0) {
        void this.unlisten?.().catch(() => {});
        this.unlisten = undefined;
      }
    };
  }

  private listen(): void {
    const client = this.client;
    client
      .listen(this.channel, (payload) => {
        if (payload === this.serverId) return;
        for (const l of this.foreignListeners) l();
      })
      .then(
        (l) => {
          if (client === this.client && this.foreignListeners.size > 0) this.unlisten = l.unlisten;
          else void l.unlisten().catch(() => {});
        },
        () => {},
      );
  }

  async close(): Promise<void> {
    await Promise.all([this.client.end({ timeout: 5 }), this.sandbox?.end({ timeout: 5 })]);
  }
}

async function open<Ops>(
  path: string,
  options: OpenOptions,
  kind: StoreKind,
  makeOps: (b: Batch) => Ops,
): Promise<StoreEngine<Ops>> {
  const loc = parseLocation(path, kind);
  const readOnly = options.readOnly ?? false;
  const dialect = options.pgDialect ?? 'postgres';
  const watch = new ConnectionWatch();
  const newClient = (): Sql =>
    createClient(loc, {
      max: 3,
      connections: watch,
      connection: ownerSettings(loc.schema, options.durability ?? 'full', readOnly),
    });
  const client = newClient();
  let sandbox: Sql | undefined;
  try {
    await checkReachable(client, loc, options.waitForStore ?? false);
    const login: SandboxLogin = readOnly ? await existingLogin(client, loc, kind) : await migrate(client, loc, kind);
    const t = new Tables(loc.schema);
    if (kind === 'blob' && !readOnly) await repairBlobSequence(client, t);
    if ('role' in login) {
      sandbox = createClient(loc, {
        max: 4,
        user: login.role,
        ...(login.password !== undefined ? { password: login.password } : {}),
        connection: {
          application_name: 'buffdb-sql',
          search_path: loc.schema,
          statement_timeout: String(options.sqlTimeoutMs ?? DEFAULT_SQL_TIMEOUT_MS),
          idle_in_transaction_session_timeout: '60s',
        },
        types: SANDBOX_TYPES,
      });
    }
    return new PgEngine(
      client,
      watch,
      newClient,
      sandbox,
      'unavailable' in login ? login.unavailable : '',
      t,
      kind,
      makeOps,
      readOnly,
      dialect,
      loc,
      options.sqlTimeoutMs ?? DEFAULT_SQL_TIMEOUT_MS,
    );
  } catch (err) {
    await Promise.all([client.end({ timeout: 1 }), sandbox?.end({ timeout: 1 })]).catch(() => {});
    throw mapPgError(err);
  }
}

/** --read-only: the tables must exist already (nothing is created); raw SQL uses the role made before. */
async function existingLogin(client: Sql, loc: PgLocation, kind: StoreKind): Promise<SandboxLogin> {
  const t = new Tables(loc.schema);
  const [found] =
    await client`SELECT 1 FROM pg_tables WHERE schemaname = ${loc.schema} AND tablename = '_buffdb_version'`;
  if (!found)
    throw new Error(
      `schema ${loc.schema} of ${loc.display} holds no buffdb store (--read-only serves existing stores only)`,
    );
  const [row] = await client.unsafe(`SELECT kind FROM ${t.t('_buffdb_version')} WHERE id = 1`);
  if (row?.kind !== kind)
    throw new Error(`schema ${loc.schema} of ${loc.display} is not a buffdb ${kind.toUpperCase()} store`);
  if (loc.sqlRole !== undefined) return { role: loc.sqlRole, password: loc.sqlPassword };
  try {
    const [secret] = await client.unsafe(`SELECT role, password FROM ${t.t('_buffdb_secret')} WHERE id = 1`);
    if (secret) return { role: String(secret.role), password: String(secret.password) };
  } catch {
    // a read-only login may not read the secret: raw SQL is then unavailable
  }
  return {
    unavailable: 'no raw SQL role is set up for this store (open it once without --read-only, or pass ?sql_role=NAME)',
  };
}

/**
 * Ids raw SQL inserted itself (INSERT INTO blob (id, …)) are never handed out again: the sequence
 * is moved past the largest id in the table at open, and after every raw SQL write (sql.ts).
 */
export async function repairBlobSequence(client: Sql | Reserved, t: Tables): Promise<void> {
  const seq = t.blobSeq.replaceAll("'", "''");
  await client.unsafe(
    `SELECT setval('${seq}', m) FROM (SELECT max(id) AS m FROM ${t.blob}) x
      WHERE m IS NOT NULL AND m > (SELECT last_value FROM ${t.blobSeq})`,
  );
}

export const postgresBackend: BackendImpl = {
  openKv: (path, options = {}) => open<KvEngineOps>(path, options, 'kv', kvOps),
  openBlob: (path, options = {}) => open<BlobEngineOps>(path, options, 'blob', blobOps),
  checkPath(path, label) {
    parseLocation(path, label.toLowerCase() === 'kv' ? 'kv' : 'blob');
  },
};
