/**
 * The sync section of `npm run bench` (issue #15, items 8 and 10): a hub and edges as `buffdb run`
 * child processes on loopback (sqlite, default durability full), clients in this process.
 *
 *  - push rate: N Kv Sets on a connected edge until the hub has them all ("live"), and N Sets made
 *    while the edge could not reach its hub, from the edge's restart until the hub has them all
 *    ("catch-up", through the test TCP proxy); both against the same Sets written straight to the
 *    hub in the same round;
 *  - convergence: 10k writes on each side while apart (1k keys written on both), then connected:
 *    seconds until the two full dumps are equal, and the bytes on the wire;
 *  - bandwidth: bytes on the wire (both directions, counted by the proxy: HTTP/2 and gRPC framing,
 *    handshake and acks included) against the gzip size of the net changed data (the final
 *    key/value pairs, `key \t value \n` sorted by key, gzip'd) — unique keys, and 1k keys each
 *    overwritten 20 times (coalescing), written offline and live.
 *
 * Values are 100 random base64 characters (gzip gets ~25% off them), keys are 16 bytes.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { KeyProbe, syncStatus } from '../scripts/sync-sites.js';
import { connect } from '../src/client/network.js';
import type * as kvPb from '../src/generated/kv.js';
import { dumpStore } from '../test/helpers/dump.js';
import { startProxy, type TcpProxy } from '../test/helpers/tcp-proxy.js';
import { type Child, log, median, pump, type Row, startChild } from './lib.js';

export interface SyncBenchOptions {
  cli: string;
  dir: string;
  quick: boolean;
  /** run.ts's row list and log. */
  push: (row: Row) => void;
}

const GROUP = 'sync (sqlite, loopback)';
/** Bandwidth target of issue #15 item 8: wire bytes ≤ 1.3 × gzip of the net changed data. */
const WIRE_TARGET = 1.3;
/** Edges of the push and bandwidth measurements pull nothing: only their own changes travel. */
const PUSH_ONLY = ['--sync-pull-prefix', 'nothing-is-pulled/'];

type Pairs = [key: string, value: string][];

/** A 16-byte key that starts with `prefix` (lib's key16 pads in front, so prefixes would not group). */
const key16 = (prefix: string, i: number): string => prefix + i.toString(36).padStart(16 - prefix.length, '0');
const randomValue = (): string => randomBytes(75).toString('base64');
const pairs = (prefix: string, n: number): Pairs =>
  Array.from({ length: n }, (_, i) => [key16(prefix, i), randomValue()]);

/** gzip size of the final value of every key written (later writes to a key replace earlier ones). */
export function netGzipBytes(...writes: Pairs[]): number {
  const last = new Map<string, string>();
  for (const w of writes) for (const [k, v] of w) last.set(k, v);
  const text = [...last].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}\t${v}\n`);
  return gzipSync(text.join('')).length;
}

async function until(probe: () => Promise<boolean>, what: string, deadlineMs = 120_000): Promise<void> {
  const end = performance.now() + deadlineMs;
  while (!(await probe())) {
    if (performance.now() > end) throw new Error(`sync bench: never happened within ${deadlineMs} ms: ${what}`);
    await sleep(10);
  }
}

class Bench {
  private sites = 0;
  private readonly children: Child[] = [];
  private readonly proxies: TcpProxy[] = [];

  constructor(readonly o: SyncBenchOptions) {}

  /** `buffdb run` on fresh files `name-*.db` (or the same files again), optionally an edge of `syncTo`. */
  async site(name: string, syncTo?: string, extra: string[] = []): Promise<Child> {
    const { dir, cli } = this.o;
    const args = [cli, 'run', '127.0.0.1:0', '--kv-store', join(dir, `${name}-kv.db`)];
    args.push('--blob-store', join(dir, `${name}-blob.db`), ...(syncTo ? ['--sync-to', syncTo] : []), ...extra);
    const child = await startChild(process.execPath, args, dir);
    this.children.push(child);
    return child;
  }

  fresh(kind: string): string {
    return `sync-${kind}-${this.sites++}`;
  }

  async proxy(hub: Child): Promise<TcpProxy> {
    const [host, port] = [hub.addr.slice(0, hub.addr.lastIndexOf(':')), hub.addr.slice(hub.addr.lastIndexOf(':') + 1)];
    const p = await startProxy({ host, port: Number(port) });
    this.proxies.push(p);
    return p;
  }

  async close(): Promise<void> {
    for (const p of this.proxies) await p.close().catch(() => {});
    for (const c of this.children) await c.stop().catch(() => {});
  }
}

/** Writes `data` with one Kv Set stream; resolves with the milliseconds it took. */
async function write(addr: string, data: Pairs): Promise<number> {
  const c = connect(addr);
  try {
    return await pump(c.kv.set(), data.length, (i): kvPb.SetRequest => {
      const [key, value] = data[i]!;
      return { key, value, transactionId: undefined };
    });
  } finally {
    c.close();
  }
}

async function waitConnected(addr: string): Promise<void> {
  await until(async () => (await syncStatus(addr)).connected, `edge ${addr} connected to its hub`, 60_000);
}

/** Resolves once `addr` holds `key` with `value`; throws after the deadline. */
async function waitFor(addr: string, key: string, value: string, what: string): Promise<void> {
  const probe = new KeyProbe(addr);
  try {
    await until(async () => (await probe.get(key)) === value, what);
  } finally {
    probe.close();
  }
}

async function expectCount(addr: string, prefix: string, n: number): Promise<void> {
  const probe = new KeyProbe(addr);
  const got = await probe.count(prefix).finally(() => probe.close());
  if (got !== n) throw new Error(`sync bench: ${addr} holds ${got} keys under ${prefix}, expected ${n}`);
}

/**
 * An edge whose `writes` were made while it could not reach the hub (its proxy blocked), restarted
 * and connected: resolves once the hub has the last write, with the milliseconds from the restart's
 * "listening", and the bytes the proxy carried since (a counter that keeps counting).
 */
async function offlineThenConnect(
  b: Bench,
  hub: Child,
  writes: Pairs,
  beforeConnect: () => Promise<void> = async () => {},
  extra = PUSH_ONLY,
): Promise<{ ms: number; wire: () => number; edge: Child }> {
  const proxy = await b.proxy(hub);
  proxy.block();
  const name = b.fresh('edge');
  const first = await b.site(name, proxy.address, extra);
  await write(first.addr, writes);
  await first.stop();
  await beforeConnect();
  proxy.unblock();
  const bytes0 = proxy.bytes.up + proxy.bytes.down;
  const t0 = performance.now();
  const edge = await b.site(name, proxy.address, extra);
  const [key, value] = writes[writes.length - 1]!;
  await waitFor(hub.addr, key, value, 'the hub holds the edge’s last offline write');
  const wire = (): number => proxy.bytes.up + proxy.bytes.down - bytes0;
  return { ms: performance.now() - t0, wire, edge };
}

function bandwidthRow(o: SyncBenchOptions, name: string, wire: number, net: number, informational = false): void {
  const ratio = wire / net;
  o.push({
    group: GROUP,
    name: `bytes on the wire, ${name}`,
    unit: 'bytes',
    value: wire,
    reference: net,
    referenceName: 'gzip of the net changed data (final key/value pairs, key\\tvalue\\n, sorted)',
    ratio,
    lowerIsBetter: true,
    ...(informational
      ? { note: 'informational: changes sent as they are made cannot be coalesced with later ones' }
      : { target: `<= ${WIRE_TARGET}x`, pass: ratio <= WIRE_TARGET }),
  });
  log(`sync / wire bytes, ${name}: ${wire} vs gzip ${net} → ${ratio.toFixed(2)}x`);
}

/** (a) Push rate, live and catch-up, each against Sets straight to the hub in the same round. */
async function pushRate(b: Bench, hub: Child, n: number, rounds: number): Promise<void> {
  const direct: number[] = [];
  const live: number[] = [];
  const catchUp: number[] = [];
  const edgeWrite: number[] = [];
  const rate = (ms: number): number => n / (ms / 1000);
  for (let r = 0; r < rounds; r++) {
    direct.push(rate(await write(hub.addr, pairs(`d${r}-`, n))));
    const edge = await b.site(b.fresh('edge'), hub.addr, PUSH_ONLY);
    await waitConnected(edge.addr);
    const data = pairs(`a${r}-`, n);
    const t0 = performance.now();
    edgeWrite.push(rate(await write(edge.addr, data)));
    await waitFor(hub.addr, ...data[n - 1]!, 'the hub holds the edge’s last live write');
    live.push(rate(performance.now() - t0));
    await expectCount(hub.addr, `a${r}-`, n);
    await edge.stop();
    const caught = await offlineThenConnect(b, hub, pairs(`c${r}-`, n));
    catchUp.push(rate(caught.ms));
    await expectCount(hub.addr, `c${r}-`, n);
    await caught.edge.stop();
  }
  const referenceName = `Kv Set, 1 stream, ${n} msgs straight to the hub (same values)`;
  const ratioRow = (name: string, values: number[], note?: string): void => {
    const ratios = values.map((v, i) => v / direct[i]!);
    b.o.push({
      group: GROUP,
      name,
      unit: 'changes/s',
      value: median(values),
      reference: median(direct),
      referenceName,
      ratio: median(ratios),
      ...(note ? { note } : {}),
    });
    log(
      `sync / ${name}: ${median(values).toFixed(0)} changes/s vs ${median(direct).toFixed(0)} → ${median(ratios).toFixed(2)}x`,
    );
  };
  ratioRow(
    `edge → hub push, live: ${n} Kv Sets on the edge until all on the hub`,
    live,
    `the Sets themselves ran at ${median(edgeWrite).toFixed(0)} msgs/s on the syncing edge`,
  );
  ratioRow(`edge → hub push, catch-up: ${n} changes queued offline, edge spawn until all on the hub`, catchUp);
}

/** (b) 10k writes on each side (1k keys on both) while apart; seconds until the dumps are equal. */
async function converge(b: Bench, n: number): Promise<void> {
  const hub = await b.site(b.fresh('hub'));
  const shared = Math.floor(n / 10);
  // The shared keys first: the hub writes them later, so its values win; each side's last write is its own.
  const hubWrites = [...pairs('xb-', shared), ...pairs('hb-', n - shared)];
  const edgeWrites = [...pairs('xb-', shared), ...pairs('eb-', n - shared)];
  const { ms, wire, edge } = await offlineThenConnect(
    b,
    hub,
    edgeWrites,
    async () => {
      await write(hub.addr, hubWrites);
    },
    [],
  );
  const start = performance.now() - ms;
  const [hk, hv] = hubWrites[n - 1]!;
  await waitFor(edge.addr, hk, hv, 'the edge holds the hub’s writes');
  let dumps = 0;
  let seconds = 0;
  await until(async () => {
    const t = performance.now();
    const [a, c] = await Promise.all([dumpStore(hub.addr), dumpStore(edge.addr)]);
    dumps++;
    seconds = (t - start) / 1000;
    return JSON.stringify(a.kv) === JSON.stringify(c.kv) && JSON.stringify(a.blobs) === JSON.stringify(c.blobs);
  }, 'hub and edge dumps equal');
  await sleep(300); // the last acknowledgement's bytes
  const total = wire();
  const status = await syncStatus(edge.addr);
  b.o.push({
    group: GROUP,
    name: `converge after ${n} writes on each side while apart (${shared} keys on both)`,
    unit: 's',
    value: seconds,
    note:
      `from spawning the edge process (its startup included) until the full dumps are equal (${dumps} dump comparisons); ` +
      `${total} bytes through the proxy; edge Status bytesSent ${status.bytesSent}, ` +
      `bytesReceived ${status.bytesReceived}, conflicts ${status.conflicts}`,
  });
  log(`sync / converge ${n}+${n}: ${seconds.toFixed(2)} s, ${total} bytes on the wire`);
  bandwidthRow(
    b.o,
    `converge ${n} + ${n} (both directions)`,
    total,
    netGzipBytes(edgeWrites) + netGzipBytes(hubWrites),
  );
  await edge.stop();
  await hub.stop();
}

/** (c) Wire bytes vs gzip of the net changed data: unique keys and overwritten keys, offline and live. */
async function bandwidth(b: Bench, hub: Child, n: number): Promise<void> {
  const hot = 1000;
  // Offline: 50 writes per key in both modes (a backlog of 50k writes, coalesced to 1k changes).
  const offlineWrites = 50 * hot;
  const overwrites = (tag: string, writes: number): Pairs =>
    Array.from({ length: writes }, (_, i) => [key16(`ow${tag}-`, i % hot), randomValue()]);
  for (const [name, data] of [
    [`${n} unique keys, written offline`, pairs('bu-', n)],
    [`${hot} keys × ${offlineWrites / hot} overwrites, written offline`, overwrites('o', offlineWrites)],
  ] as const) {
    const { wire, edge } = await offlineThenConnect(b, hub, data);
    await sleep(300);
    bandwidthRow(b.o, name, wire(), netGzipBytes(data));
    await edge.stop();
  }
  for (const [name, data, informational] of [
    [`${n} unique keys, written live`, pairs('bl-', n), false],
    [`${hot} keys × ${n / hot} overwrites, written live`, overwrites('l', n), true],
  ] as const) {
    const proxy = await b.proxy(hub);
    const edge = await b.site(b.fresh('edge'), proxy.address, PUSH_ONLY);
    await waitConnected(edge.addr);
    const bytes0 = proxy.bytes.up + proxy.bytes.down;
    await write(edge.addr, data);
    await waitFor(hub.addr, ...data[data.length - 1]!, 'the hub holds the edge’s last live write');
    await sleep(300);
    bandwidthRow(b.o, name, proxy.bytes.up + proxy.bytes.down - bytes0, netGzipBytes(data), informational);
    await edge.stop();
  }
}

export async function syncSection(opts: SyncBenchOptions): Promise<void> {
  const b = new Bench(opts);
  const n = opts.quick ? 20_000 : 100_000;
  const rounds = opts.quick ? 1 : 3;
  log(`sync: push rate ${n} changes × ${rounds} rounds, converge 10k + 10k, bandwidth`);
  const hub = await b.site(b.fresh('hub'));
  try {
    await pushRate(b, hub, n, rounds);
    await converge(b, 10_000);
    await bandwidth(b, hub, opts.quick ? 20_000 : 50_000);
  } catch (err) {
    const exit = hub.child.exitCode ?? hub.child.signalCode;
    if (exit !== null) log(`sync: the hub exited (${exit}): ${hub.stderr().slice(-2000)}`);
    throw err;
  } finally {
    await b.close();
  }
}
