/**
 * The equal-work reference of the library section: raw better-sqlite3 prepared statements, one
 * transaction per BATCH, running exactly the storage statements buffdb's SQLite backend runs for
 * a buffdb Set and Get (src/backends/sqlite/sqlite-backend.ts kvOps / mapOps, driven by
 * src/store/kv/mvcc-batch.ts and revision-engine.ts), on buffdb's own schema:
 *
 *   per batch   BEGIN IMMEDIATE; read the `rev` and `compact` counters (meta map); … ;
 *               write the `rev` counter (when the batch wrote); COMMIT (WAL, synchronous=FULL)
 *   per Set     read the key's current record (value, revisions, version, lease: for version /
 *               create_revision and the event's previous value); write the record (kv_state);
 *               write the history event (history map: header with the sync stamp, key, value,
 *               previous value) — a local put's stamp lives only in its event (sync/key-stamps.ts)
 *   per Get     read the key's value as text (checked for U+FFFD, i.e. bytes that are not UTF-8)
 *
 * Nothing buffdb stores is left out; only buffdb's JS (handlers, group commit, the MvccBatch,
 * event encoding, the in-process call) is not here. If the backend's statements change, change
 * these with them.
 */
import Database from 'better-sqlite3';
import { kvSchema, mapTable } from '../src/backends/sqlite/schema.js';

/** What the history event of a Set takes besides key, value and previous value (history.ts HEADER_FULL). */
const EVENT_HEADER = 90;
const COUNTER_BYTES = 8;

export interface EqualWorkReference {
  /** Milliseconds to Set every key (one transaction per `batch`). */
  set(): number;
  /** Milliseconds to Get every key (one transaction per `batch`). */
  get(): number;
  close(): void;
}

export function equalWorkReference(path: string, keys: string[], value: string, batch: number): EqualWorkReference {
  const db = new Database(path);
  db.pragma('busy_timeout = 5000');
  db.pragma('journal_mode = WAL');
  kvSchema(db);
  db.pragma('synchronous = FULL');
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const meta = mapTable('meta');
  const metaGet = db.prepare<[Buffer], Buffer>(`SELECT v FROM ${meta} WHERE k = ?`).pluck();
  const metaPut = db.prepare(`INSERT OR REPLACE INTO ${meta} (k, v) VALUES (?, ?)`);
  const historyPut = db.prepare(`INSERT OR REPLACE INTO ${mapTable('history')} (k, v) VALUES (?, ?)`);
  const recordGet = db
    .prepare<[Buffer], [Buffer, bigint, bigint, bigint, bigint]>(
      'SELECT CAST(value AS BLOB), create_rev, mod_rev, version, lease FROM kv_state WHERE key = CAST(? AS TEXT)',
    )
    .raw(true)
    .safeIntegers(true);
  const textGet = db.prepare<[Buffer], string>('SELECT value FROM kv_state WHERE key = CAST(? AS TEXT)').pluck();
  const recordPut = db.prepare(
    'INSERT OR REPLACE INTO kv_state (key, value, create_rev, mod_rev, version, lease) ' +
      'VALUES (CAST(? AS TEXT), CAST(? AS TEXT), ?, ?, ?, ?)',
  );
  const REV = Buffer.from('rev');
  const COMPACT = Buffer.from('compact');
  const counter = (n: number): Buffer => {
    const b = Buffer.alloc(COUNTER_BYTES);
    b.writeUInt32BE(n >>> 0, 4);
    return b;
  };
  const readCounters = (): number => {
    const raw = metaGet.get(REV);
    metaGet.get(COMPACT);
    return raw === undefined ? 1 : raw.readUInt32BE(4);
  };

  const setBatch = (from: number, to: number): void => {
    begin.run();
    let rev = readCounters();
    for (let i = from; i < to; i++) {
      const key = Buffer.from(keys[i]!, 'utf8');
      const val = Buffer.from(value, 'utf8');
      const prev = recordGet.get(key);
      rev++;
      recordPut.run(key, val, prev ? prev[1] : rev, rev, prev ? Number(prev[3]) + 1 : 1, 0n);
      const prevValue = prev ? prev[0] : Buffer.alloc(0);
      const event = Buffer.allocUnsafe(EVENT_HEADER + key.length + val.length + prevValue.length);
      event.fill(0, 0, EVENT_HEADER);
      key.copy(event, EVENT_HEADER);
      val.copy(event, EVENT_HEADER + key.length);
      prevValue.copy(event, EVENT_HEADER + key.length + val.length);
      const historyKey = Buffer.alloc(12);
      historyKey.writeUInt32BE(rev, 4);
      historyPut.run(historyKey, event);
    }
    metaPut.run(REV, counter(rev));
    commit.run();
  };

  const getBatch = (from: number, to: number): void => {
    begin.run();
    readCounters();
    for (let i = from; i < to; i++) {
      const text = textGet.get(Buffer.from(keys[i]!, 'utf8'));
      if (text === undefined || text.includes('\uFFFD')) throw new Error('equal-work reference get: missing');
    }
    commit.run();
  };

  const timed = (run: (from: number, to: number) => void): number => {
    const t0 = performance.now();
    for (let i = 0; i < keys.length; i += batch) run(i, Math.min(keys.length, i + batch));
    return performance.now() - t0;
  };
  return {
    set: () => timed(setBatch),
    get: () => timed(getBatch),
    close: () => db.close(),
  };
}
