/**
 * The tables of one store, in a schema of its own, created on first start and versioned for later
 * migrations. Safe when several servers start at once: the schema and the version table are
 * created with IF NOT EXISTS (a lost race is simply run again), then every migration step runs in
 * one transaction holding the version row's lock, so exactly one server applies each step.
 *
 * KV: `kv_state` (key bytea, byte order = key order) and the view `kv (key text, value text)` raw
 * SQL reads; maps in `_buffdb_<map>` tables. BLOB: `blob (id, data, metadata)` with a sequence for
 * ids; maps likewise. `_buffdb_lock` holds the one row every batch locks first (see
 * postgres-backend.ts); `_buffdb_secret` the password of the role raw SQL runs as.
 */
import { randomBytes } from 'node:crypto';
import { failedPrecondition } from '../../errors.js';
import { BLOB_MAPS, KV_MAPS, type MapName } from '../backend.js';
import type { Sql } from './client.js';
import { sqlState } from './errors.js';
import { ident, type PgLocation, type StoreKind, sandboxRoleName } from './location.js';

export const SCHEMA_VERSION = 1;

export const mapTable = (map: MapName): string => `_buffdb_${map}`;

/** Names of one store's objects, schema-qualified and quoted. */
export class Tables {
  readonly schema: string;
  constructor(schemaName: string) {
    this.schema = ident(schemaName);
  }
  t(name: string): string {
    return `${this.schema}.${ident(name)}`;
  }
  get lock(): string {
    return this.t('_buffdb_lock');
  }
  get kvState(): string {
    return this.t('kv_state');
  }
  get blob(): string {
    return this.t('blob');
  }
  get blobSeq(): string {
    return this.t('_buffdb_blob_id');
  }
  map(m: MapName): string {
    return this.t(mapTable(m));
  }
}

const mapDdl = (t: Tables, maps: readonly MapName[]): string[] =>
  maps.map((m) => `CREATE TABLE IF NOT EXISTS ${t.map(m)} (k bytea PRIMARY KEY, v bytea NOT NULL)`);

/** Version 1 of each kind of store. Later versions append steps; a step never changes. */
function steps(kind: StoreKind, t: Tables): string[][] {
  const common = [
    `CREATE TABLE IF NOT EXISTS ${t.lock} (id integer PRIMARY KEY, n bigint NOT NULL)`,
    `INSERT INTO ${t.lock} (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`,
    `CREATE TABLE IF NOT EXISTS ${t.t('_buffdb_secret')} (id integer PRIMARY KEY, role text NOT NULL, password text NOT NULL)`,
  ];
  if (kind === 'kv') {
    return [
      [
        ...common,
        `CREATE TABLE IF NOT EXISTS ${t.kvState} (key bytea PRIMARY KEY, value bytea NOT NULL,
          create_rev bigint NOT NULL, mod_rev bigint NOT NULL, version bigint NOT NULL, lease bigint NOT NULL DEFAULT 0)`,
        ...mapDdl(t, KV_MAPS),
        // Raw SQL sees keys and values as text; bytes that are not UTF-8 text (written through the
        // etcd API) read as NULL rather than failing the whole query.
        `CREATE OR REPLACE FUNCTION ${t.t('_buffdb_text')}(b bytea) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT AS
          'BEGIN RETURN convert_from(b, ''UTF8''); EXCEPTION WHEN others THEN RETURN NULL; END'`,
        `CREATE OR REPLACE VIEW ${t.t('kv')} AS
          SELECT ${t.t('_buffdb_text')}(key) AS key, ${t.t('_buffdb_text')}(value) AS value FROM ${t.kvState}`,
        ...kvWriteStaging(t),
      ],
    ];
  }
  return [
    [
      ...common,
      `CREATE SEQUENCE IF NOT EXISTS ${t.blobSeq} START 1 CACHE 1`,
      `CREATE TABLE IF NOT EXISTS ${t.blob} (id bigint PRIMARY KEY DEFAULT nextval('${t.blobSeq.replaceAll("'", "''")}'),
        data bytea, metadata text)`,
      ...mapDdl(t, BLOB_MAPS),
    ],
  ];
}

/**
 * Raw SQL writes to the `kv` view are staged (INSTEAD OF triggers running as buffdb's role) in
 * `_buffdb_kv_writes`, inside raw SQL's own transaction; buffdb takes them from there in the same
 * transaction (`_buffdb_take_kv_writes()`) and writes them as one revision, so watchers see them.
 * Raw SQL can neither read nor write the staging table itself.
 */
function kvWriteStaging(t: Tables): string[] {
  const staging = t.t('_buffdb_kv_writes');
  const fn = (name: string, body: string): string =>
    `CREATE OR REPLACE FUNCTION ${t.t(name)}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
      SET search_path = ${t.schema}, pg_temp AS $fn$ BEGIN ${body} END $fn$`;
  const keyCheck = "IF NEW.key IS NULL THEN RAISE EXCEPTION 'kv.key must not be NULL' USING ERRCODE = '23502'; END IF;";
  return [
    `CREATE TABLE IF NOT EXISTS ${staging} (seq bigserial PRIMARY KEY, key bytea NOT NULL, value bytea, old_key bytea)`,
    fn(
      '_buffdb_kv_insert',
      `${keyCheck} INSERT INTO ${staging} (key, value) VALUES (convert_to(NEW.key, 'UTF8'), convert_to(coalesce(NEW.value, ''), 'UTF8')); RETURN NEW;`,
    ),
    fn(
      '_buffdb_kv_update',
      `${keyCheck} INSERT INTO ${staging} (key, value, old_key) VALUES (convert_to(NEW.key, 'UTF8'), convert_to(coalesce(NEW.value, ''), 'UTF8'), convert_to(OLD.key, 'UTF8')); RETURN NEW;`,
    ),
    fn(
      '_buffdb_kv_delete',
      `INSERT INTO ${staging} (key, value) VALUES (convert_to(OLD.key, 'UTF8'), NULL); RETURN OLD;`,
    ),
    `CREATE OR REPLACE TRIGGER _buffdb_kv_insert INSTEAD OF INSERT ON ${t.t('kv')} FOR EACH ROW EXECUTE FUNCTION ${t.t('_buffdb_kv_insert')}()`,
    `CREATE OR REPLACE TRIGGER _buffdb_kv_update INSTEAD OF UPDATE ON ${t.t('kv')} FOR EACH ROW EXECUTE FUNCTION ${t.t('_buffdb_kv_update')}()`,
    `CREATE OR REPLACE TRIGGER _buffdb_kv_delete INSTEAD OF DELETE ON ${t.t('kv')} FOR EACH ROW EXECUTE FUNCTION ${t.t('_buffdb_kv_delete')}()`,
    `CREATE OR REPLACE FUNCTION ${t.t('_buffdb_take_kv_writes')}() RETURNS TABLE (key bytea, value bytea, old_key bytea)
      LANGUAGE sql SECURITY DEFINER SET search_path = ${t.schema}, pg_temp AS
      $fn$ WITH taken AS (DELETE FROM ${staging} RETURNING seq, key, value, old_key)
        SELECT key, value, old_key FROM taken ORDER BY seq $fn$`,
    `REVOKE ALL ON ${staging} FROM PUBLIC`,
    `REVOKE ALL ON FUNCTION ${t.t('_buffdb_take_kv_writes')}() FROM PUBLIC`,
  ];
}

/** What raw SQL may touch: read everything of the store, write `blob`, `kv` (staged) and tables it creates. */
function grants(kind: StoreKind, t: Tables, role: string): string[] {
  const r = ident(role);
  const maps = (kind === 'kv' ? KV_MAPS : BLOB_MAPS).map((m) => t.map(m));
  const readable = [...maps, kind === 'kv' ? t.kvState : t.blob, ...(kind === 'kv' ? [t.t('kv')] : [])];
  return [
    `REVOKE ALL ON SCHEMA ${t.schema} FROM PUBLIC`,
    `GRANT USAGE, CREATE ON SCHEMA ${t.schema} TO ${r}`,
    `GRANT SELECT ON ${readable.join(', ')} TO ${r}`,
    ...(kind === 'blob'
      ? [`GRANT INSERT, UPDATE, DELETE ON ${t.blob} TO ${r}`, `GRANT USAGE, SELECT ON SEQUENCE ${t.blobSeq} TO ${r}`]
      : [
          `GRANT INSERT, UPDATE, DELETE ON ${t.t('kv')} TO ${r}`,
          `GRANT EXECUTE ON FUNCTION ${t.t('_buffdb_take_kv_writes')}() TO ${r}`,
        ]),
  ];
}

/** Errors of two servers creating the same object at once: the loser runs again and finds it made. */
const RACE_STATES = new Set(['23505', '42P07', '42P06', '42710', '40001', '40P01', 'XX000']);

async function retryRaces<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (attempt >= 5 || !RACE_STATES.has(sqlState(err))) throw err;
      await new Promise((r) => setTimeout(r, 20 + Math.random() * 80 * (attempt + 1)));
    }
  }
}

/** How raw SQL connects: as a role that can reach only this store's tables. */
export type SandboxLogin = { role: string; password: string | undefined } | { unavailable: string };

/**
 * Creates or upgrades the store's tables; answers how raw SQL logs in. A schema that exists but is
 * not a buffdb store of this kind is refused and left untouched.
 */
export async function migrate(sql: Sql, loc: PgLocation, kind: StoreKind): Promise<SandboxLogin> {
  const t = new Tables(loc.schema);
  const version = t.t('_buffdb_version');
  await retryRaces(async () => {
    const existing = await sql`SELECT
        (SELECT count(*) FROM pg_namespace WHERE nspname = ${loc.schema})::int AS schema,
        (SELECT count(*) FROM pg_tables WHERE schemaname = ${loc.schema})::int AS tables,
        (SELECT count(*) FROM pg_tables WHERE schemaname = ${loc.schema} AND tablename = '_buffdb_version')::int AS ours`;
    const row = existing[0]!;
    if (row.tables > 0 && row.ours === 0) {
      throw failedPrecondition(
        `schema ${loc.schema} of ${loc.display} holds tables that are not a buffdb store; ` +
          'choose another schema (?schema=NAME) or database',
      );
    }
    if (row.schema === 0) await sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${t.schema}`);
    await sql.unsafe(
      `CREATE TABLE IF NOT EXISTS ${version} (id integer PRIMARY KEY, kind text NOT NULL, version integer NOT NULL)`,
    );
    await sql.unsafe(`INSERT INTO ${version} (id, kind, version) VALUES (1, $1, 0) ON CONFLICT (id) DO NOTHING`, [
      kind,
    ]);
  });
  return retryRaces(() =>
    sql.begin(async (tx) => {
      const [row] = await tx.unsafe(`SELECT kind, version FROM ${version} WHERE id = 1 FOR UPDATE`);
      if (row!.kind !== kind) {
        throw failedPrecondition(
          `schema ${loc.schema} of ${loc.display} is a buffdb ${String(row!.kind).toUpperCase()} store, not a ` +
            `${kind.toUpperCase()} store; give each store its own schema (?schema=NAME)`,
        );
      }
      const current = Number(row!.version);
      if (current > SCHEMA_VERSION) {
        throw failedPrecondition(
          `the store in schema ${loc.schema} was written by a newer buffdb (schema ${current}); upgrade buffdb to open it`,
        );
      }
      const all = steps(kind, t);
      for (let v = current; v < SCHEMA_VERSION; v++) for (const stmt of all[v]!) await tx.unsafe(stmt);
      if (current < SCHEMA_VERSION)
        await tx.unsafe(`UPDATE ${version} SET version = $1 WHERE id = 1`, [SCHEMA_VERSION]);
      return sandbox(tx as unknown as Sql, loc, kind, t);
    }),
  );
}

/** Sets up (or finds) the role raw SQL runs as, inside the migration transaction. */
async function sandbox(tx: Sql, loc: PgLocation, kind: StoreKind, t: Tables): Promise<SandboxLogin> {
  if (loc.sqlRole !== undefined) {
    const [role] = await tx`SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication,
        (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid)::int AS memberships
      FROM pg_roles r WHERE rolname = ${loc.sqlRole}`;
    if (!role) return { unavailable: `the role sql_role=${loc.sqlRole} does not exist` };
    if (role.rolsuper || role.rolcreaterole || role.rolcreatedb || role.rolbypassrls || role.rolreplication) {
      throw failedPrecondition(
        `sql_role=${loc.sqlRole} has privileges raw SQL must not have (superuser, createrole, createdb, ` +
          'bypassrls or replication); give buffdb a plain LOGIN role',
      );
    }
    if (role.memberships > 0) {
      throw failedPrecondition(`sql_role=${loc.sqlRole} is a member of other roles; give buffdb a role with none`);
    }
    for (const g of grants(kind, t, loc.sqlRole)) await tx.unsafe(g);
    return { role: loc.sqlRole, password: loc.sqlPassword };
  }
  const name = sandboxRoleName(loc);
  const [stored] = await tx.unsafe(`SELECT role, password FROM ${t.t('_buffdb_secret')} WHERE id = 1`);
  const [exists] = await tx`SELECT 1 FROM pg_roles WHERE rolname = ${name}`;
  if (stored && exists) return { role: String(stored.role), password: String(stored.password) };
  const [me] = await tx`SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user`;
  if (!me?.rolsuper && !me?.rolcreaterole) {
    return {
      unavailable:
        `the login role cannot create the role raw SQL runs as (it needs CREATEROLE); ` +
        'create one and pass it as ?sql_role=NAME (see docs/scaling-out.md)',
    };
  }
  const password = randomBytes(24).toString('hex');
  const r = ident(name);
  // Roles are global to the cluster: another database's store may have made one of this name.
  if (exists) await tx.unsafe(`ALTER ROLE ${r} WITH LOGIN PASSWORD '${password}'`);
  else {
    await tx.unsafe(
      `CREATE ROLE ${r} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS PASSWORD '${password}'`,
    );
  }
  await tx.unsafe(`REVOKE ALL ON ${t.t('_buffdb_secret')}, ${t.t('_buffdb_version')}, ${t.lock} FROM PUBLIC`);
  for (const g of grants(kind, t, name)) await tx.unsafe(g);
  await tx.unsafe(
    `INSERT INTO ${t.t('_buffdb_secret')} (id, role, password) VALUES (1, $1, $2)
      ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, password = EXCLUDED.password`,
    [name, password],
  );
  return { role: name, password };
}
