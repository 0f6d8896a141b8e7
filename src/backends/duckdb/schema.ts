/**
 * The DuckDB schema of both stores, and the upgrade of stores made by buffdb 0.1.
 *
 * KV: the key space lives in `kv_state` with BLOB keys and values (etcd keys and values are
 * arbitrary bytes; DuckDB's VARCHAR must be valid UTF-8). DuckDB orders BLOBs by memcmp (a prefix
 * first, 0x00 and bytes >= 0x80 included), so ranges are in key byte order with no encoding. Raw
 * SQL sees the view `kv (key, value)` as text; a key or value that is not UTF-8 shows as NULL. A
 * view cannot be written in DuckDB, so raw SQL writes to `kv` are refused (./sql.ts says why).
 *
 * Both stores keep buffdb's maps in `_buffdb_<map> (k BLOB PRIMARY KEY, v BLOB)`.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { BLOB_MAPS, KV_MAPS, type MapName } from '../backend.js';

export const mapTable = (map: MapName): string => `_buffdb_${map}`;

/** Per-connection temporary table a bulk flush of `table` is staged in (./pending-table.ts). */
export const stageTable = (table: string): string => `_buffdb_stage_${table.replace(/^_buffdb_/, '')}`;

const mapTables = (maps: readonly MapName[]): string[] =>
  maps.map((m) => `CREATE TABLE IF NOT EXISTS ${mapTable(m)} (k BLOB PRIMARY KEY, v BLOB NOT NULL)`);

const KV_STATE = `CREATE TABLE kv_state (key BLOB PRIMARY KEY, value BLOB NOT NULL, create_rev BIGINT NOT NULL,
  mod_rev BIGINT NOT NULL, version BIGINT NOT NULL, lease BIGINT NOT NULL DEFAULT 0)`;

/** try(): a key or value that is not UTF-8 reads as NULL instead of failing the whole query. */
const KV_VIEW =
  'CREATE VIEW IF NOT EXISTS kv AS SELECT try(decode(key)) AS key, try(decode(value)) AS value FROM kv_state';

/** 2: revisioned key space (kv_state + view). Stores of buffdb 0.1 have a plain `kv` table. */
const KV_SCHEMA_VERSION = 2;
const VERSION_COMMENT = (v: number) => `buffdb kv schema ${v}`;

async function scalar(c: DuckDBConnection, sql: string): Promise<unknown> {
  return (await c.runAndReadAll(sql)).getRows()[0]?.[0];
}

/** 'BASE TABLE', 'VIEW' or undefined, for an object of the store's main schema. */
export async function objectType(c: DuckDBConnection, name: string): Promise<string | undefined> {
  const type = await scalar(
    c,
    `SELECT table_type FROM information_schema.tables
      WHERE table_catalog = current_database() AND table_schema = 'main' AND table_name = '${name}'`,
  );
  return type === undefined ? undefined : String(type);
}

async function schemaVersion(c: DuckDBConnection): Promise<number> {
  const comment = await scalar(
    c,
    "SELECT comment FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' AND table_name = 'kv_state'",
  );
  const m = /schema (\d+)/.exec(String(comment ?? ''));
  return m ? Number(m[1]) : KV_SCHEMA_VERSION;
}

async function inTransaction(c: DuckDBConnection, statements: string[]): Promise<void> {
  await c.run('BEGIN TRANSACTION');
  try {
    for (const sql of statements) await c.run(sql);
    await c.run('COMMIT');
  } catch (err) {
    await c.run('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Creates the KV schema, or upgrades a buffdb 0.1 store to it, in one transaction. */
export async function kvSchema(c: DuckDBConnection): Promise<void> {
  const state = await objectType(c, 'kv_state');
  if (state !== undefined) {
    const version = await schemaVersion(c);
    if (version > KV_SCHEMA_VERSION) {
      throw new Error(`the store was written by a newer buffdb (schema ${version}); upgrade buffdb to open it`);
    }
    // Maps added since the store was made.
    for (const sql of [KV_VIEW, ...mapTables(KV_MAPS)]) await c.run(sql);
    return;
  }
  const old = (await objectType(c, 'kv')) === 'BASE TABLE';
  await inTransaction(c, [
    KV_STATE,
    // buffdb 0.1: every existing key becomes revision 1, version 1. A NULL value was "absent".
    ...(old
      ? [
          `INSERT INTO kv_state (key, value, create_rev, mod_rev, version, lease)
            SELECT encode(key), encode(value), 1, 1, 1, 0 FROM kv WHERE key IS NOT NULL AND value IS NOT NULL`,
          'DROP TABLE kv',
        ]
      : []),
    KV_VIEW,
    ...mapTables(KV_MAPS),
    `COMMENT ON TABLE kv_state IS '${VERSION_COMMENT(KV_SCHEMA_VERSION)}'`,
  ]);
}

// A sequence, not max(id)+1: ids are never reused, not even the largest after it is deleted.
export async function blobSchema(c: DuckDBConnection): Promise<void> {
  await inTransaction(c, [
    'CREATE SEQUENCE IF NOT EXISTS blob_id_seq START 1',
    'CREATE TABLE IF NOT EXISTS blob (id BIGINT PRIMARY KEY, data BLOB, metadata TEXT)',
    ...mapTables(BLOB_MAPS),
  ]);
}
