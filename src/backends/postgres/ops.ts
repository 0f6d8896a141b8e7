/** KvOps and BlobOps over one batch (see batch.ts): reads are queries, writes are pipelined. */
import type { BlobEngineOps, BlobRecord, KvEngineOps } from '../backend.js';
import { type Batch, rangeParams, rangeSql } from './batch.js';
import { toRecord } from './records.js';

const KV_COLUMNS = 'key, value, create_rev, mod_rev, version, lease';
const KV_KEY_COLUMNS = "key, '\\x'::bytea, create_rev, mod_rev, version, lease";

export function kvOps(b: Batch): KvEngineOps {
  const t = b.t;
  return {
    get: (key) => {
      const cached = b.cachedKv(key);
      if (cached !== null) return cached;
      return b.rawRows(`SELECT ${KV_COLUMNS} FROM ${t.kvState} WHERE key = $1`, [key]).then((rows) => {
        const record = rows[0] ? toRecord(rows[0]) : undefined;
        b.rememberKv(key, record);
        return record;
      });
    },
    modRevOf: (key) => {
      const cached = b.cachedKv(key);
      if (cached !== null) return cached?.modRev;
      return b
        .rawRows(`SELECT mod_rev FROM ${t.kvState} WHERE key = $1`, [key])
        .then((rows) => (rows[0] ? Number(rows[0][0]) : undefined));
    },
    put: (r) => b.writeKv(r.key, r),
    delete: (key) => b.writeKv(key, null),
    range: async (q, keysOnly) => {
      b.flush();
      const rows = await b.rawRows(
        rangeSql(t.kvState, 'key', keysOnly ? KV_KEY_COLUMNS : KV_COLUMNS, q),
        rangeParams(q),
      );
      return rows.map(toRecord);
    },
    count: async (start, end) => {
      b.flush();
      const rows = await b.rawRows(
        `SELECT count(*) FROM ${t.kvState} WHERE key >= $1${end === undefined ? '' : ' AND key < $2'}`,
        end === undefined ? [start] : [start, end],
      );
      return Number(rows[0]![0]);
    },
    maps: b.mapOps(),
  };
}

/**
 * Ids come from the store's sequence: positive, increasing, never handed out twice, across every
 * server on the database. A batch takes them in blocks (1, 2, 4, … up to 256) so many stores in
 * one batch cost a few round trips; ids of a block left unused are skipped, never reused.
 */
class IdBlock {
  private ids: number[] = [];
  private size = 1;
  constructor(private readonly b: Batch) {}

  async next(): Promise<number> {
    if (this.ids.length === 0) {
      const seq = this.b.t.blobSeq.replaceAll("'", "''");
      const rows = await this.b.rawRows(`SELECT nextval('${seq}') AS id FROM generate_series(1, $1) ORDER BY id`, [
        this.size,
      ]);
      this.ids = rows.map((r) => Number(r[0]));
      this.size = Math.min(this.size * 2, 256);
    }
    return this.ids.shift()!;
  }
}

export function blobOps(b: Batch): BlobEngineOps {
  const t = b.t;
  const ids = new IdBlock(b);
  const insert = (id: number, data: Uint8Array, metadata: string | null): void => {
    b.send(
      `INSERT INTO ${t.blob} (id, data, metadata) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, metadata = EXCLUDED.metadata`,
      [id, Buffer.from(data.buffer, data.byteOffset, data.byteLength), metadata],
    );
  };
  return {
    get: async (id): Promise<BlobRecord | undefined> => {
      const rows = await b.rawRows(`SELECT data, metadata FROM ${t.blob} WHERE id = $1`, [id]);
      const row = rows[0];
      if (!row) return undefined;
      return { data: (row[0] as Buffer | null) ?? Buffer.alloc(0), metadata: (row[1] as string | null) ?? null };
    },
    insert: async (data, metadata) => {
      const id = await ids.next();
      insert(id, data, metadata);
      return id;
    },
    update: async (id, data, metadata) => {
      if (data === undefined && metadata === undefined) {
        return (await b.rawRows(`SELECT 1 FROM ${t.blob} WHERE id = $1`, [id])).length > 0;
      }
      const sets: string[] = [];
      const params: (Buffer | string | number | null)[] = [id];
      if (data !== undefined) {
        params.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
        sets.push(`data = $${params.length}`);
      }
      if (metadata !== undefined) {
        params.push(metadata);
        sets.push(`metadata = $${params.length}`);
      }
      return (await b.count(`UPDATE ${t.blob} SET ${sets.join(', ')} WHERE id = $1`, params)) > 0;
    },
    delete: async (id) => {
      return (await b.count(`DELETE FROM ${t.blob} WHERE id = $1`, [id])) > 0;
    },
    reserveId: () => ids.next(),
    insertWithId: (id, data, metadata) => {
      insert(id, data, metadata);
      // An id copied from another store (buffdb migrate, a commit log) is never handed out again.
      const seq = t.blobSeq.replaceAll("'", "''");
      b.send(`SELECT setval('${seq}', $1) WHERE $1 > (SELECT last_value FROM ${t.blobSeq})`, [id]);
    },
    ids: async (after, limit) =>
      (await b.rawRows(`SELECT id FROM ${t.blob} WHERE id > $1 ORDER BY id LIMIT $2`, [after, limit])).map((r) =>
        Number(r[0]),
      ),
    maps: b.mapOps(),
  };
}
