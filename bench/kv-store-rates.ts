/**
 * Kv Set/Get rates of one backend through the in-process store API (group commit included, no
 * gRPC): what a backend's per-statement and per-commit costs leave of the store's throughput.
 *
 *   node --import tsx bench/kv-store-rates.ts [--backend duckdb] [--rounds 5] [--keys 5000]
 *
 * Prints the median and every run of each measurement. The machine is shared: compare runs made
 * side by side, not with figures from another time.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BuffDb } from '../src/store/buffdb.js';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'duckdb' },
    rounds: { type: 'string', default: '5' },
    keys: { type: 'string', default: '5000' },
  },
});
const backend = values.backend;
const N = Number(values.keys);
const ONE_AT_A_TIME = 300;
/** 16-byte keys and 100-byte values, as in `npm run bench`; ascending, or in hash order. */
const key = (i: number): string => `key-${String(i).padStart(12, '0')}`;
const randomKey = (i: number): string => createHash('sha1').update(String(i)).digest('hex').slice(0, 16);
const value = 'v'.repeat(100);

const rates = new Map<string, number[]>();
async function measure(name: string, ops: number, work: () => Promise<unknown>): Promise<void> {
  const start = performance.now();
  await work();
  const list = rates.get(name) ?? [];
  list.push((ops * 1000) / (performance.now() - start));
  rates.set(name, list);
}

/** `n` operations submitted in the same tick: group commit makes them one batch. */
function grouped(db: BuffDb, op: 'set' | 'get', name: (i: number) => string): Promise<unknown> {
  return Promise.all(
    Array.from(
      { length: N },
      (_, i) =>
        new Promise<void>((resolve, reject) => {
          const done = (err: unknown) => (err ? reject(err) : resolve());
          if (op === 'set') db.kv.set(name(i), value, done);
          else db.kv.get(name(i), done);
        }),
    ),
  );
}

for (let round = 0; round < Number(values.rounds); round++) {
  const dir = mkdtempSync(join(tmpdir(), 'kv-rates-'));
  const stores = { backend, kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') };
  const db = await BuffDb.open(stores);
  await measure(`Set ${N} new keys, ascending, one tick`, N, () => grouped(db, 'set', key));
  await measure(`Set ${N} new keys, hash order, one tick`, N, () => grouped(db, 'set', randomKey));
  await measure(`Set ${N} existing keys, one tick`, N, () => grouped(db, 'set', key));
  await measure(`Get ${N} keys, one tick`, N, () => grouped(db, 'get', key));
  await measure('Set, one at a time', ONE_AT_A_TIME, async () => {
    for (let i = 0; i < ONE_AT_A_TIME; i++) await db.kv.setValue(key(N + i), value);
  });
  await measure('Get, one at a time', ONE_AT_A_TIME, async () => {
    for (let i = 0; i < ONE_AT_A_TIME; i++) await db.kv.getValue(key(i));
  });
  await db.close();
  const reopened = await BuffDb.open(stores);
  await measure(`Get ${N} keys after reopening, one tick`, N, () => grouped(reopened, 'get', key));
  await reopened.close();
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`${backend}, ops/s: median (runs)`);
for (const [name, xs] of rates) {
  console.log(`  ${name.padEnd(44)} ${median(xs).toFixed(0).padStart(8)}  (${xs.map((x) => x.toFixed(0)).join(' ')})`);
}
