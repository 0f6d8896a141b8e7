/**
 * The etcd API section of `npm run bench`: buffdb's etcd services measured side by side with a
 * real etcd (same machine, default durability: etcd fsyncs every commit, `buffdb run` too) and,
 * for the small unary calls, with the bare grpc-js echo answering the same request message.
 *
 *   Put (1 and 64 in flight), Range of 1 key and of 1 000 keys, Txn compare-and-swap,
 *   watch fan-out: 1 writer, 100 watchers — events delivered per second and p99 put→event delay.
 *
 * Every client is this process; the servers are child processes. Rounds interleave the servers so
 * machine noise hits them alike.
 */
import { performance } from 'node:perf_hooks';
import { connectEtcd, type EtcdClients } from '../src/client/etcd.js';
import * as pb from '../src/generated/etcd/etcdserverpb/rpc.js';
import { etcdLoad, startEtcd } from './etcd.js';
import { echoUnaryClient, key16, log, median, VALUE_100 } from './lib.js';

export interface EtcdApiConfig {
  quick: boolean;
  rounds: number;
}

export interface RowSpec {
  group: string;
  name: string;
  unit: string;
  referenceName: string;
  lowerIsBetter?: boolean;
}

/** run.ts's row writer: buffdb's figures and the reference's, one per round. */
export type AddRow = (row: RowSpec, values: number[], refs: number[]) => void;

const b = (s: string): Buffer => Buffer.from(s);
const VALUE = b(VALUE_100);

function unary<Req, Res>(c: EtcdClients, method: 'put' | 'range' | 'txn', req: Req): Promise<Res> {
  return new Promise((resolve, reject) =>
    (c.kv[method] as unknown as (r: Req, cb: (e: Error | null, r?: Res) => void) => void).call(c.kv, req, (e, r) =>
      e ? reject(e) : resolve(r!),
    ),
  );
}

const putReq = (i: number): pb.PutRequest => pb.PutRequest.fromPartial({ key: b(key16('ep', i)), value: VALUE });
const rangeOne = (i: number): pb.RangeRequest => pb.RangeRequest.fromPartial({ key: b(key16('ep', i)) });
const RANGE_1000 = pb.RangeRequest.fromPartial({ key: b('r1000/'), rangeEnd: b('r10000') });

interface Sizes {
  puts: number;
  ranges: number;
  bigRanges: number;
  txns: number;
  watchPuts: number;
  watchers: number;
}

/** Ops/s of `total` calls with `inFlight` outstanding. */
async function rate(op: (i: number) => Promise<unknown>, total: number, inFlight: number): Promise<number> {
  const ms = await etcdLoad(
    async (i) => {
      await op(i);
    },
    total,
    inFlight,
  );
  return total / (ms / 1000);
}

/** Compare-and-swap: each of `inFlight` workers owns a key and swaps its value from the one it last wrote. */
async function casRate(c: EtcdClients, total: number, inFlight: number, tag: string): Promise<number> {
  const last = new Map<number, Buffer>();
  for (let w = 0; w < inFlight; w++) {
    const v = b(`${tag}-0`);
    await unary(c, 'put', pb.PutRequest.fromPartial({ key: b(`cas/${w}`), value: v }));
    last.set(w, v);
  }
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async (_, w) => {
      while (next < total) {
        const i = next++;
        const key = b(`cas/${w}`);
        const value = b(`${tag}-${i + 1}`);
        const res = await unary<pb.TxnRequest, pb.TxnResponse>(
          c,
          'txn',
          pb.TxnRequest.fromPartial({
            compare: [
              {
                key,
                target: pb.Compare_CompareTarget.VALUE,
                result: pb.Compare_CompareResult.EQUAL,
                value: last.get(w),
              },
            ],
            success: [{ requestPut: { key, value } }],
          }),
        );
        if (!res.succeeded) throw new Error('compare-and-swap lost: the benchmark is wrong');
        last.set(w, value);
      }
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

/**
 * 1 writer (sequential Puts stamped with their send time), `watchers` watch streams of the key on
 * 4 connections: events delivered per second, and the 99th percentile of put-sent → event-received.
 */
async function fanOut(
  addr: string,
  puts: number,
  watchers: number,
  tag: string,
): Promise<{ eventsPerSec: number; p99Ms: number }> {
  const conns = Array.from({ length: 4 }, () => connectEtcd(addr));
  const key = b(`fan/${tag}`);
  const sentAt = new Map<string, number>();
  const delays: number[] = [];
  let received = 0;
  const expected = puts * watchers;
  let done: () => void = () => {};
  const all = new Promise<void>((resolve) => {
    done = resolve;
  });
  const streams: { cancel(): void }[] = [];
  let created = 0;
  const ready = new Promise<void>((resolve) => {
    for (let w = 0; w < watchers; w++) {
      const s = conns[w % conns.length]!.watch.watch();
      s.on('data', (res: pb.WatchResponse) => {
        if (res.created && ++created === watchers) resolve();
        const now = performance.now();
        for (const e of res.events) {
          const t = sentAt.get(e.kv!.value.toString());
          if (t !== undefined) delays.push(now - t);
          if (++received === expected) done();
        }
      });
      s.on('error', () => {});
      s.write({ createRequest: pb.WatchCreateRequest.fromPartial({ key }) });
      streams.push(s);
    }
  });
  await ready;
  const writer = conns[0]!;
  const t0 = performance.now();
  for (let i = 0; i < puts; i++) {
    const value = `${tag}-${i}`;
    sentAt.set(value, performance.now());
    await unary(writer, 'put', pb.PutRequest.fromPartial({ key, value: b(value) }));
  }
  await Promise.race([
    all,
    new Promise((_, rej) => setTimeout(() => rej(new Error(`fan-out: ${received} of ${expected} events`)), 120_000)),
  ]);
  const seconds = (performance.now() - t0) / 1000;
  for (const s of streams) s.cancel();
  for (const c of conns) c.close();
  delays.sort((x, y) => x - y);
  return { eventsPerSec: received / seconds, p99Ms: delays[Math.floor(delays.length * 0.99)] ?? Number.NaN };
}

export async function etcdApiSection(
  buffAddr: string,
  echoAddr: string,
  etcdBin: string,
  dir: string,
  cfg: EtcdApiConfig,
  addRow: AddRow,
): Promise<void> {
  const sizes: Sizes = cfg.quick
    ? { puts: 1500, ranges: 2000, bigRanges: 30, txns: 800, watchPuts: 100, watchers: 100 }
    : { puts: 5000, ranges: 10000, bigRanges: 200, txns: 3000, watchPuts: 500, watchers: 100 };
  const etcd = await startEtcd(etcdBin, dir);
  const servers = { buffdb: connectEtcd(buffAddr), etcd: connectEtcd(etcd.addr) };
  const echoPut = echoUnaryClient(echoAddr, pb.PutRequest);
  const echoRange = echoUnaryClient(echoAddr, pb.RangeRequest);
  const echoTxn = echoUnaryClient(echoAddr, pb.TxnRequest);
  const m: Record<string, { buffdb: number[]; etcd: number[]; echo: number[] }> = {};
  const record = (name: string, who: 'buffdb' | 'etcd' | 'echo', value: number): void => {
    m[name] ??= { buffdb: [], etcd: [], echo: [] };
    m[name]![who].push(value);
  };
  try {
    // Data the reads need, and a warm-up of every path.
    for (const c of Object.values(servers)) {
      await rate((i) => unary(c, 'put', putReq(i)), sizes.ranges, 64);
      await rate(
        (i) => unary(c, 'put', pb.PutRequest.fromPartial({ key: b(`r1000/${key16('', i)}`), value: VALUE })),
        1000,
        64,
      );
    }
    await rate((i) => echoPut.call(putReq(i)), 500, 16);
    const txnEcho = pb.TxnRequest.fromPartial({
      compare: [{ key: b('cas/0'), target: pb.Compare_CompareTarget.VALUE, value: b('x-1') }],
      success: [{ requestPut: { key: b('cas/0'), value: b('x-2') } }],
    });
    for (let r = 0; r < cfg.rounds; r++) {
      log(`etcd API round ${r + 1}/${cfg.rounds}`);
      for (const [who, c] of Object.entries(servers) as ['buffdb' | 'etcd', EtcdClients][]) {
        record('put1', who, await rate((i) => unary(c, 'put', putReq(i)), Math.floor(sizes.puts / 5), 1));
        record('put64', who, await rate((i) => unary(c, 'put', putReq(i)), sizes.puts, 64));
        record('range1', who, await rate((i) => unary(c, 'range', rangeOne(i % sizes.ranges)), sizes.ranges, 16));
        record('range1000', who, await rate(() => unary(c, 'range', RANGE_1000), sizes.bigRanges, 4));
        record('cas', who, await casRate(c, sizes.txns, 16, `${who}${r}`));
        const fan = await fanOut(
          who === 'buffdb' ? buffAddr : etcd.addr,
          sizes.watchPuts,
          sizes.watchers,
          `${who}${r}`,
        );
        record('fanRate', who, fan.eventsPerSec);
        record('fanP99', who, fan.p99Ms);
      }
      record('put1', 'echo', await rate((i) => echoPut.call(putReq(i)), Math.floor(sizes.puts / 5), 1));
      record('put64', 'echo', await rate((i) => echoPut.call(putReq(i)), sizes.puts, 64));
      record('range1', 'echo', await rate((i) => echoRange.call(rangeOne(i)), sizes.ranges, 16));
      record('cas', 'echo', await rate(() => echoTxn.call(txnEcho), sizes.txns, 16));
    }
  } finally {
    servers.buffdb.close();
    servers.etcd.close();
    echoPut.close();
    echoRange.close();
    echoTxn.close();
    await etcd.stop();
  }
  const group = 'etcd API';
  const rows: [string, string, string][] = [
    ['put1', 'Put, 1 in flight', 'ops/s'],
    ['put64', 'Put, 64 in flight', 'ops/s'],
    ['range1', 'Range of 1 key, 16 in flight', 'ops/s'],
    ['range1000', 'Range of 1 000 keys (100 B values), 4 in flight', 'ops/s'],
    ['cas', 'Txn compare-and-swap, 16 in flight', 'ops/s'],
    ['fanRate', `watch fan-out: 1 writer, ${sizes.watchers} watchers, events delivered`, 'events/s'],
    ['fanP99', 'watch fan-out: p99 delay from Put to event', 'ms'],
  ];
  for (const [id, name, unit] of rows) {
    const x = m[id]!;
    const lowerIsBetter = unit === 'ms';
    addRow(
      {
        group,
        name: `${name} — vs etcd`,
        unit,
        referenceName: 'etcd 3.4, same machine, fsync per commit',
        lowerIsBetter,
      },
      x.buffdb,
      x.etcd,
    );
    if (x.echo.length > 0) {
      addRow(
        { group, name: `${name} — vs echo`, unit, referenceName: 'bare grpc-js unary echo of the same request' },
        x.buffdb,
        x.echo,
      );
    }
  }
  log(
    `etcd API: Put64 buffdb ${median(m.put64!.buffdb).toFixed(0)} vs etcd ${median(m.put64!.etcd).toFixed(0)} ops/s; ` +
      `fan-out p99 ${median(m.fanP99!.buffdb).toFixed(1)} vs ${median(m.fanP99!.etcd).toFixed(1)} ms`,
  );
}
