/**
 * Kv Set / Get rates through the store layer (no gRPC), per backend: the engine's share of the
 * hot path (get + put + one history put per Set, group-committed). Medians of a few rounds.
 *
 *   node --import tsx bench/kv-store-rate.ts [--backends rocksdb,lmdb,sqlite] [--n 20000] [--wave 1000]
 *     [--rounds 3] [--durability full|normal]
 */
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BuffDb } from '../src/store/buffdb.js';

const { values: args } = parseArgs({
  options: {
    backends: { type: 'string', default: 'rocksdb,lmdb,sqlite' },
    n: { type: 'string', default: '20000' },
    wave: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    durability: { type: 'string', default: 'full' },
  },
});
const N = Number(args.n);
const WAVE = Number(args.wave);
const durability = args.durability === 'normal' ? 'normal' : 'full';

const key = (i: number): string => `key-${String(i).padStart(12, '0')}`; // 16 bytes
const VALUE = 'v'.repeat(100);

interface Rate {
  /** Operations per second of wall time. */
  perSecond: number;
  /** CPU time of this process per operation (user + system), in µs: less noisy on a shared machine. */
  cpuMicros: number;
}

/** Runs `op` N times, `WAVE` at a time in one tick (one group commit each). */
async function rate(op: (i: number, done: (err: unknown) => void) => void): Promise<Rate> {
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  for (let base = 0; base < N; base += WAVE) {
    await new Promise<void>((resolve, reject) => {
      let left = Math.min(WAVE, N - base);
      for (let i = base; i < base + Math.min(WAVE, N - base); i++) {
        op(i, (err) => {
          if (err) reject(err);
          else if (--left === 0) resolve();
        });
      }
    });
  }
  const used = process.cpuUsage(cpu);
  return {
    perSecond: N / (Number(process.hrtime.bigint() - start) / 1e9),
    cpuMicros: (used.user + used.system) / N,
  };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function summary(what: string, rates: Rate[]): string {
  const rate = `${(median(rates.map((r) => r.perSecond)) / 1000).toFixed(1)} k/s`;
  return `${what} ${rate.padStart(10)} ${`${median(rates.map((r) => r.cpuMicros)).toFixed(1)} µs CPU`.padStart(13)}`;
}

for (const backend of args.backends.split(',')) {
  const sets: Rate[] = [];
  const gets: Rate[] = [];
  for (let round = 0; round < Number(args.rounds); round++) {
    const dir = join(tmpdir(), `buffdb-rate-${backend}-${process.pid}-${round}`);
    mkdirSync(dir, { recursive: true });
    const db = await BuffDb.open({
      backend,
      kvStore: join(dir, 'kv.db'),
      blobStore: join(dir, 'blob.db'),
      durability,
    });
    try {
      sets.push(await rate((i, done) => db.kv.set(key(i), VALUE, done)));
      gets.push(await rate((i, done) => db.kv.get(key(i), done)));
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log(`${backend.padEnd(8)} ${durability.padEnd(6)} ${summary('Set', sets)}   ${summary('Get', gets)}`);
}
