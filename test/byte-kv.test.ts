/**
 * The byte-keyed engines (RocksDB, LMDB; src/backends/byte-kv): ordered ranges and counts — with
 * keys longer than LMDB's stored-key limit and with a batch's own pending writes merged in —
 * checked against a model; the upgrade of stores written by buffdb 0.1; LMDB's check against
 * another process writing meanwhile; engine errors and path checks.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { open as openLmdb } from 'lmdb';
import { rng } from '../scripts/fuzz.js';
import type { Backend, KvEngineOps, KvRecord, RangeQuery, StoreEngine } from '../src/backends/backend.js';
import { loadBackend } from '../src/backends/index.js';
import { StoreError, status } from '../src/errors.js';
import { BuffDb } from '../src/store/buffdb.js';
import { canMount, TEST_BACKENDS, tempDir } from './helpers/server.js';

const MOUNT = canMount();
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

/** The part of RocksLevel used to write a store by hand (the package ships no types). */
interface RawRocks {
  open(options: { createIfMissing: boolean }): Promise<void>;
  close(): Promise<void>;
  batch(): { put(k: Buffer, v: Buffer): void; del(k: Buffer): void; write(o: { sync: boolean }): Promise<void> };
  querySync(o: object): { rows: Buffer[] };
}

/** Writes raw entries into a store file, past buffdb (to make a store as buffdb 0.1 left it). */
async function rawWrite(engine: string, path: string, writes: [Buffer, Buffer | null][]): Promise<void> {
  if (engine === 'lmdb') {
    const db = openLmdb<Buffer, Buffer>({ path, noSubdir: true, keyEncoding: 'binary', encoding: 'binary' });
    db.transactionSync(() => {
      for (const [k, v] of writes) v === null ? db.removeSync(k) : db.putSync(k, v);
    });
    await db.close();
    return;
  }
  const { RocksLevel } = createRequire(import.meta.url)('@nxtedition/rocksdb');
  const db = new RocksLevel(`${path}-rocksdb`, { keyEncoding: 'buffer', valueEncoding: 'buffer' }) as RawRocks;
  await db.open({ createIfMissing: false });
  const batch = db.batch();
  for (const [k, v] of writes) v === null ? batch.del(k) : batch.put(k, v);
  await batch.write({ sync: true });
  await db.close();
}

/** Every stored key of a store file starting with `tag`, as latin1 text (without the tag). */
async function rawKeys(engine: string, path: string, tag: string): Promise<string[]> {
  const lo = b(tag);
  const hi = Buffer.of(lo[0]! + 1);
  let keys: Buffer[];
  if (engine === 'lmdb') {
    const db = openLmdb<Buffer, Buffer>({ path, noSubdir: true, keyEncoding: 'binary', encoding: 'binary' });
    keys = [...db.getKeys({ start: lo, end: hi })];
    await db.close();
  } else {
    const { RocksLevel } = createRequire(import.meta.url)('@nxtedition/rocksdb');
    const db = new RocksLevel(`${path}-rocksdb`, { keyEncoding: 'buffer', valueEncoding: 'buffer' }) as RawRocks;
    await db.open({ createIfMissing: false });
    const { rows } = db.querySync({ gte: lo, lt: hi, values: false, keyEncoding: 'buffer', valueEncoding: 'buffer' });
    keys = rows.filter((_, i) => i % 2 === 0);
    await db.close();
  }
  return keys.map((k) => latin1(k.subarray(1)));
}

const u64 = (n: number): Buffer => {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(n));
  return out;
};

/** An assert.rejects / assert.throws check: a StoreError with this status and message. */
function storeError(code: number, pattern: RegExp): (err: unknown) => true {
  return (err) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

/** A temporary directory for `work`, removed afterwards. */
async function inTempDir(prefix: string, work: (dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir(prefix);
  try {
    await work(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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

    const ALL: RangeQuery = { start: Buffer.alloc(0), end: undefined, limit: Number.MAX_SAFE_INTEGER, reverse: false };

    /** The current records of a KV store file, read through the engine. */
    async function records(kvStore: string): Promise<KvRecord[]> {
      const engine = await backend.openKv(kvStore);
      try {
        return await engine.batch(async (ops) => ops.range(ALL, false) as KvRecord[]);
      } finally {
        await engine.close();
      }
    }

    /** A fresh pair of stores with buffdb's files in place (then changed by hand). */
    async function made(label: string): Promise<{ kvStore: string; blobStore: string }> {
      const stores = { kvStore: join(dir, `${label}.kv.db`), blobStore: join(dir, `${label}.blob.db`) };
      await (await BuffDb.open({ backend: name, ...stores })).close();
      return stores;
    }

    it('a KV store written by buffdb 0.1 is upgraded at open: every key at revision 1, version 1; old entries gone', async () => {
      const stores = await made('old');
      const old: [string, string][] = [
        ['alpha', 'one'],
        ['beta', 'two'],
        ['ключ', 'значение'],
        ['', 'empty key'],
      ];
      // 0.1's layout: 'k' + UTF-8 key → UTF-8 value, and no layout version.
      await rawWrite(name, stores.kvStore, [
        [b('#format'), null],
        ...old.map(([k, v]): [Buffer, Buffer] => [Buffer.concat([b('k'), Buffer.from(k)]), Buffer.from(v)]),
      ]);
      await assert.rejects(
        BuffDb.open({ backend: name, ...stores, readOnly: true }),
        storeError(status.FAILED_PRECONDITION, /buffdb 0\.1.*without --read-only/),
      );
      const db = await BuffDb.open({ backend: name, ...stores });
      try {
        for (const [k, v] of old) assert.equal(await db.kv.getValue(k), v);
        await db.kv.setValue('gamma', 'three');
      } finally {
        await db.close();
      }
      const byKey = new Map((await records(stores.kvStore)).map((r) => [r.key.toString(), r]));
      for (const [k, v] of old) {
        assert.deepEqual(byKey.get(k), {
          key: Buffer.from(k),
          value: Buffer.from(v),
          createRev: 1,
          modRev: 1,
          version: 1,
          lease: 0n,
        });
      }
      assert.equal(byKey.get('gamma')?.modRev, 2, 'the first write after the upgrade is revision 2');
      assert.deepEqual(await rawKeys(name, stores.kvStore, 'k'), []);
      assert.ok((await rawKeys(name, stores.kvStore, '#')).includes('format'));
    });

    it('0.1 keys stored under their hash alone stay readable by exact key; a write moves them, ranges list them only then', async () => {
      const stores = await made('hashed');
      const long1 = 'L'.repeat(3000);
      const long2 = 'M'.repeat(2500);
      const hashed = (k: string): Buffer =>
        Buffer.concat([b('h'), createHash('sha256').update(Buffer.from(k)).digest()]);
      await rawWrite(name, stores.kvStore, [
        [b('#format'), null],
        [hashed(long1), b('first long')],
        [hashed(long2), b('second long')],
      ]);
      const db = await BuffDb.open({ backend: name, ...stores });
      try {
        assert.equal(await db.kv.getValue(long1), 'first long');
        assert.equal(await db.kv.getValue(long2), 'second long');
        // The documented limitation: the key's text is not stored anywhere, so a range cannot list it.
        assert.deepEqual(await db.kv.committer.run((m) => m.ops.count(Buffer.alloc(0), undefined)), 0);
        await db.kv.setValue(long1, 'rewritten');
        await db.kv.deleteKey(long2);
        await assert.rejects(db.kv.getValue(long2), storeError(status.NOT_FOUND, /key not found/));
      } finally {
        await db.close();
      }
      assert.deepEqual(await rawKeys(name, stores.kvStore, 'h'), []);
      const [moved, ...rest] = await records(stores.kvStore);
      assert.deepEqual(rest, []);
      assert.equal(moved?.key.toString(), long1);
      assert.equal(moved?.value.toString(), 'rewritten');
      assert.deepEqual(
        [moved?.createRev, moved?.version],
        [1, 2],
        'continues the upgraded key (revision 1, version 1)',
      );
    });

    it('a store of a newer layout is refused, and left as it is', async () => {
      const stores = await made('newer');
      await rawWrite(name, stores.kvStore, [[b('#format'), u64(3)]]);
      await assert.rejects(
        BuffDb.open({ backend: name, ...stores }),
        storeError(status.FAILED_PRECONDITION, /newer buffdb/),
      );
      assert.deepEqual(await rawKeys(name, stores.kvStore, '#'), [
        'format',
        ...(name === 'lmdb' ? ['generation'] : []),
      ]);
    });

    it("path checks: in-memory refused; the engine's own files beside the store are checked", () => {
      assert.throws(
        () => backend.checkPath!(':memory:', 'KV', false),
        storeError(status.INVALID_ARGUMENT, /no in-memory mode/),
      );
      const fresh = join(dir, 'fresh.kv.db');
      backend.checkPath!(fresh, 'KV', false);
      if (name === 'rocksdb') {
        const marker = join(dir, 'marker.kv.db');
        writeFileSync(
          marker,
          'buffdb rocksdb store: the data is in the directory beside this file whose name ends in -rocksdb\n',
        );
        assert.throws(
          () => backend.checkPath!(marker, 'KV', false),
          storeError(status.DATA_LOSS, /data directory .*-rocksdb.* is missing/),
        );
        writeFileSync(`${marker}-rocksdb`, 'not a directory');
        assert.throws(
          () => backend.checkPath!(marker, 'KV', false),
          storeError(status.FAILED_PRECONDITION, /is not a directory/),
        );
        const foreign = join(dir, 'foreign.kv.db');
        writeFileSync(foreign, 'SQLite format 3\0');
        assert.throws(
          () => backend.checkPath!(foreign, 'KV', false),
          storeError(status.FAILED_PRECONDITION, /not a rocksdb store/),
        );
      } else {
        const store = join(dir, 'lock.kv.db');
        mkdirSync(`${store}-lock`);
        assert.throws(
          () => backend.checkPath!(store, 'KV', false),
          storeError(status.FAILED_PRECONDITION, /-lock is not a regular file/),
        );
      }
    });

    it('a full disk (a real tmpfs): RESOURCE_EXHAUSTED, reads go on; all acknowledged is there once there is room', {
      skip: !MOUNT && 'needs root to mount a tmpfs',
    }, async () => {
      await inTempDir(`buffdb-full-${name}-`, async (full) => {
        // RocksDB needs a few MiB for its files before the first write.
        const size = name === 'rocksdb' ? '8m' : '2m';
        assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', full]).status, 0);
        try {
          const stores = { backend: name, kvStore: join(full, 'kv.db'), blobStore: join(full, 'blob.db') };
          const acked = new Map<number, Buffer>();
          const db = await BuffDb.open(stores);
          try {
            let refused: unknown;
            for (let i = 0; i < 2000 && refused === undefined; i++) {
              // Random bytes: RocksDB compresses its WAL.
              const data = randomBytes(32 * 1024);
              await db.blob.storeBlob(data).then(
                (id) => acked.set(id, data),
                (err: unknown) => {
                  refused = err;
                },
              );
            }
            assert.ok(refused !== undefined, 'the store never filled up');
            storeError(status.RESOURCE_EXHAUSTED, /storage is full/)(refused);
            assert.ok(acked.size > 3, `only ${acked.size} blobs fitted`);
            for (const id of [...acked.keys()].slice(0, 3)) {
              assert.ok(Buffer.from((await db.blob.getBlob(id)).data).equals(acked.get(id)!));
            }
          } finally {
            await db.close();
          }
          assert.equal(spawnSync('mount', ['-o', 'remount,size=64m', full]).status, 0);
          const again = await BuffDb.open(stores);
          try {
            for (const [id, data] of acked) {
              assert.ok(Buffer.from((await again.blob.getBlob(id)).data).equals(data), `blob ${id} differs`);
            }
            assert.ok((await again.blob.storeBlob(randomBytes(1024))) > Math.max(...acked.keys()));
          } finally {
            await again.close();
          }
        } finally {
          spawnSync('umount', [full]);
        }
      });
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

/** Opens `open(dir)` twice on one temporary directory (as two processes would), runs `work`, closes both. */
async function twice<T extends { close(): unknown }>(
  prefix: string,
  open: (dir: string) => Promise<T>,
  work: (one: T, two: T) => Promise<void>,
): Promise<void> {
  await inTempDir(prefix, async (dir) => {
    const one = await open(dir);
    const two = await open(dir).catch(async (err: unknown) => {
      await one.close();
      throw err;
    });
    try {
      await work(one, two);
    } finally {
      await one.close();
      await two.close();
    }
  });
}

const onlyFor = (backend: 'rocksdb' | 'lmdb') => ({
  skip: BYTE_BACKENDS.includes(backend) ? false : `${backend} not under test`,
});

describe('byte-keyed engines: one process or several', () => {
  it(
    "lmdb: another writer between a batch's reads and its commit makes it ABORTED, with nothing applied",
    onlyFor('lmdb'),
    async () => {
      const backend = await loadBackend('lmdb');
      // Two handles on one file behave as two processes: each commit bumps the shared generation.
      await twice(
        'buffdb-lmdb-gen-',
        (dir) => backend.openKv(join(dir, 'kv.db')),
        async (first, second) => {
          await assert.rejects(
            first.batch(async (ops) => {
              ops.get(b('x'));
              await second.batch(async (other) => other.put(record(b('theirs'), 1)));
              ops.put(record(b('mine'), 2));
            }),
            storeError(status.ABORTED, /another process wrote/),
          );
          await first.batch(async (ops) => {
            assert.equal((ops.get(b('theirs')) as KvRecord | undefined)?.value.toString(), 'v1');
            assert.equal(ops.get(b('mine')), undefined);
          });
        },
      );
    },
  );

  it('lmdb: two stores open on the same files share one revision sequence', onlyFor('lmdb'), async () => {
    const open = (dir: string) =>
      BuffDb.open({ backend: 'lmdb', kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
    await twice('buffdb-lmdb-two-', open, async (one, two) => {
      await one.kv.setValue('a', '1');
      await two.kv.setValue('b', '2');
      await one.kv.setValue('c', '3');
      assert.equal(await two.kv.getValue('a'), '1');
      const revs = await one.kv.committer.run((m) => ['a', 'b', 'c'].map((k) => (m.ops.get(b(k)) as KvRecord).modRev));
      assert.deepEqual(revs, [2, 3, 4]);
      const counted = await two.kv.committer.run((m) => m.ops.count(Buffer.alloc(0), undefined));
      assert.equal(counted, 3);
    });
  });

  it(
    'rocksdb: a second open of a store in use is UNAVAILABLE (RocksDB allows one process)',
    onlyFor('rocksdb'),
    async () => {
      const backend = await loadBackend('rocksdb');
      await assert.rejects(
        twice(
          'buffdb-rocks-lock-',
          (dir) => backend.openKv(join(dir, 'kv.db')),
          async () => {},
        ),
        storeError(status.UNAVAILABLE, /in use by another process/),
      );
    },
  );
});
