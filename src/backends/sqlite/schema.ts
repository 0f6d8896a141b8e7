/**
 * The SQLite schema of both stores, and the upgrade of stores made by buffdb 0.1.
 *
 * KV: the key space lives in `kv_state` (key, value and etcd's revision fields). Raw SQL sees it
 * through the view `kv (key, value)`; a raw SQL write to that view lands in `_buffdb_kv_writes`
 * (INSTEAD OF triggers) and the store turns it into a revision in the same transaction, so
 * watchers see it. Keys and values are stored as TEXT holding the exact bytes (CAST from BLOB):
 * TEXT compares by memcmp, so ranges are in byte order, and raw SQL `WHERE key = '…'` uses the
 * primary key.
 */
import type Database from 'better-sqlite3';
import { BLOB_MAPS, KV_MAPS, type MapName } from '../backend.js';

export const mapTable = (map: MapName): string => `_buffdb_${map}`;

/**
 * Maps whose values are large (1 MiB blob chunks) are rowid tables: SQLite inserts a 1 MiB value
 * into a WITHOUT ROWID table 2–4x slower (measured: 256 MiB in 4 chunks per transaction, the
 * INSERTs took 1.1–2.2 s against 0.45–0.68 s), WITHOUT ROWID being meant for small rows. The same
 * statements work on both kinds, so a store made before keeps its WITHOUT ROWID table.
 */
const LARGE_VALUE_MAPS: ReadonlySet<MapName> = new Set(['chunk']);

function mapTables(maps: readonly MapName[]): string {
  return maps
    .map(
      (m) =>
        `CREATE TABLE IF NOT EXISTS ${mapTable(m)} (k BLOB PRIMARY KEY, v BLOB NOT NULL)` +
        `${LARGE_VALUE_MAPS.has(m) ? '' : ' WITHOUT ROWID'};`,
    )
    .join('\n');
}

const KV_STATE = `CREATE TABLE IF NOT EXISTS kv_state (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL,
  version INTEGER NOT NULL, lease INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;`;

/** The view raw SQL sees, and the triggers that stage its writes (one staged row per row written). */
const KV_VIEW = `
CREATE VIEW IF NOT EXISTS kv AS SELECT key, value FROM kv_state;
CREATE TABLE IF NOT EXISTS _buffdb_kv_writes (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT, old_key TEXT);
CREATE TRIGGER IF NOT EXISTS _buffdb_kv_insert INSTEAD OF INSERT ON kv BEGIN
  SELECT RAISE(ABORT, 'kv.key must not be NULL') WHERE NEW.key IS NULL;
  INSERT INTO _buffdb_kv_writes (key, value) VALUES (NEW.key, NEW.value);
END;
CREATE TRIGGER IF NOT EXISTS _buffdb_kv_update INSTEAD OF UPDATE ON kv BEGIN
  SELECT RAISE(ABORT, 'kv.key must not be NULL') WHERE NEW.key IS NULL;
  INSERT INTO _buffdb_kv_writes (key, value, old_key) VALUES (NEW.key, NEW.value, OLD.key);
END;
CREATE TRIGGER IF NOT EXISTS _buffdb_kv_delete INSTEAD OF DELETE ON kv BEGIN
  INSERT INTO _buffdb_kv_writes (key, value) VALUES (OLD.key, NULL);
END;`;

/** 2: revisioned key space (kv_state + view). Stores of buffdb 0.1 have a plain `kv` table and version 0. */
const KV_SCHEMA_VERSION = 2;

export function kvSchema(db: Database.Database): void {
  const version = Number(db.pragma('user_version', { simple: true }));
  if (version > KV_SCHEMA_VERSION) {
    throw new Error(`the store was written by a newer buffdb (schema ${version}); upgrade buffdb to open it`);
  }
  const oldTable = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'kv'").get() !== undefined;
  // Already current: no write at all, so many processes may open the store at once.
  if (version === KV_SCHEMA_VERSION && !oldTable) return;
  db.transaction(() => {
    db.exec(KV_STATE);
    if (oldTable) {
      // buffdb 0.1: every existing key becomes revision 1, version 1. A NULL value was "absent".
      db.exec(`INSERT OR IGNORE INTO kv_state (key, value, create_rev, mod_rev, version, lease)
        SELECT CAST(key AS TEXT), CAST(value AS TEXT), 1, 1, 1, 0 FROM kv WHERE key IS NOT NULL AND value IS NOT NULL;
        DROP TABLE kv;`);
    }
    db.exec(KV_VIEW);
    db.exec(mapTables(KV_MAPS));
    db.pragma(`user_version = ${KV_SCHEMA_VERSION}`);
  })();
}

// AUTOINCREMENT: ids are never reused, not even the largest after it is deleted.
const BLOB_TABLE = 'CREATE TABLE IF NOT EXISTS blob (id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB, metadata TEXT);';

export function blobSchema(db: Database.Database): void {
  db.transaction(() => {
    db.exec(BLOB_TABLE);
    db.exec(mapTables(BLOB_MAPS));
  })();
}
