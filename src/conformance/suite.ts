/**
 * The conformance suite every backend runs (in the spirit of abstract-level's shared test suite):
 * each Kv/Blob/etcd semantic of the contract, through the store layer, over real files.
 *
 *   import { conformance } from 'buffdb/conformance';
 *   conformance('sqlite');                       // a registered backend, by name
 *   conformance(myBackend, { module: url });     // a third-party Backend object; `module` exports it
 *                                                // (default export) for the kill -9 child process
 *
 * registers the tests with node:test (`node --test`).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Backend, BlobRecord } from '../backends/backend.js';
import { BACKEND_NAMES, capabilitiesOf, SQL_BACKENDS } from '../backends/index.js';
import { StoreError, status } from '../errors.js';
import { BuffDb, type BuffDbOptions } from '../store/buffdb.js';
import { EqualityCheck } from '../store/equality.js';
import { type Done, Sequence } from '../store/group-commit.js';
import { rangeArgs } from '../store/kv/kv-api.js';
import { resolveBackend } from '../store/open-store.js';
import { blobSyncConformance } from './blob-sync-suite.js';
import { largeBlobConformance } from './large-blob-suite.js';
import { mvccConformance } from './mvcc-suite.js';
import { syncConformance } from './sync-suite.js';

export interface ConformanceOptions {
  /** For a Backend object: a module URL or path whose default export is it (used by the kill -9 test). */
  module?: string;
  /** Added to the suite's name. */
  label?: string;
  /** Creates the main stores before the suite opens them (e.g. restores them from a backup). */
  prepare?: (kvStore: string, blobStore: string) => Promise<void>;
  /**
   * Where the stores live. Default: files in a fresh temporary directory. Backends whose stores
   * are URLs (capability `storeLocation: 'url'`) must give one (e.g. a fresh schema per store).
   */
  stores?: () => Promise<StoreLocator>;
}

/** Store locations by name: the same name gives the same stores (a reopen); `dispose` removes them all. */
export interface StoreLocator {
  locate(name: string): { kvStore: string; blobStore: string };
  dispose(): Promise<void>;
}

function fileLocator(prefix: string): StoreLocator {
  const dir = tempDir(prefix);
  return {
    locate: (name) => ({ kvStore: join(dir, `${name}.kv.db`), blobStore: join(dir, `${name}.blob.db`) }),
    dispose: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

const tempDir = (prefix: string): string => mkdtempSync(join(tmpdir(), prefix));

type Outcome<T> = { ok: true; value: T } | { ok: false; err: StoreError };

/** Callback form → promise of an outcome (never rejects), so many calls can be issued in one tick. */
function call<T>(start: (done: Done<T>) => void): Promise<Outcome<T>> {
  return new Promise((resolve) => {
    start((err, value) => resolve(err ? { ok: false, err } : { ok: true, value: value as T }));
  });
}

async function rejectsWith(p: Promise<unknown>, code: number, pattern?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

/** Eq / NotEq as the services run them: reads through the store, answers folded as they come. */
async function kvEquality(db: BuffDb, mode: 'eq' | 'not-eq', keys: string[]): Promise<boolean> {
  const check = new EqualityCheck(mode);
  for (const key of keys) {
    const value = await db.kv.getValue(key);
    if (check.add(value) === false) return false;
  }
  return check.finish();
}

async function blobEquality(db: BuffDb, mode: 'eq' | 'not-eq', ids: number[]): Promise<boolean> {
  const check = new EqualityCheck(mode);
  for (const id of ids) {
    const { data } = await db.blob.getBlob(id);
    if (check.add(data) === false) return false;
  }
  return check.finish();
}

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');
const same = (a: Uint8Array, b: Uint8Array): boolean =>
  Buffer.compare(
    Buffer.from(a.buffer, a.byteOffset, a.byteLength),
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  ) === 0;

export function conformance(backendOrName: string | Backend, options: ConformanceOptions = {}): void {
  const name = typeof backendOrName === 'string' ? backendOrName : backendOrName.name;
  const backend = backendOrName;
  describe(`conformance [${name}]${options.label ? ` ${options.label}` : ''}`, () => {
    let dir: string;
    let stores: StoreLocator;
    let fileStores = true;
    let db: BuffDb;
    let n = 0;
    /** Opens a fresh pair of stores (or reopens `name`). */
    const open = (name = `s${n++}`, extra: Partial<BuffDbOptions> = {}): Promise<BuffDb> =>
      BuffDb.open({ backend, ...stores.locate(name), ...extra });

    before(async () => {
      dir = tempDir(`buffdb-conf-${name}-`);
      fileStores = (await resolveBackend(backend)).capabilities.storeLocation !== 'url';
      stores = options.stores ? await options.stores() : fileLocator(`buffdb-conf-${name}-`);
      const main = stores.locate('main');
      await options.prepare?.(main.kvStore, main.blobStore);
      db = await open('main');
    });
    after(async () => {
      await db.close();
      await stores.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    describe('kv', () => {
      it('set, get, replace', async () => {
        await db.kv.setValue('a', '1');
        assert.equal(await db.kv.getValue('a'), '1');
        await db.kv.setValue('a', '2');
        assert.equal(await db.kv.getValue('a'), '2');
      });

      it('get and delete of a missing key are NOT_FOUND naming the key', async () => {
        await rejectsWith(db.kv.getValue('no-such-key'), status.NOT_FOUND, /no-such-key/);
        await rejectsWith(db.kv.deleteKey('no-such-key-2'), status.NOT_FOUND, /no-such-key-2/);
      });

      it('delete removes the key, once', async () => {
        await db.kv.setValue('d', 'x');
        await db.kv.deleteKey('d');
        await rejectsWith(db.kv.getValue('d'), status.NOT_FOUND, /"d"/);
        await rejectsWith(db.kv.deleteKey('d'), status.NOT_FOUND);
        await db.kv.setValue('d', 'again');
        assert.equal(await db.kv.getValue('d'), 'again');
      });

      it('empty key and empty value are ordinary values, distinct from missing', async () => {
        await db.kv.setValue('', 'empty key');
        await db.kv.setValue('empty value', '');
        assert.equal(await db.kv.getValue(''), 'empty key');
        assert.equal(await db.kv.getValue('empty value'), '');
        await db.kv.deleteKey('');
        await rejectsWith(db.kv.getValue(''), status.NOT_FOUND);
      });

      it('unicode keys and values round-trip exactly', async () => {
        const pairs: [string, string][] = [
          ['ключ', 'значение'],
          ['键', '值 🦁'],
          ['e\u0301', 'combining'],
          ['é', 'precomposed'],
          ['tab\tnew\nline', '\u0000nul inside\u0000'],
          ['😀'.repeat(100), '𝄞'.repeat(1000)],
        ];
        for (const [k, v] of pairs) await db.kv.setValue(k, v);
        for (const [k, v] of pairs) assert.equal(await db.kv.getValue(k), v);
      });

      it('long keys and large values', async () => {
        const long = 'k'.repeat(5000);
        const longer = `${long}x`;
        await db.kv.setValue(long, 'long key');
        await db.kv.setValue(longer, 'longer key');
        assert.equal(await db.kv.getValue(long), 'long key');
        assert.equal(await db.kv.getValue(longer), 'longer key');
        const big = 'v'.repeat(2 * 1024 * 1024);
        await db.kv.setValue('big', big);
        assert.equal(await db.kv.getValue('big'), big);
        await db.kv.deleteKey(long);
        assert.equal(await db.kv.getValue(longer), 'longer key');
      });

      it('operations of one stream apply and answer in order, also within one batch', async () => {
        const seq = new Sequence();
        const order: number[] = [];
        const track = <T>(i: number, p: Promise<Outcome<T>>): Promise<Outcome<T>> =>
          p.then((o) => {
            order.push(i);
            return o;
          });
        const results = await Promise.all([
          track(
            0,
            call<void>((d) => db.kv.set('o', '1', d, seq)),
          ),
          track(
            1,
            call<string>((d) => db.kv.get('o', d, seq)),
          ),
          track(
            2,
            call<void>((d) => db.kv.set('o', '2', d, seq)),
          ),
          track(
            3,
            call<string>((d) => db.kv.get('o', d, seq)),
          ),
          track(
            4,
            call<void>((d) => db.kv.delete('o', d, seq)),
          ),
          track(
            5,
            call<void>((d) => db.kv.set('o', '3', d, seq)),
          ),
          track(
            6,
            call<string>((d) => db.kv.get('o', d, seq)),
          ),
        ]);
        assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6]);
        assert.deepEqual(
          results.map((r) => (r.ok ? r.value : r.err.code)),
          [undefined, '1', undefined, '2', undefined, undefined, '3'],
        );
      });

      it('after a failure, the rest of that stream is not applied; other streams are unaffected', async () => {
        const failing = new Sequence();
        const other = new Sequence();
        const results = await Promise.all([
          call<void>((d) => db.kv.set('f1', 'x', d, failing)),
          call<void>((d) => db.kv.delete('f-missing', d, failing)),
          call<void>((d) => db.kv.set('f2', 'x', d, other)),
        ]);
        // The stream's later message is never applied nor answered: a request queued after it on
        // another stream is answered, and by then the later message would have been too.
        let answered = false;
        db.kv.set(
          'f3',
          'x',
          () => {
            answered = true;
          },
          failing,
        );
        await call<string>((d) => db.kv.get('f2', d, other));
        assert.equal(results[0]!.ok, true);
        assert.equal(results[1]!.ok, false);
        assert.equal(results[2]!.ok, true);
        assert.equal(answered, false, 'a message after the failure was answered');
        assert.equal(await db.kv.getValue('f1'), 'x');
        assert.equal(await db.kv.getValue('f2'), 'x');
        await rejectsWith(db.kv.getValue('f3'), status.NOT_FOUND);
      });

      it('Gets queued one after another are answered each as its own, where it was queued', async () => {
        await db.kv.setValue('g1', 'one');
        await db.kv.setValue('g2', 'two');
        const outcome = (r: PromiseSettledResult<unknown>): unknown =>
          r.status === 'fulfilled' ? r.value : (r.reason as StoreError).code;
        // Independent Gets: a missing key fails only its own; a Set queued between two Gets runs between them.
        const loose = await Promise.allSettled([
          db.kv.getValue('g1'),
          db.kv.getValue('g3'),
          db.kv.getValue('g2'),
          db.kv.setValue('g3', 'three'),
          db.kv.getValue('g3'),
        ]);
        assert.deepEqual(loose.map(outcome), ['one', status.NOT_FOUND, 'two', undefined, 'three']);
        // One stream: the Gets before a missing key are answered, it fails, the later ones are not answered.
        const seq = new Sequence();
        let later = false;
        const first = call<string>((d) => db.kv.get('g1', d, seq));
        const missing = call<string>((d) => db.kv.get('g-missing', d, seq));
        db.kv.get(
          'g2',
          () => {
            later = true;
          },
          seq,
        );
        const [a, b] = await Promise.all([first, missing]);
        assert.deepEqual(a, { ok: true, value: 'one' });
        assert.equal(b.ok ? 'answered' : b.err.code, status.NOT_FOUND);
        await call<string>((d) => db.kv.get('g2', d, new Sequence()));
        assert.equal(later, false, 'a Get after the failure was answered');
      });

      it('eq / not-eq, including empty values, an empty list and a missing key', async () => {
        await db.kv.setValue('e1', 'same');
        await db.kv.setValue('e2', 'same');
        await db.kv.setValue('e3', 'other');
        await db.kv.setValue('z1', '');
        await db.kv.setValue('z2', '');
        assert.equal(await kvEquality(db, 'eq', ['e1', 'e2']), true);
        assert.equal(await kvEquality(db, 'eq', ['e1', 'e2', 'e3']), false);
        assert.equal(await kvEquality(db, 'eq', ['z1', 'z2']), true);
        assert.equal(await kvEquality(db, 'not-eq', ['e1', 'e3', 'z1']), true);
        assert.equal(await kvEquality(db, 'not-eq', ['e1', 'e3', 'e2']), false);
        assert.equal(await kvEquality(db, 'eq', []), true);
        assert.equal(await kvEquality(db, 'not-eq', []), true);
        await rejectsWith(kvEquality(db, 'eq', ['e1', 'eq-missing']), status.NOT_FOUND, /eq-missing/);
      });

      it('many callers in the same tick: every write lands, every read sees its own stream', async () => {
        const N = 300;
        const ops: Promise<Outcome<unknown>>[] = [];
        for (let i = 0; i < N; i++) {
          const seq = new Sequence();
          ops.push(call<void>((d) => db.kv.set(`c${i}`, `v${i}`, d, seq)));
          ops.push(call<string>((d) => db.kv.get(`c${i}`, d, seq)));
        }
        const results = await Promise.all(ops);
        for (let i = 0; i < N; i++) {
          const r = results[2 * i + 1]!;
          assert.ok(r.ok);
          assert.equal(r.value, `v${i}`);
        }
        for (let i = 0; i < N; i += 37) assert.equal(await db.kv.getValue(`c${i}`), `v${i}`);
      });
    });

    describe('blob', () => {
      it('store answers positive, increasing ids; get answers data and metadata', async () => {
        const a = await db.blob.storeBlob(bytes('alpha'), 'meta-a');
        const b = await db.blob.storeBlob(bytes('beta'));
        assert.ok(Number.isSafeInteger(a) && a > 0);
        assert.ok(b > a);
        const ra = await db.blob.getBlob(a);
        assert.ok(same(ra.data, bytes('alpha')));
        assert.equal(ra.metadata, 'meta-a');
        assert.equal((await db.blob.getBlob(b)).metadata, null);
      });

      it('null metadata and empty-string metadata stay distinct', async () => {
        const nul = await db.blob.storeBlob(bytes('x'));
        const empty = await db.blob.storeBlob(bytes('x'), '');
        assert.equal((await db.blob.getBlob(nul)).metadata, null);
        assert.equal((await db.blob.getBlob(empty)).metadata, '');
        await db.blob.updateBlob(nul, { shouldUpdateMetadata: true, metadata: '' });
        await db.blob.updateBlob(empty, { shouldUpdateMetadata: true });
        assert.equal((await db.blob.getBlob(nul)).metadata, '');
        assert.equal((await db.blob.getBlob(empty)).metadata, null);
      });

      it('empty data and unicode metadata', async () => {
        const id = await db.blob.storeBlob(new Uint8Array(0), 'метаданные 🦁');
        const r = await db.blob.getBlob(id);
        assert.equal(r.data.byteLength, 0);
        assert.equal(r.metadata, 'метаданные 🦁');
      });

      it('missing ids are NOT_FOUND naming the id (get, delete, update)', async () => {
        const missing = (await db.blob.storeBlob(bytes('tmp'))) + 1000;
        await rejectsWith(db.blob.getBlob(missing), status.NOT_FOUND, new RegExp(String(missing)));
        await rejectsWith(db.blob.deleteBlob(missing), status.NOT_FOUND, new RegExp(String(missing)));
        await rejectsWith(
          db.blob.updateBlob(missing, { bytes: bytes('x'), shouldUpdateMetadata: false }),
          status.NOT_FOUND,
          new RegExp(String(missing)),
        );
        await rejectsWith(db.blob.updateBlob(missing, { shouldUpdateMetadata: true, metadata: 'm' }), status.NOT_FOUND);
        await rejectsWith(
          db.blob.updateBlob(missing, { bytes: bytes('x'), shouldUpdateMetadata: true }),
          status.NOT_FOUND,
        );
        await rejectsWith(db.blob.getBlob(0), status.NOT_FOUND);
        await rejectsWith(db.blob.getBlob(2n ** 63n), status.NOT_FOUND, /9223372036854775808/);
        await rejectsWith(db.blob.getBlob(2n ** 64n - 1n), status.NOT_FOUND);
      });

      it('the four update combinations', async () => {
        const id = await db.blob.storeBlob(bytes('d0'), 'm0');
        const get = (): Promise<BlobRecord> => db.blob.getBlob(id);
        // data only: metadata kept
        await db.blob.updateBlob(id, { bytes: bytes('d1'), shouldUpdateMetadata: false });
        let r = await get();
        assert.ok(same(r.data, bytes('d1')));
        assert.equal(r.metadata, 'm0');
        // metadata only: data kept
        await db.blob.updateBlob(id, { shouldUpdateMetadata: true, metadata: 'm2' });
        r = await get();
        assert.ok(same(r.data, bytes('d1')));
        assert.equal(r.metadata, 'm2');
        // both
        await db.blob.updateBlob(id, { bytes: bytes('d3'), shouldUpdateMetadata: true, metadata: 'm3' });
        r = await get();
        assert.ok(same(r.data, bytes('d3')));
        assert.equal(r.metadata, 'm3');
        // both, metadata to null
        await db.blob.updateBlob(id, { bytes: bytes('d4'), shouldUpdateMetadata: true });
        r = await get();
        assert.ok(same(r.data, bytes('d4')));
        assert.equal(r.metadata, null);
        // neither: a no-op on an existing blob
        await db.blob.updateBlob(id, { shouldUpdateMetadata: false });
        r = await get();
        assert.ok(same(r.data, bytes('d4')));
      });

      it('metadata-only update to null succeeds on a missing id and creates nothing', async () => {
        const missing = (await db.blob.storeBlob(bytes('tmp'))) + 500;
        await db.blob.updateBlob(missing, { shouldUpdateMetadata: true });
        await db.blob.updateBlob(2n ** 63n, { shouldUpdateMetadata: true });
        await rejectsWith(db.blob.getBlob(missing), status.NOT_FOUND);
      });

      it('delete removes the blob; its id is never handed out again', async () => {
        const a = await db.blob.storeBlob(bytes('a'));
        const b = await db.blob.storeBlob(bytes('b'));
        await db.blob.deleteBlob(b);
        await rejectsWith(db.blob.getBlob(b), status.NOT_FOUND);
        const c = await db.blob.storeBlob(bytes('c'));
        assert.ok(c > b, `id ${c} reused after deleting ${b}`);
        assert.ok(same((await db.blob.getBlob(a)).data, bytes('a')));
        await rejectsWith(db.blob.deleteBlob(b), status.NOT_FOUND);
      });

      it('ids stay unique and increasing across close, reopen and deleting the largest', async () => {
        const own = await open('ids');
        const first = await own.blob.storeBlob(bytes('1'));
        const largest = await own.blob.storeBlob(bytes('2'));
        await own.blob.deleteBlob(largest);
        await own.close();
        const again = await open('ids');
        const next = await again.blob.storeBlob(bytes('3'));
        assert.ok(next > largest, `id ${next} after reopen is not above the deleted largest ${largest}`);
        assert.ok(same((await again.blob.getBlob(first)).data, bytes('1')));
        await again.close();
      });

      it('a 5 MiB blob round-trips byte for byte, also when updated', async () => {
        const big = Buffer.alloc(5 * 1024 * 1024);
        for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
        const id = await db.blob.storeBlob(big, 'big');
        const r = await db.blob.getBlob(id);
        assert.equal(r.data.byteLength, big.length);
        assert.ok(same(r.data, big));
        const bigger = Buffer.concat([big, bytes('tail')]);
        await db.blob.updateBlob(id, { bytes: bigger, shouldUpdateMetadata: false });
        const r2 = await db.blob.getBlob(id);
        assert.ok(same(r2.data, bigger));
        assert.equal(r2.metadata, 'big');
      });

      it('eq-data / not-eq-data', async () => {
        const a = await db.blob.storeBlob(bytes('same'), 'm1');
        const b = await db.blob.storeBlob(bytes('same'), 'm2');
        const c = await db.blob.storeBlob(bytes('different'));
        const e1 = await db.blob.storeBlob(new Uint8Array(0));
        const e2 = await db.blob.storeBlob(new Uint8Array(0));
        assert.equal(await blobEquality(db, 'eq', [a, b]), true);
        assert.equal(await blobEquality(db, 'eq', [a, b, c]), false);
        assert.equal(await blobEquality(db, 'eq', [e1, e2]), true);
        assert.equal(await blobEquality(db, 'not-eq', [a, c, e1]), true);
        assert.equal(await blobEquality(db, 'not-eq', [a, c, b]), false);
        await rejectsWith(blobEquality(db, 'eq', [a, c + 10_000]), status.NOT_FOUND, new RegExp(String(c + 10_000)));
      });

      it('many stores in the same tick get distinct ids; all are readable', async () => {
        const N = 200;
        const stores: Promise<Outcome<number>>[] = [];
        for (let i = 0; i < N; i++)
          stores.push(
            call<number>((d) => db.blob.store(bytes(`blob ${i}`), i % 2 ? `m${i}` : undefined, d, new Sequence())),
          );
        const ids = (await Promise.all(stores)).map((r) => {
          assert.ok(r.ok);
          return r.value;
        });
        assert.equal(new Set(ids).size, N);
        for (let i = 1; i < N; i++) assert.ok(ids[i]! > ids[i - 1]!, 'ids follow submission order');
        const reads = await Promise.all(ids.map((id) => call<BlobRecord>((d) => db.blob.get(id, d))));
        reads.forEach((r, i) => {
          assert.ok(r.ok);
          assert.equal(Buffer.from(r.value.data).toString(), `blob ${i}`);
          assert.equal(r.value.metadata, i % 2 ? `m${i}` : null);
        });
      });

      it('reserveId / insertWithId (used by transactions)', async () => {
        const before = await db.blob.storeBlob(bytes('before'));
        const reserved = await db.blob.committer.run((ops) => ops.reserveId());
        assert.ok(reserved > before);
        await db.blob.committer.run((ops) => ops.insertWithId(reserved, bytes('placed'), null));
        assert.ok(same((await db.blob.getBlob(reserved)).data, bytes('placed')));
        const after = await db.blob.storeBlob(bytes('after'));
        assert.ok(after > reserved);
      });
      it('ids lists stored blobs in order, a page at a time, with and without pending writes', async () => {
        const first = await db.blob.storeBlob(bytes('i1'));
        const second = await db.blob.storeBlob(bytes('i2'));
        const third = await db.blob.storeBlob(bytes('i3'));
        await db.blob.deleteBlob(second);
        const all = await db.blob.committer.run((ops) => ops.ids(first - 1, 1000));
        assert.deepEqual(all.slice(0, 2), [first, third]);
        assert.deepEqual(await db.blob.committer.run((ops) => ops.ids(first - 1, 1)), [first]);
        assert.deepEqual(await db.blob.committer.run((ops) => ops.ids(third, 10)), []);
        // Inside one batch: a blob written and one deleted earlier in it count.
        const seen = await db.blob.committer.run(async (ops) => {
          const placed = await ops.reserveId();
          await ops.insertWithId(placed, bytes('i4'), null);
          await ops.delete(first);
          return { placed, ids: await ops.ids(first - 1, 10) };
        });
        assert.deepEqual(seen.ids, [third, seen.placed]);
      });
    });

    describe('durability and modes', () => {
      it('everything acknowledged is there after close and reopen', async () => {
        const first = await open('reopen');
        const seq = new Sequence();
        const ids: number[] = [];
        await Promise.all([
          ...Array.from({ length: 50 }, (_, i) => call<void>((d) => first.kv.set(`r${i}`, `v${i}`, d, seq))),
          ...Array.from({ length: 20 }, (_, i) =>
            call<number>((d) => first.blob.store(bytes(`b${i}`), `m${i}`, d)).then((o) => {
              assert.ok(o.ok);
              ids[i] = o.value;
            }),
          ),
        ]);
        await first.kv.deleteKey('r7');
        await first.blob.deleteBlob(ids[3]!);
        await first.close();
        const second = await open('reopen');
        for (let i = 0; i < 50; i++) {
          if (i === 7) await rejectsWith(second.kv.getValue('r7'), status.NOT_FOUND);
          else assert.equal(await second.kv.getValue(`r${i}`), `v${i}`);
        }
        for (let i = 0; i < 20; i++) {
          if (i === 3) {
            await rejectsWith(second.blob.getBlob(ids[3]!), status.NOT_FOUND);
            continue;
          }
          const r = await second.blob.getBlob(ids[i]!);
          assert.equal(Buffer.from(r.data).toString(), `b${i}`);
          assert.equal(r.metadata, `m${i}`);
        }
        await second.close();
      });

      it('durability "normal" stores and reads the same way', async () => {
        const fast = await open('normal', { durability: 'normal' });
        await fast.kv.setValue('n', 'v');
        const id = await fast.blob.storeBlob(bytes('n'), '');
        await fast.close();
        const again = await open('normal', { durability: 'normal' });
        assert.equal(await again.kv.getValue('n'), 'v');
        assert.equal((await again.blob.getBlob(id)).metadata, '');
        await again.close();
      });

      it('read-only: reads work, writes are FAILED_PRECONDITION and change nothing', async () => {
        const w = await open('ro');
        await w.kv.setValue('k', 'v');
        const id = await w.blob.storeBlob(bytes('b'), 'm');
        await w.close();
        const ro = await open('ro', { readOnly: true });
        try {
          assert.equal(await ro.kv.getValue('k'), 'v');
          assert.equal((await ro.blob.getBlob(id)).metadata, 'm');
          await rejectsWith(ro.kv.setValue('k', 'changed'), status.FAILED_PRECONDITION);
          await rejectsWith(ro.blob.storeBlob(bytes('x')), status.FAILED_PRECONDITION);
          assert.equal(await ro.kv.getValue('k'), 'v');
        } finally {
          await ro.close();
        }
      });

      it('an empty file is a fresh store', async (t) => {
        if (!fileStores) return t.skip(`${name} stores are URLs, not files`);
        const empty = stores.locate('empty');
        writeFileSync(empty.kvStore, '');
        writeFileSync(empty.blobStore, '');
        const fresh = await open('empty');
        await fresh.kv.setValue('k', 'v');
        assert.ok((await fresh.blob.storeBlob(bytes('b'))) > 0);
        await fresh.close();
        const again = await open('empty');
        assert.equal(await again.kv.getValue('k'), 'v');
        await again.close();
      });

      it("another backend's store file is refused with a clear error and left untouched", async (t) => {
        if (!fileStores) return t.skip(`${name} stores are URLs, not files`);
        const other = BACKEND_NAMES.find((n) => n !== name && capabilitiesOf(n).storeLocation !== 'url')!;
        const kvStore = join(dir, 'foreign.kv.db');
        const made = await BuffDb.open({ backend: other, kvStore, blobStore: join(dir, 'foreign.blob.db') });
        await made.kv.setValue('k', 'v');
        await made.close();
        const before = readFileSync(kvStore);
        await assert.rejects(
          BuffDb.open({ backend, kvStore, blobStore: join(dir, 'foreign-own.blob.db') }),
          /not a database|not an? \w+ store/,
        );
        assert.ok(readFileSync(kvStore).equals(before), 'the foreign file was changed');
      });

      it('an acknowledged write survives kill -9 of the writing process', async () => {
        const killed = stores.locate('killed');
        const acked = await writeUntilKilled(options.module ?? name, killed.kvStore, killed.blobStore);
        assert.ok(acked.kv >= 1 && acked.blob.length >= 1, 'the child acknowledged writes before it was killed');
        const after = await BuffDb.open({ backend, ...killed });
        try {
          for (let i = 0; i < acked.kv; i++) assert.equal(await after.kv.getValue(`kill${i}`), `value ${i}`);
          for (const [i, id] of acked.blob.entries()) {
            assert.equal(Buffer.from((await after.blob.getBlob(id)).data).toString(), `blob ${i}`);
          }
        } finally {
          await after.close();
        }
      });
    });

    describe('raw SQL', () => {
      let dialect: string | null = null;
      let kvWrites = false;
      before(async () => {
        const caps = (await resolveBackend(backend)).capabilities;
        dialect = caps.sqlDialect;
        kvWrites = caps.sqlKvWrites;
      });

      it('without a SQL dialect, Query and Execute are UNIMPLEMENTED naming the SQL backends', async (t) => {
        if (dialect) return t.skip(`${name} has raw SQL (${dialect})`);
        await rejectsWith(
          collect(db.query.query('SELECT 1', 'kv')),
          status.UNIMPLEMENTED,
          new RegExp(`${name}.*${SQL_BACKENDS.join(', ')}`),
        );
        await rejectsWith(db.query.execute('SELECT 1', 'blob'), status.UNIMPLEMENTED, new RegExp(name));
      });

      it('sees the kv and blob tables; execute answers rows changed; writes are visible to Kv/Blob', async (t) => {
        if (!dialect) return t.skip(`${name} has no raw SQL`);
        await db.kv.setValue('sql-a', 'A');
        const rows = await collect(db.query.query("SELECT key, value FROM kv WHERE key = 'sql-a'", 'kv'));
        assert.deepEqual(rows, [['sql-a', 'A']]);
        const id = await db.blob.storeBlob(bytes('sql blob'), 'sql meta');
        const blobRows = await collect(db.query.query(`SELECT id, data, metadata FROM blob WHERE id = ${id}`, 'blob'));
        assert.equal(blobRows.length, 1);
        assert.equal(blobRows[0]![0], BigInt(id));
        assert.ok(same(blobRows[0]![1] as Uint8Array, bytes('sql blob')));
        assert.equal(blobRows[0]![2], 'sql meta');
        const typed = await collect(db.query.query("SELECT 42, 2.5, 'text', NULL, 9223372036854775807", 'kv'));
        assert.deepEqual(typed, [[42n, 2.5, 'text', null, 9223372036854775807n]]);
        // Ids that raw SQL took for itself are skipped, never an error and never handed out twice.
        assert.equal(
          await db.query.execute(
            `INSERT INTO blob (id, data, metadata) VALUES (${id + 1}, NULL, 'raw'), (${id + 2}, NULL, 'raw')`,
            'blob',
          ),
          2,
        );
        const next = await db.blob.storeBlob(bytes('after sql'));
        assert.ok(next > id + 2, `id ${next} collides with ids inserted by raw SQL`);
        assert.equal((await db.blob.getBlob(id + 1)).metadata, 'raw');
      });

      it('writes to the kv table become one revision each (watchers see them), or are refused', async (t) => {
        if (!dialect) return t.skip(`${name} has no raw SQL`);
        const before = db.kv.status().rev;
        const insert = db.query.execute("INSERT INTO kv (key, value) VALUES ('sql-b', 'B'), ('sql-c', 'C')", 'kv');
        if (!kvWrites) {
          await rejectsWith(insert, status.PERMISSION_DENIED, /kv/);
          await rejectsWith(db.kv.getValue('sql-b'), status.NOT_FOUND);
          assert.equal(db.kv.status().rev, before);
          return;
        }
        assert.equal(await insert, 2);
        assert.equal(await db.kv.getValue('sql-c'), 'C');
        assert.equal(db.kv.status().rev, before + 1, 'one statement, one revision');
        const got = await db.kv.range(rangeOf('sql-b'));
        assert.equal(got.kvs[0]!.modRev, before + 1);
        assert.equal(await db.query.execute("UPDATE kv SET value = 'B2' WHERE key = 'sql-b'", 'kv'), 1);
        assert.equal(await db.kv.getValue('sql-b'), 'B2');
        assert.equal(await db.query.execute("DELETE FROM kv WHERE key IN ('sql-b', 'sql-c')", 'kv'), 2);
        await rejectsWith(db.kv.getValue('sql-b'), status.NOT_FOUND);
        assert.equal(db.kv.status().rev, before + 3);
      });

      it('cannot reach outside its store, nor write buffdb’s own tables', async (t) => {
        if (!dialect) return t.skip(`${name} has no raw SQL`);
        for (const sql of [
          "ATTACH DATABASE '/tmp/buffdb-conformance-evil.db' AS evil",
          "SELECT * FROM read_csv('/etc/passwd')",
          "SELECT * FROM '/etc/passwd'",
          "COPY kv TO '/tmp/buffdb-conformance-copy.csv'",
          'INSTALL httpfs',
          'LOAD httpfs',
          'SET enable_external_access = true',
          "SELECT readfile('/etc/passwd')",
          "INSERT INTO kv_state (key, value, create_rev, mod_rev, version) VALUES ('x', 'y', 1, 1, 1)",
          'DELETE FROM _buffdb_history',
          'DROP VIEW kv',
        ]) {
          await rejectsWith(
            collect(db.query.query(sql, 'kv')),
            status.PERMISSION_DENIED,
            /refused|not allowed|may only be read/,
          );
          await rejectsWith(
            db.query.execute(sql, 'kv'),
            status.PERMISSION_DENIED,
            /refused|not allowed|may only be read/,
          );
        }
        await rejectsWith(db.query.execute('SELECT 1; SELECT 2', 'kv'), status.PERMISSION_DENIED, /one SQL statement/);
      });
    });

    mvccConformance(() => db);
    largeBlobConformance(
      () => db,
      (name, extra) => open(name, extra),
    );
    syncConformance((name, extra) => open(name, extra));
    blobSyncConformance((name, extra) => open(name, extra));
  });
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** The etcd-style range of one key. */
function rangeOf(key: string) {
  const k = Buffer.from(key);
  return rangeArgs({ start: k, end: Buffer.concat([k, Buffer.of(0)]) });
}

/**
 * Runs kill-writer (beside this file), which writes and prints an acknowledgement after each
 * write commits; SIGKILLs it mid-stream; answers what was acknowledged.
 */
function writeUntilKilled(
  backend: string,
  kvStore: string,
  blobStore: string,
): Promise<{ kv: number; blob: number[] }> {
  return new Promise((resolve, reject) => {
    const writer = fileURLToPath(
      new URL(`./kill-writer${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
    );
    // From the TypeScript sources (this repository's tests) the child needs tsx too.
    const loader = writer.endsWith('.ts') ? ['--import', 'tsx'] : [];
    const child = spawn(process.execPath, [...loader, writer, backend, kvStore, blobStore], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let kv = 0;
    const blob: number[] = [];
    let buffered = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const [what, n] = line.split(' ');
        if (what === 'kv') kv = Number(n) + 1;
        if (what === 'blob') blob.push(Number(n));
        // Kill while it is still writing: the test is that nothing acknowledged is lost.
        if (kv >= 40 && blob.length >= 10) child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`kill-writer exited with ${code}: ${stderr}`));
      else resolve({ kv, blob });
    });
  });
}
