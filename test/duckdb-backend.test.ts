/**
 * The DuckDB engine's own mechanics, below the store: key byte order over BLOB keys, writes held
 * back until commit (each batch's reads, ranges and counts must see them, a rollback must drop
 * them), the upgrade of buffdb 0.1 stores, and the text view raw SQL reads.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { rng } from '../scripts/fuzz.js';
import type { KvEngineOps, KvRecord, StoreEngine } from '../src/backends/backend.js';
import { RowCache } from '../src/backends/duckdb/row-cache.js';
import { loadBackend } from '../src/backends/index.js';
import { status } from '../src/errors.js';
import { BuffDb } from '../src/store/buffdb.js';
import { TEST_BACKENDS, tempDir } from './helpers/server.js';

const RUN = TEST_BACKENDS.includes('duckdb');
const dir = tempDir('buffdb-duckdb-');
after(() => rmSync(dir, { recursive: true, force: true }));

const id = (k: Buffer): string => k.toString('latin1');
const sorted = (keys: Buffer[]): Buffer[] => [...keys].sort(Buffer.compare);
const record = (key: Buffer, value: Buffer, rev: number): KvRecord => ({
  key,
  value,
  createRev: rev,
  modRev: rev,
  version: 1,
  lease: BigInt(rev % 3),
});

class Rollback extends Error {}

/** Runs `work` in a batch that is rolled back. */
async function rolledBack(engine: StoreEngine<KvEngineOps>, work: (ops: KvEngineOps) => Promise<void>): Promise<void> {
  await assert.rejects(
    engine.batch(async (ops) => {
      await work(ops);
      throw new Rollback();
    }),
    Rollback,
  );
}

describe('duckdb engine', { skip: RUN ? false : 'duckdb is not in BUFFDB_TEST_BACKENDS' }, () => {
  it('ranges are in key byte order: prefixes first, 0x00 and bytes >= 0x80 included, stored and pending', async () => {
    const engine = await (await loadBackend('duckdb')).openKv(join(dir, 'order.kv.db'));
    try {
      const keys = [
        '',
        '00',
        '0000',
        '0001',
        '61',
        '6100',
        '610000',
        '6101',
        '6161',
        '7f',
        '80',
        '8000',
        'ff',
        'ffff',
      ].map((h) => Buffer.from(h, 'hex'));
      const stored = keys.filter((_, i) => i % 2 === 0);
      const pending = keys.filter((_, i) => i % 2 === 1);
      await engine.batch(async (ops) => {
        for (const k of stored) await ops.put(record(k, k, 2));
      });
      await engine.batch(async (ops) => {
        for (const k of pending) await ops.put(record(k, k, 3));
        const all = { start: Buffer.alloc(0), end: undefined, limit: 100, reverse: false };
        assert.deepEqual(
          (await ops.range(all, false)).map((r) => r.key),
          sorted(keys),
        );
        assert.deepEqual(
          (await ops.range({ ...all, reverse: true }, true)).map((r) => r.key),
          sorted(keys).reverse(),
        );
        const span = { start: Buffer.from('00', 'hex'), end: Buffer.from('80', 'hex'), limit: 5, reverse: false };
        assert.deepEqual(
          (await ops.range(span, false)).map((r) => r.key.toString('hex')),
          ['00', '0000', '0001', '61', '6100'],
        );
        assert.equal(await ops.count(span.start, span.end), 9);
      });
    } finally {
      await engine.close();
    }
  });

  it('point reads after many misses (when the largest key is known) find the largest key and keys below it', async () => {
    const path = join(dir, 'largest.kv.db');
    let engine = await (await loadBackend('duckdb')).openKv(path);
    const key = (i: number): Buffer => Buffer.from(`k${String(i).padStart(4, '0')}`);
    try {
      await engine.batch(async (ops) => {
        for (let i = 0; i < 300; i += 2) await ops.put(record(key(i), key(i), i + 2));
      });
      // A fresh engine: nothing cached, the largest key not yet read.
      await engine.close();
      engine = await (await loadBackend('duckdb')).openKv(path);
      await engine.batch(async (ops) => {
        // More misses than the engine reads before it looks up the largest key.
        for (let i = 1; i < 300; i += 2) assert.equal(await ops.get(key(i)), undefined, `odd key ${i}`);
        assert.deepEqual(await ops.get(key(298)), record(key(298), key(298), 300));
        assert.deepEqual(await ops.get(key(296)), record(key(296), key(296), 298));
        assert.equal(await ops.get(key(299)), undefined);
        await ops.put(record(key(400), key(400), 500));
      });
      await engine.batch(async (ops) => {
        assert.deepEqual(await ops.get(key(400)), record(key(400), key(400), 500));
        await ops.put(record(key(350), key(350), 501));
      });
      await engine.close();
      engine = await (await loadBackend('duckdb')).openKv(path);
      await engine.batch(async (ops) => {
        for (let i = 1; i < 300; i += 2) assert.equal(await ops.get(key(i)), undefined);
        assert.deepEqual(await ops.get(key(350)), record(key(350), key(350), 501));
        assert.deepEqual(await ops.get(key(400)), record(key(400), key(400), 500));
      });
    } finally {
      await engine.close();
    }
  });

  it('the row cache keeps the most recently used rows within its budget; a complete one answers misses as absent', () => {
    const cache = RowCache.bounded<Buffer>(3 * (96 + 1 + 10), (v) => v.length);
    const ten = (c: string): Buffer => Buffer.alloc(10, c);
    for (const k of ['a', 'b', 'c']) cache.set(k, ten(k));
    assert.deepEqual(cache.get('a'), ten('a')); // a is now the most recent
    cache.set('d', ten('d')); // evicts b, the least recently used
    assert.equal(cache.get('b'), undefined);
    assert.deepEqual([cache.get('a'), cache.get('c'), cache.get('d')], [ten('a'), ten('c'), ten('d')]);
    cache.set('e', null); // an absent key costs its slot too
    assert.equal(cache.get('e'), null);
    assert.equal(cache.get('a'), undefined);
    const whole = RowCache.complete<Buffer>((v) => v.length);
    whole.set('x', ten('x'));
    assert.equal(whole.get('y'), null);
    whole.set('x', null);
    assert.deepEqual(whole.values(), []);
  });

  it('writes held back until commit agree with a plain model over random batches, commits and rollbacks', async () => {
    const path = join(dir, 'model.kv.db');
    const next = rng(20261128);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
    // Few short keys with 0x00 and 0xff, so keys collide often (replacements, deletes of stored rows).
    const alphabet = [0x00, 0x01, 0x61, 0x80, 0xff];
    const randomKey = (): Buffer => Buffer.from(Array.from({ length: Math.floor(next() * 4) }, () => pick(alphabet)));
    const model = new Map<string, KvRecord>();
    const maps = { history: new Map<string, Buffer>(), meta: new Map<string, Buffer>() };
    let historyKey = 0;
    let engine = await (await loadBackend('duckdb')).openKv(path);
    try {
      for (let batch = 0; batch < 60; batch++) {
        const rollback = next() < 0.2;
        const view = new Map(model);
        const mapsView = { history: new Map(maps.history), meta: new Map(maps.meta) };
        let rev = batch * 1000;
        const work = async (ops: KvEngineOps): Promise<void> => {
          // Half the batches begin with a burst of writes: past the point where a range flushes
          // the pending rows instead of merging them.
          const burst = next() < 0.5 ? Math.floor(next() * 150) : 0;
          const n = burst + 1 + Math.floor(next() * 150);
          for (let i = 0; i < n; i++) {
            const key = i < burst ? Buffer.concat([randomKey(), randomKey()]) : randomKey();
            const op = i < burst ? next() * 0.5 : next();
            if (op < 0.35) {
              const r = record(key, Buffer.from(`v${rev}`), ++rev);
              await ops.put(r);
              view.set(id(key), r);
            } else if (op < 0.5) {
              await ops.delete(key);
              view.delete(id(key));
            } else if (op < 0.7) {
              assert.deepEqual(await ops.get(key), view.get(id(key)));
            } else if (op < 0.8) {
              const [a, b] = sorted([randomKey(), randomKey()]);
              const q = { start: a!, end: next() < 0.3 ? undefined : b, limit: 1 + Math.floor(next() * 8) };
              const reverse = next() < 0.5;
              const want = [...view.values()]
                .filter((r) => Buffer.compare(r.key, q.start) >= 0 && (!q.end || Buffer.compare(r.key, q.end) < 0))
                .sort((x, y) => (reverse ? Buffer.compare(y.key, x.key) : Buffer.compare(x.key, y.key)))
                .slice(0, q.limit);
              const keysOnly = next() < 0.3;
              const got = await ops.range({ ...q, reverse }, keysOnly);
              assert.deepEqual(got, keysOnly ? want.map((r) => ({ ...r, value: Buffer.alloc(0) })) : want);
              if (next() < 0.3) assert.equal(await ops.count(q.start, q.end), countIn(view, q));
            } else if (op < 0.95) {
              // History-like map: ascending keys (new rows) and now and then a replaced or deleted one.
              const k = Buffer.alloc(8);
              k.writeUInt32BE(next() < 0.8 ? ++historyKey : Math.floor(next() * (historyKey + 1)), 4);
              await writeMap(ops, mapsView, 'history', k, next() < 0.9 ? Buffer.from(`h${rev}`) : null);
            } else {
              // meta is held in memory by the engine: the same rules, another code path.
              await writeMap(
                ops,
                mapsView,
                'meta',
                Buffer.from(`m${Math.floor(next() * 4)}`),
                next() < 0.8 ? Buffer.from(`${rev}`) : null,
              );
            }
          }
        };
        if (rollback) {
          await rolledBack(engine, work);
        } else {
          await engine.batch(work);
          model.clear();
          for (const [k, v] of view) model.set(k, v);
          maps.history = mapsView.history;
          maps.meta = mapsView.meta;
        }
        if (batch % 20 === 19) {
          await engine.close();
          engine = await (await loadBackend('duckdb')).openKv(path);
        }
        await engine.batch(async (ops) => {
          const all = { start: Buffer.alloc(0), end: undefined, limit: 10_000, reverse: false };
          assert.deepEqual(
            await ops.range(all, false),
            [...model.values()].sort((x, y) => Buffer.compare(x.key, y.key)),
            `after batch ${batch}`,
          );
          for (const name of ['history', 'meta'] as const) {
            const want = [...maps[name]].map(([k, v]) => [Buffer.from(k, 'latin1'), v] as const);
            want.sort(([a], [b]) => Buffer.compare(a, b));
            assert.deepEqual(await ops.maps.range(name, all), want, `${name} after batch ${batch}`);
          }
        });
      }
    } finally {
      await engine.close();
    }
  });

  it('a store written by buffdb 0.1 is upgraded at open: every key at revision 1, version 1; NULL values were absent', async () => {
    const kvStore = join(dir, 'old.kv.db');
    const instance = await DuckDBInstance.create(kvStore);
    const c = await instance.connect();
    await c.run('CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT)');
    await c.run("INSERT INTO kv VALUES ('a', '1'), ('b', NULL), ('ü', 'ç')");
    c.closeSync();
    instance.closeSync();
    await assert.rejects(
      BuffDb.open({ backend: 'duckdb', kvStore, blobStore: join(dir, 'old.blob.db'), readOnly: true }),
      (err: Error & { code?: number }) => {
        assert.equal(err.code, status.FAILED_PRECONDITION);
        assert.match(err.message, /buffdb 0\.1.*without --read-only/);
        return true;
      },
    );
    const db = await BuffDb.open({ backend: 'duckdb', kvStore, blobStore: join(dir, 'old.blob.db') });
    try {
      assert.equal(await db.kv.getValue('a'), '1');
      assert.equal(await db.kv.getValue('ü'), 'ç');
      await assert.rejects(db.kv.getValue('b'), (err: { code?: number }) => err.code === status.NOT_FOUND);
      assert.deepEqual(
        await sqlRows(db, 'SELECT decode(key), create_rev, mod_rev, version, lease FROM kv_state ORDER BY key'),
        [
          ['a', 1n, 1n, 1n, 0n],
          ['ü', 1n, 1n, 1n, 0n],
        ],
      );
      await db.kv.setValue('a', '2');
      assert.equal(db.kv.status().rev, 2);
      assert.deepEqual(await sqlRows(db, 'SELECT key, value FROM kv ORDER BY key'), [
        ['a', '2'],
        ['ü', 'ç'],
      ]);
    } finally {
      await db.close();
    }
  });

  it('raw SQL reads bytes that are not UTF-8 as NULL through kv, and kv_state as bytes; every write to kv is refused', async () => {
    const db = await BuffDb.open({
      backend: 'duckdb',
      kvStore: join(dir, 'view.kv.db'),
      blobStore: join(dir, 'view.blob.db'),
    });
    try {
      const put = (key: Buffer, value: Buffer) =>
        db.kv.put({ key, value, lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false });
      await put(Buffer.from('bin'), Buffer.from([0xff, 0x00]));
      await put(Buffer.from([0xfe]), Buffer.from('text'));
      assert.deepEqual(
        await sqlRows(db, "SELECT key, value FROM kv WHERE value = 'text' OR key = 'bin' ORDER BY value NULLS FIRST"),
        [
          ['bin', null],
          [null, 'text'],
        ],
      );
      const raw = await sqlRows(db, "SELECT value FROM kv_state WHERE key = 'bin'::BLOB");
      assert.deepEqual(
        raw.map((r) => Buffer.from(r[0] as Uint8Array)),
        [Buffer.from([0xff, 0x00])],
      );
      for (const sql of [
        "UPDATE kv SET value = 'x'",
        "DELETE FROM kv WHERE key = 'bin'",
        "INSERT INTO main.kv VALUES ('k', 'v')",
      ]) {
        await assert.rejects(db.query.execute(sql, 'kv'), (err: Error & { code?: number }) => {
          assert.equal(err.code, status.PERMISSION_DENIED, sql);
          assert.match(err.message, /kv.*read-only view.*Kv Set\/Delete or the etcd API/);
          return true;
        });
      }
      assert.equal(db.kv.status().rev, 3);
    } finally {
      await db.close();
    }
  });
});

/** Writes (or with `value` null deletes) a map entry in the engine and in the model; reads it back. */
async function writeMap(
  ops: KvEngineOps,
  model: Record<'history' | 'meta', Map<string, Buffer>>,
  map: 'history' | 'meta',
  key: Buffer,
  value: Buffer | null,
): Promise<void> {
  if (value) {
    await ops.maps.put(map, key, value);
    model[map].set(id(key), value);
  } else {
    await ops.maps.delete(map, key);
    model[map].delete(id(key));
  }
  assert.deepEqual(await ops.maps.get(map, key), value ?? undefined);
}

async function sqlRows(db: BuffDb, sql: string): Promise<unknown[][]> {
  const rows: unknown[][] = [];
  for await (const row of db.query.query(sql, 'kv')) rows.push(row);
  return rows;
}

/** Keys of `view` in `[start, end)`. */
function countIn(view: Map<string, KvRecord>, q: { start: Buffer; end: Buffer | undefined }): number {
  return [...view.values()].filter(
    (r) => Buffer.compare(r.key, q.start) >= 0 && (!q.end || Buffer.compare(r.key, q.end) < 0),
  ).length;
}
