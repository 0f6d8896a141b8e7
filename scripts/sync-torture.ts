/**
 * Sync torture (issue #15 item 9): a hub and two edges as `buffdb run` processes (sqlite, durability
 * full), each edge linked to the hub through a TCP proxy of the tests' own; for `--seconds`, random
 * writers on all three sites and random faults — links cut, held dead (block), delayed, throttled to
 * 1 Mbit/s, and `kill -9` of an edge or the hub, restarted on the same address and files. Every write
 * is recorded (key, value, site, send and answer times, acknowledged / uncertain / no-op). Then the
 * links heal, the three sites must converge (equal full dumps) within `--converge-seconds`, and:
 *  - own keys (`o/SITE/…`, written by one site, one write at a time): the final value is the last
 *    acknowledged one, or an uncertain (in flight at a kill) write made after it — an older value
 *    coming back would be a write applied twice or a lost one;
 *    Bulk keys (`b/SITE/…`, bursts of Sets pipelined on one stream, one burst at a time) likewise;
 *  - spaced keys (`s/…`, any site, a write only once the last one answered > 1 s ago): the same;
 *  - conflict keys (`c/…`, any site, any time): a value somebody wrote (or absent after a delete),
 *    and not one an acknowledged write made > 1 s after it should have beaten;
 *  - transaction pairs (`t/N/a` + `t/N/b` in one etcd Txn, any site, any time): as conflict keys,
 *    and every read of them (on a random site, all along) and the converged content hold both
 *    keys with one value or neither;
 *  - no key nobody wrote; no site exits on its own.
 *
 *   npm run sync-torture -- [--seconds 60] [--seed N] [--converge-seconds 60]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { stablePort } from '../bench/etcd.js';
import { dumpStore, type StoreDump } from '../test/helpers/dump.js';
import { startProxy, type TcpProxy } from '../test/helpers/tcp-proxy.js';
import { rng } from './fuzz.js';
import { syncStatus } from './sync-sites.js';
import { checkFinal, describeDiff, pairMismatches, SPACING_MS, type WriteRec } from './sync-torture-check.js';
import { Site } from './sync-torture-sites.js';

export interface SyncTortureOptions {
  seconds: number;
  seed?: number;
  convergeSeconds?: number;
  /** Concurrent writer loops per site (default 4). */
  writers?: number;
  log?: (line: string) => void;
}

export interface SyncTortureResult {
  seed: number;
  writes: { acked: number; uncertain: number; noop: number };
  faults: Record<string, number>;
  convergeSeconds: number;
  keysChecked: number;
  /** Each edge's Status once converged: conflicts resolved and bytes over its current link. */
  edges: string[];
  violations: string[];
}

const OWN = 200;
const SPACED = 60;
const CONFLICT = 30;
/** Transaction pairs t/N/a + t/N/b, written by any site at any time in one etcd Txn. */
const PAIRS = 20;
/** Keys of one bulk burst (~120 B each: a few batches' worth from the three sites). */
const BULK = 3000;
const PAD = `:${'0123456789abcdef'.repeat(6144 / 16)}`;
/** A held dead link lasts this long: the edge must report itself disconnected by then (issue #15 item 7). */
const DEAD_LINK_MS = 32_000;

export async function runSyncTorture(options: SyncTortureOptions): Promise<SyncTortureResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const seed = options.seed ?? Date.now() % 1_000_000;
  const rand = rng(seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const between = (a: number, b: number): number => a + rand() * (b - a);
  const convergeMs = (options.convergeSeconds ?? 60) * 1000;
  const dir = mkdtempSync(join(tmpdir(), 'buffdb-sync-torture-'));
  const violations: string[] = [];
  const faults: Record<string, number> = {};
  const count = (what: string): void => {
    faults[what] = (faults[what] ?? 0) + 1;
  };
  log(`sync torture: ${options.seconds} s, seed ${seed}, dir ${dir}`);

  const hub = new Site('hub', await stablePort(), dir, []);
  await hub.start();
  const [host, port] = ['127.0.0.1', hub.port];
  const proxies: TcpProxy[] = [await startProxy({ host, port }), await startProxy({ host, port })];
  const edges = await Promise.all(
    proxies.map(async (p, i) => new Site(`edge${i + 1}`, await stablePort(), dir, ['--sync-to', p.address])),
  );
  for (const e of edges) await e.start();
  const sites = [hub, ...edges];

  const history = new Map<string, WriteRec[]>();
  const busyKeys = new Set<string>();
  let seq = 0;
  let stopWriters = false;

  /** Picks a key this write may touch now (undefined: try again later). */
  const pickKey = (site: Site): string | undefined => {
    const r = rand();
    if (r < 0.5) {
      const key = `o/${site.name}/${int(OWN)}`;
      return busyKeys.has(key) ? undefined : key;
    }
    if (r < 0.75) {
      const key = `s/${int(SPACED)}`;
      const last = history.get(key)?.at(-1);
      if (busyKeys.has(key) || (last && performance.now() - last.doneAt < SPACING_MS)) return undefined;
      return key;
    }
    return r < 0.87 ? `t/${int(PAIRS)}` : `c/${int(CONFLICT)}`;
  };

  const writer = async (site: Site): Promise<void> => {
    while (!stopWriters) {
      const key = site.up ? pickKey(site) : undefined;
      if (key === undefined) {
        await sleep(site.up ? 2 : 50);
        continue;
      }
      const del = rand() < 0.15;
      const etcdApi = rand() < 0.3;
      // One write in ten carries ~4 KiB (batches worth throttling and killing in the middle of).
      const value = del ? null : `${site.name}#${seq++}${rand() < 0.1 ? PAD.slice(0, 2048 + int(4096)) : ''}`;
      const pair = key.startsWith('t/');
      const keys = pair ? [`${key}/a`, `${key}/b`] : [key];
      const sentAt = performance.now();
      const recs = keys.map(
        (k): WriteRec => ({ key: k, value, site: site.name, sentAt, doneAt: 0, outcome: 'pending' }),
      );
      for (const rec of recs) history.set(rec.key, [...(history.get(rec.key) ?? []), rec]);
      const exclusive = key.startsWith('o/') || key.startsWith('s/');
      if (exclusive) busyKeys.add(key);
      let outcome: WriteRec['outcome'];
      try {
        outcome = await (pair
          ? site.etcdTxn(keys, value)
          : value === null
            ? etcdApi
              ? site.etcdDelete(key)
              : site.delete(key)
            : etcdApi
              ? site.etcdPut(key, value)
              : site.set(key, value));
      } catch {
        outcome = 'uncertain';
      }
      for (const rec of recs) Object.assign(rec, { outcome, doneAt: performance.now() });
      if (exclusive) busyKeys.delete(key);
    }
  };

  /** Now and then a burst of BULK Sets pipelined on one stream (`b/SITE/N`): backlogs of several batches. */
  const bulkWriter = async (site: Site): Promise<void> => {
    while (!stopWriters) {
      await sleep(between(1000, 5000));
      if (!site.up || stopWriters) continue;
      const sentAt = performance.now();
      const burst = Array.from({ length: BULK }, (_, n): WriteRec => {
        const value = `${site.name}#${seq++}${PAD.slice(0, 100)}`;
        return { key: `b/${site.name}/${n}`, value, site: site.name, sentAt, doneAt: 0, outcome: 'pending' };
      });
      await Promise.all(
        burst.map(async (rec) => {
          history.set(rec.key, [...(history.get(rec.key) ?? []), rec]);
          rec.outcome = await site.set(rec.key, rec.value!).catch(() => 'uncertain' as const);
          rec.doneAt = performance.now();
        }),
      );
    }
  };

  /** Reads the transaction pairs on a random site now and then: each is whole or absent, never in part. */
  const pairReader = async (): Promise<void> => {
    while (!stopWriters) {
      await sleep(50);
      const site = sites[int(sites.length)]!;
      const kvs = site.up ? await site.rangePrefix('t/').catch(() => undefined) : undefined;
      for (const m of pairMismatches(kvs ?? [])) violations.push(`${site.name} read a transaction in part: ${m}`);
    }
  };

  const checkCrashes = async (): Promise<void> => {
    for (const s of sites) {
      if (!s.crashed()) continue;
      violations.push(
        `${s.name} exited on its own (${s.child!.exitCode ?? s.child!.signalCode}): ${s.stderrTail.slice(-600)}`,
      );
      await s.kill();
      await s.start();
    }
  };

  /** One fault at a time per target; each restores what it changed before it resolves. */
  const busyTargets = new Set<string>();
  const timeline: string[] = [];
  const started = performance.now();
  let deadLinkDone = options.seconds * 1000 < DEAD_LINK_MS * 1.5;
  const fault = async (remainingMs: number): Promise<void> => {
    const deadLink = !deadLinkDone && remainingMs > DEAD_LINK_MS && rand() < 0.3;
    const kinds = ['cut', 'block', 'delay', 'throttle', 'kill-edge', 'kill-edge', 'kill-hub'];
    const kind = deadLink ? 'dead-link' : kinds[int(kinds.length)]!;
    const i = int(2);
    const target = kind === 'kill-hub' ? 'hub' : kind === 'kill-edge' ? edges[i]!.name : `proxy${i}`;
    if (busyTargets.has(target) || (deadLink && busyTargets.has(edges[i]!.name))) return;
    busyTargets.add(target);
    if (deadLink) {
      deadLinkDone = true;
      busyTargets.add(edges[i]!.name); // stays up: it must notice the dead link itself
    }
    count(kind);
    timeline.push(`${((performance.now() - started) / 1000).toFixed(1)} s ${kind} ${target}`);
    const p = proxies[i]!;
    try {
      if (kind === 'cut') p.cut();
      else if (deadLink) {
        p.block();
        await sleep(DEAD_LINK_MS);
        const s = await syncStatus(edges[i]!.addr).catch((err: Error) => err);
        if (s instanceof Error || s.connected) {
          const what = s instanceof Error ? `Status failed: ${s.message}` : 'Status still says connected';
          violations.push(`${edges[i]!.name}: ${DEAD_LINK_MS / 1000} s into a silent dead link to the hub, ${what}`);
        }
        p.unblock();
      } else if (kind === 'block') {
        p.block();
        await sleep(between(1000, 6000));
        p.unblock();
      } else if (kind === 'delay') {
        p.setDelay(between(20, 200));
        await sleep(between(2000, 8000));
        p.setDelay(0);
      } else if (kind === 'throttle') {
        p.setRate(125_000);
        await sleep(between(2000, 8000));
        p.setRate(undefined);
      } else {
        const site = kind === 'kill-hub' ? hub : edges[i]!;
        await site.kill();
        await sleep(between(200, 3000));
        await site.start();
      }
    } finally {
      busyTargets.delete(target);
      if (deadLink) busyTargets.delete(edges[i]!.name);
    }
  };

  let convergeSeconds = Number.NaN;
  const edgeSummaries: string[] = [];
  let final: StoreDump | undefined;
  try {
    const writers = sites.flatMap((s) => Array.from({ length: options.writers ?? 4 }, () => writer(s)));
    writers.push(pairReader(), ...sites.map(bulkWriter));
    const pendingFaults = new Set<Promise<void>>();
    const end = performance.now() + options.seconds * 1000;
    while (performance.now() < end) {
      await sleep(between(300, 2000));
      await checkCrashes();
      const f = fault(end - performance.now()).catch((err: Error) => {
        violations.push(`fault handling failed: ${err.message}`);
      });
      pendingFaults.add(f);
      void f.finally(() => pendingFaults.delete(f));
    }
    stopWriters = true;
    await Promise.all(writers);
    await Promise.all(pendingFaults);
    await checkCrashes();
    log(`sync torture: writes stopped, faults healed: ${JSON.stringify(faults)}; waiting for convergence`);
    const t0 = performance.now();
    let dumps: StoreDump[] = [];
    for (;;) {
      dumps = await Promise.all(sites.map((s) => dumpStore(s.addr)));
      const same = dumps.every((d) => JSON.stringify(d) === JSON.stringify(dumps[0]));
      if (same) {
        convergeSeconds = (performance.now() - t0) / 1000;
        final = dumps[0];
        for (const e of edges) {
          const st = await syncStatus(e.addr);
          edgeSummaries.push(
            `${e.name}: connected ${st.connected}, conflicts ${st.conflicts}, sent ${st.bytesSent} B, received ${st.bytesReceived} B`,
          );
        }
        break;
      }
      if (performance.now() - t0 > convergeMs) {
        violations.push(`no convergence within ${convergeMs / 1000} s: ${describeDiff(dumps, sites)}`);
        for (const e of edges) {
          const s = await syncStatus(e.addr).catch((err: Error) => err.message);
          violations.push(`${e.name} status: ${typeof s === 'string' ? s : JSON.stringify(s, jsonBig)}`);
        }
        final = dumps[0];
        break;
      }
      await checkCrashes();
      await sleep(250);
    }
  } finally {
    for (const s of sites) await s.kill('SIGTERM').catch(() => {});
    for (const p of proxies) await p.close().catch(() => {});
  }
  const keysChecked = final ? checkFinal(final, history, violations) : 0;
  const recs = [...history.values()].flat();
  const writes = {
    acked: recs.filter((r) => r.outcome === 'acked').length,
    uncertain: recs.filter((r) => r.outcome === 'uncertain').length,
    noop: recs.filter((r) => r.outcome === 'noop').length,
  };
  if (violations.length === 0) rmSync(dir, { recursive: true, force: true });
  else log(`sync torture: files kept in ${dir}; faults: ${timeline.join(', ')}`);
  if (process.env.SYNC_TORTURE_TIMELINE) log(`faults: ${timeline.join(', ')}`);
  return { seed, writes, faults, convergeSeconds, keysChecked, edges: edgeSummaries, violations };
}

const jsonBig = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? v.toString() : v);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      seed: { type: 'string' },
      'converge-seconds': { type: 'string', default: '60' },
      writers: { type: 'string', default: '4' },
    },
  });
  const started = performance.now();
  const r = await runSyncTorture({
    seconds: Number(values.seconds),
    seed: values.seed === undefined ? undefined : Number(values.seed),
    convergeSeconds: Number(values['converge-seconds']),
    writers: Number(values.writers),
  });
  const total = ((performance.now() - started) / 1000).toFixed(0);
  console.log(
    `sync torture (seed ${r.seed}, ${total} s): ${r.writes.acked} writes acknowledged, ${r.writes.uncertain} uncertain, ` +
      `${r.writes.noop} deletes of nothing; faults ${JSON.stringify(r.faults)}; converged in ` +
      `${r.convergeSeconds.toFixed(1)} s; ${r.keysChecked} keys checked; ${r.violations.length} violations`,
  );
  console.log(`  ${r.edges.join('\n  ')}`);
  for (const v of r.violations.slice(0, 30)) console.log(`VIOLATION ${v}`);
  if (r.violations.length > 30) console.log(`… and ${r.violations.length - 30} more`);
  if (r.violations.length > 0) process.exitCode = 1;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) await main();
