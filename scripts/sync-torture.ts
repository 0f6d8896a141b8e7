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
 *  - spaced keys (`s/…`, any site, a write only once the last one answered > 1 s ago): the same;
 *  - conflict keys (`c/…`, any site, any time): a value somebody wrote (or absent after a delete),
 *    and not one an acknowledged write made > 1 s after it should have beaten;
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
import { freePort } from '../bench/etcd.js';
import { dumpStore, type StoreDump } from '../test/helpers/dump.js';
import { startProxy, type TcpProxy } from '../test/helpers/tcp-proxy.js';
import { rng } from './fuzz.js';
import { syncStatus } from './sync-sites.js';
import { type Outcome, Site } from './sync-torture-sites.js';

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

interface WriteRec {
  key: string;
  /** null: a delete. */
  value: string | null;
  site: string;
  sentAt: number;
  doneAt: number;
  outcome: Outcome | 'uncertain' | 'pending';
}

const OWN = 200;
const SPACED = 60;
const CONFLICT = 30;
const PAD = `:${'0123456789abcdef'.repeat(6144 / 16)}`;
/** A held dead link lasts this long: the edge must report itself disconnected by then (issue #15 item 7). */
const DEAD_LINK_MS = 32_000;
/** Writes this far apart (answer → next send) are ordered by their clocks on one machine. */
const SPACING_MS = 1000;

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

  const hub = new Site('hub', await freePort(), dir, []);
  await hub.start();
  const [host, port] = ['127.0.0.1', hub.port];
  const proxies: TcpProxy[] = [await startProxy({ host, port }), await startProxy({ host, port })];
  const edges = await Promise.all(
    proxies.map(async (p, i) => new Site(`edge${i + 1}`, await freePort(), dir, ['--sync-to', p.address])),
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
    return `c/${int(CONFLICT)}`;
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
      const rec: WriteRec = { key, value, site: site.name, sentAt: performance.now(), doneAt: 0, outcome: 'pending' };
      const list = history.get(key) ?? [];
      list.push(rec);
      history.set(key, list);
      const exclusive = !key.startsWith('c/');
      if (exclusive) busyKeys.add(key);
      try {
        rec.outcome = await (value === null
          ? etcdApi
            ? site.etcdDelete(key)
            : site.delete(key)
          : etcdApi
            ? site.etcdPut(key, value)
            : site.set(key, value));
      } catch {
        rec.outcome = 'uncertain';
      }
      rec.doneAt = performance.now();
      if (exclusive) busyKeys.delete(key);
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

function describeDiff(dumps: StoreDump[], sites: Site[]): string {
  const maps = dumps.map((d) => new Map(d.kv));
  const keys = new Set(dumps.flatMap((d) => d.kv.map(([k]) => k)));
  const differing = [...keys].filter((k) => new Set(maps.map((m) => m.get(k))).size > 1);
  const show = differing.slice(0, 5).map((k) => {
    const vals = maps.map((m, i) => `${sites[i]!.name}=${decode(m.get(k)) ?? 'absent'}`);
    return `${decode(k)}: ${vals.join(' ')}`;
  });
  return `${differing.length} keys differ (${dumps.map((d, i) => `${sites[i]!.name} ${d.kv.length} keys`).join(', ')}); ${show.join('; ')}`;
}

const decode = (b64: string | undefined): string | undefined =>
  b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8');

const show = (r: WriteRec, t0: number): string =>
  `${r.value ?? 'DELETE'} (${r.outcome}, sent ${((r.sentAt - t0) / 1000).toFixed(3)} s, answered ${((r.doneAt - t0) / 1000).toFixed(3)} s)`;

/** Checks the converged content against the write history; returns the keys checked. */
export function checkFinal(final: StoreDump, history: Map<string, WriteRec[]>, violations: string[]): number {
  const content = new Map(final.kv.map(([k, v]) => [decode(k)!, decode(v)!]));
  for (const key of content.keys()) if (!history.has(key)) violations.push(`key ${key} holds a value nobody wrote`);
  const t0 = Math.min(...[...history.values()].map((l) => l[0]!.sentAt));
  for (const [key, all] of history) {
    const recs = all.filter((r) => r.outcome !== 'noop');
    const got = content.get(key) ?? null;
    const fail = (why: string): void => {
      violations.push(
        `key ${key} holds ${got ?? 'nothing'}: ${why}; last writes: ${recs
          .slice(-4)
          .map((r) => show(r, t0))
          .join(' | ')}`,
      );
    };
    if (!key.startsWith('c/')) {
      // One write at a time: the last acknowledged, or an uncertain one after it.
      let last = -1;
      for (let i = 0; i < recs.length; i++) if (recs[i]!.outcome === 'acked') last = i;
      const allowed = new Set<string | null>(last >= 0 ? [recs[last]!.value] : [null]);
      for (let i = last + 1; i < recs.length; i++) allowed.add(recs[i]!.value);
      if (!allowed.has(got)) fail('expected the last acknowledged write (or an uncertain later one)');
      continue;
    }
    // Any write: a value somebody wrote that no acknowledged write clearly later should have beaten.
    const candidates = recs.filter((r) => r.value === got);
    const beaten = (c: { doneAt: number }): boolean =>
      recs.some((x) => x.outcome === 'acked' && x.sentAt > c.doneAt + SPACING_MS);
    const neverWritten = got === null ? [{ doneAt: -Infinity }] : [];
    if (candidates.length === 0 && neverWritten.length === 0) fail('a value nobody wrote');
    else if ([...candidates, ...neverWritten].every(beaten)) {
      fail(`an acknowledged write made > ${SPACING_MS} ms later should have won`);
    }
  }
  return history.size;
}

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
