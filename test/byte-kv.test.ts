/**
 * The byte-keyed engines (RocksDB, LMDB; src/backends/byte-kv): ordered ranges and counts — with
 * keys longer than LMDB's stored-key limit and with a batch's own pending writes merged in —
 * checked against a model; the upgrade of stores written by buffdb 0.1; LMDB's check against
 * another process writing meanwhile; engine errors and path checks.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { rng } from '../scripts/fuzz.js';
import type { Backend, KvEngineOps, KvRecord, RangeQuery, StoreEngine } from '../src/backends/backend.js';
import { loadBackend } from '../src/backends/index.js';
import { TEST_BACKENDS, tempDir } from './helpers/server.js';

const BYTE_BACKENDS = TEST_BACKENDS.filter((b) => b === 'rocksdb' || b === 'lmdb');
/** LMDB's long-key prefix (src/backends/lmdb): keys longer than this are stored as prefix + hash. */
const PREFIX = 1024;

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const latin1 = (k: Buffer): string => k.toString('latin1');

/** Keys around the long-key boundary: many share one truncated prefix; some have 0x00/0xff right after it. */
function keyPool(): Buffer[] {
  const p = 'p'.repeat(PREFIX);
  const texts = [
    '',
    'a',
    'p',
    p.slice(0, PREFIX - 1),
    `${p.slice(0, PREFIX - 1)}q`,
    p,
    `${p}\u0000`,
    `${p}\u00ff`,
    `${p}a`,
    `${p}aa`,
    `${p}ab`,
    `${p}b`,
    `${p}${'z'.repeat(4000)}`,
    `${p}\u0000\u0000`,
    `${p.slice(0, PREFIX - 1)}q${'x'.repeat(100)}`,
    `${p.slice(0, PREFIX - 1)}q${'y'.repeat(100)}`,
    'q',
    'z\u00ff',
  ];
  for (let i = 0; i < 12; i++) texts.push(`${p}m${String(i).padStart(3, '0')}`);
  return texts.map(b);
}

function record(key: Buffer, n: number): KvRecord {
  return {
    key,
    value: b(`v${n}`),
    createRev: n,
    modRev: n + 1,
    version: (n % 5) + 1,
    lease: n % 3 === 0 ? 0n : BigInt(n),
  };
}

/** What a range must answer: the model's keys in [start, end), ordered, limited. */
function expected<T>(model: Map<string, T>, q: RangeQuery): T[] {
  const keys = [...model.keys()]
    .filter((k) => k >= latin1(q.start) && (q.end === undefined || k < latin1(q.end)))
    .sort();
  if (q.reverse) keys.reverse();
  return keys.slice(0, q.limit).map((k) => model.get(k)!);
}

function randomQuery(rand: () => number, pool: Buffer[]): RangeQuery {
  const pick = (): Buffer => {
    const k = pool[Math.floor(rand() * pool.length)]!;
    // Bounds also cut inside a group: the truncated prefix, one byte more, or anywhere.
    const cut = [k.length, PREFIX, PREFIX + 1, Math.floor(rand() * (k.length + 1))][Math.floor(rand() * 4)]!;
    return k.subarray(0, Math.min(cut, k.length));
  };
  let start = pick();
  let end: Buffer | undefined = rand() < 0.3 ? undefined : pick();
  if (end !== undefined && Buffer.compare(end, start) < 0) [start, end] = [end, start];
  const limit = rand() < 0.5 ? Number.MAX_SAFE_INTEGER : 1 + Math.floor(rand() * 6);
  return { start, end, limit, reverse: rand() < 0.5 };
}

function checkRanges(ops: KvEngineOps, model: Map<string, KvRecord>, rand: () => number, pool: Buffer[], n: number) {
  for (let i = 0; i < n; i++) {
    const q = randomQuery(rand, pool);
    const label = `range ${latin1(q.start).length}..${q.end === undefined ? 'end' : latin1(q.end).length} limit ${q.limit} reverse ${q.reverse}`;
    const want = expected(model, q);
    const got = ops.range(q, false) as KvRecord[];
    assert.deepEqual(
      got.map((r) => latin1(r.key)),
      want.map((r) => latin1(r.key)),
      label,
    );
    assert.deepEqual(got, want, label);
    const keysOnly = ops.range(q, true) as KvRecord[];
    assert.deepEqual(
      keysOnly.map((r) => [latin1(r.key), r.createRev, r.modRev, r.version, r.lease]),
      want.map((r) => [latin1(r.key), r.createRev, r.modRev, r.version, r.lease]),
      `${label} (keys only)`,
    );
    const all = expected(model, { ...q, limit: Number.MAX_SAFE_INTEGER });
    assert.equal(ops.count(q.start, q.end), all.length, `count ${label}`);
    const maps = ops.maps.range('lease_key', q) as [Buffer, Buffer][];
    assert.deepEqual(
      maps.map(([k, v]) => [latin1(k), latin1(v)]),
      want.map((r) => [latin1(r.key), latin1(r.value)]),
      `map ${label}`,
    );
  }
}

for (const name of BYTE_BACKENDS) {
  describe(`byte-keyed engine [${name}]`, () => {
    let backend: Backend;
    let dir: string;
    before(async () => {
      backend = await loadBackend(name);
      dir = tempDir(`buffdb-bytekv-${name}-`);
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('ranges, counts and map ranges match a model: long keys, group bounds, pending writes and deletes', async () => {
      const pool = keyPool();
      const rand = rng(20261201);
      const path = join(dir, 'model.kv.db');
      let engine: StoreEngine<KvEngineOps> = await backend.openKv(path);
      const model = new Map<string, KvRecord>();
      try {
        for (let round = 0; round < 30; round++) {
          if (round === 15) {
            // The same state must read back the same after reopening.
            await engine.close();
            engine = await backend.openKv(path);
          }
          const pending = new Map(model);
          await engine.batch(async (ops) => {
            checkRanges(ops, pending, rand, pool, 5);
            for (let w = 0; w < 12; w++) {
              const key = pool[Math.floor(rand() * pool.length)]!;
              if (rand() < 0.35) {
                ops.delete(key);
                ops.maps.delete('lease_key', key);
                pending.delete(latin1(key));
              } else {
                const r = record(key, round * 100 + w);
                ops.put(r);
                ops.maps.put('lease_key', key, r.value);
                pending.set(latin1(key), r);
              }
              // Reads inside the batch see its own writes, merged in order.
              if (w % 4 === 3) checkRanges(ops, pending, rand, pool, 3);
            }
            for (const key of pool) {
              const got = ops.get(key) as KvRecord | undefined;
              assert.deepEqual(got, pending.get(latin1(key)), `get of a ${key.length}-byte key`);
            }
          });
          model.clear();
          for (const [k, v] of pending) model.set(k, v);
        }
        await engine.batch(async (ops) => checkRanges(ops, model, rand, pool, 40));
      } finally {
        await engine.close();
      }
    });

    it('a range reads on past many pending deletes, both ways (the engine is read in growing pages)', async () => {
      const engine = await backend.openKv(join(dir, 'pages.kv.db'));
      const key = (i: number): Buffer => b(`k${String(i).padStart(4, '0')}`);
      try {
        await engine.batch(async (ops) => {
          for (let i = 0; i < 600; i++) ops.put(record(key(i), i));
        });
        await engine.batch(async (ops) => {
          for (let i = 0; i < 550; i++) ops.delete(key(i));
          for (let i = 560; i < 600; i++) ops.delete(key(i));
          const all = { start: b('k'), end: b('l'), limit: 5 };
          const forward = ops.range({ ...all, reverse: false }, true) as KvRecord[];
          assert.deepEqual(
            forward.map((r) => latin1(r.key)),
            [550, 551, 552, 553, 554].map((i) => latin1(key(i))),
          );
          const backward = ops.range({ start: b('k'), end: key(560), limit: 3, reverse: true }, true) as KvRecord[];
          assert.deepEqual(
            backward.map((r) => latin1(r.key)),
            [559, 558, 557].map((i) => latin1(key(i))),
          );
          assert.equal(ops.count(b('k'), b('l')), 10);
        });
      } finally {
        await engine.close();
      }
    });

    it('a failed batch leaves nothing behind', async () => {
      const path = join(dir, 'abandon.kv.db');
      const engine = await backend.openKv(path);
      try {
        await assert.rejects(
          engine.batch(async (ops) => {
            ops.put(record(b('kept-out'), 1));
            throw new Error('abandoned');
          }),
          /abandoned/,
        );
        await engine.batch(async (ops) => {
          assert.equal(ops.get(b('kept-out')), undefined);
          assert.equal(ops.count(Buffer.alloc(0), undefined), 0);
        });
      } finally {
        await engine.close();
      }
    });
  });
}
