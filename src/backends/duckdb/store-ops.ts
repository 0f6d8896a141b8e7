/** The engine operations of the two stores over DuckDB tables (writes of kv_state and maps deferred). */
import { readOnlyStore } from '../../errors.js';
import {
  BLOB_MAPS,
  type BlobEngineOps,
  type BlobRecord,
  KV_MAPS,
  type KvEngineOps,
  type KvRecord,
  type MapName,
  type MapOps,
  type MaybePromise,
} from '../backend.js';
import { type DeferredWrites, PendingTable, type TableSpec } from './pending-table.js';
import { RowCache } from './row-cache.js';
import { mapTable, objectType } from './schema.js';
import { blobOf, type Writer } from './writer.js';

const EMPTY = Buffer.alloc(0);

const KV_STATE: TableSpec<KvRecord> = {
  table: 'kv_state',
  key: 'key',
  columns: [
    ['value', 'BLOB'],
    ['create_rev', 'BIGINT'],
    ['mod_rev', 'BIGINT'],
    ['version', 'BIGINT'],
    ['lease', 'BIGINT'],
  ],
  values: (r) => [r.value, BigInt(r.createRev), BigInt(r.modRev), BigInt(r.version), r.lease],
  fromRow: (row) => ({
    key: blobOf(row[0]!),
    value: blobOf(row[1]!),
    createRev: Number(row[2]),
    modRev: Number(row[3]),
    version: Number(row[4]),
    lease: BigInt(row[5] as bigint),
  }),
  keysOnly: { select: "''::BLOB, create_rev, mod_rev, version, lease", row: (r) => ({ ...r, value: EMPTY }) },
};

interface MapRow {
  key: Buffer;
  value: Buffer;
}

const mapSize = (r: MapRow): number => r.value.length;

/** Recently read or written records kept in memory (per KV store). */
const KV_CACHE_BYTES = 32 * 1024 * 1024;

const mapSpec = (map: MapName): TableSpec<MapRow> => ({
  table: mapTable(map),
  key: 'k',
  columns: [['v', 'BLOB']],
  values: (r) => [r.value],
  fromRow: (row) => ({ key: blobOf(row[0]!), value: blobOf(row[1]!) }),
});

/** Tables whose writes the engine flushes before COMMIT and tells about the outcome. */
export type Tables = DeferredWrites[];

async function openMaps(db: Writer, names: readonly MapName[], readOnly: boolean, tables: Tables): Promise<MapOps> {
  const byName = new Map<MapName, PendingTable<MapRow>>();
  for (const name of names) {
    const spec = mapSpec(name);
    // A read-only store made before a map existed reads it as empty.
    const missing = readOnly && (await objectType(db.conn, spec.table)) === undefined;
    // meta (revision counters, ids) is read by every batch: held whole in memory.
    const table = new PendingTable(
      db,
      spec,
      readOnly,
      missing,
      name === 'meta' ? RowCache.complete(mapSize) : undefined,
    );
    await table.load();
    byName.set(name, table);
    tables.push(table);
  }
  const of = (map: MapName): PendingTable<MapRow> => {
    const t = byName.get(map);
    if (!t) throw new Error(`no map ${map} in this store`);
    return t;
  };
  return {
    get(map, key): MaybePromise<Buffer | undefined> {
      const r = of(map).get(key);
      return r instanceof Promise ? r.then((x) => x?.value) : r?.value;
    },
    put: (map, key, value) => of(map).put({ key, value }),
    delete: (map, key) => of(map).delete(key),
    range: async (map, q) => (await of(map).range(q)).map((r) => [r.key, r.value] as [Buffer, Buffer]),
  };
}

export async function kvEngineOps(db: Writer, readOnly: boolean, tables: Tables): Promise<KvEngineOps> {
  const state = new PendingTable(
    db,
    KV_STATE,
    readOnly,
    false,
    RowCache.bounded<KvRecord>(KV_CACHE_BYTES, (r) => r.value.length),
  );
  tables.push(state);
  const maps = await openMaps(db, KV_MAPS, readOnly, tables);
  return {
    get: (key) => state.get(key),
    put: (record) => state.put(record),
    delete: (key) => state.delete(key),
    range: (q, keysOnly) => state.range(q, keysOnly),
    count: (start, end) => state.count(start, end),
    maps,
  };
}

export async function blobEngineOps(db: Writer, readOnly: boolean, tables: Tables): Promise<BlobEngineOps> {
  const maps = await openMaps(db, BLOB_MAPS, readOnly, tables);
  const writable = (): void => {
    if (readOnly) throw readOnlyStore();
  };
  const exists = async (id: number): Promise<boolean> =>
    (await db.rows('SELECT 1 FROM blob WHERE id = $1', [BigInt(id)])).length > 0;
  return {
    async get(id): Promise<BlobRecord | undefined> {
      const rows = await db.rows('SELECT data, metadata FROM blob WHERE id = $1', [BigInt(id)]);
      if (rows.length === 0) return undefined;
      const [data, metadata] = rows[0]!;
      return {
        data: blobOf(data ?? null),
        metadata: metadata === null || metadata === undefined ? null : String(metadata),
      };
    },
    async insert(data, metadata) {
      writable();
      // An id raw SQL already took is skipped, not a constraint error (which would abort the batch).
      for (;;) {
        const rows = await db.rows(
          "INSERT INTO blob (id, data, metadata) VALUES (nextval('blob_id_seq'), $1, $2) ON CONFLICT DO NOTHING RETURNING id",
          [data, metadata],
        );
        if (rows.length > 0) return Number(rows[0]![0]);
      }
    },
    async reserveId() {
      writable();
      for (;;) {
        const id = Number((await db.rows("SELECT nextval('blob_id_seq')"))[0]![0]);
        if (!(await exists(id))) return id;
      }
    },
    async insertWithId(id, data, metadata) {
      writable();
      await db.exec('INSERT OR REPLACE INTO blob (id, data, metadata) VALUES ($1, $2, $3)', [
        BigInt(id),
        data,
        metadata,
      ]);
    },
    async update(id, data, metadata) {
      writable();
      const key = BigInt(id);
      let changed: number;
      if (data !== undefined && metadata !== undefined) {
        changed = (await db.exec('UPDATE blob SET data = $2, metadata = $3 WHERE id = $1', [key, data, metadata]))
          .rowsChanged;
      } else if (data !== undefined) {
        changed = (await db.exec('UPDATE blob SET data = $2 WHERE id = $1', [key, data])).rowsChanged;
      } else if (metadata !== undefined) {
        changed = (await db.exec('UPDATE blob SET metadata = $2 WHERE id = $1', [key, metadata])).rowsChanged;
      } else {
        return exists(id);
      }
      return changed > 0;
    },
    async delete(id) {
      writable();
      return (await db.exec('DELETE FROM blob WHERE id = $1', [BigInt(id)])).rowsChanged > 0;
    },
    async ids(after, limit) {
      const rows = await db.rows('SELECT id FROM blob WHERE id > $1 ORDER BY id LIMIT $2', [
        BigInt(after),
        BigInt(limit),
      ]);
      return rows.map((r) => Number(r[0]));
    },
    maps,
  };
}
