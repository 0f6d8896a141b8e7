/**
 * Crash loop: `buffdb run` as a child process, several clients streaming KV sets/deletes, blob
 * stores/updates/deletes and etcd Puts/Txns, `kill -9` at a random moment, restart on the same
 * files, and check that
 *  - every acknowledged write is there with the right value (and every acknowledged delete stays
 *    deleted unless a later write re-set it),
 *  - a write that was in flight is either fully there or fully absent — never a value nobody wrote,
 *  - blob ids are never reused, and the files open cleanly (SQLite: integrity_check is ok);
 *  - etcd writes are at their acknowledged revisions and revisions only grow (./torture-etcd.ts);
 *  - acknowledged uploads (Upload stream) are whole and resumable uploads resume (./torture-upload.ts).
 *
 *   npm run torture -- --loops 50 --backend sqlite[,other…|all] [--clients 4] [--seed N]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BACKEND_NAMES, loadBackend } from '../src/backends/index.js';
import { connectEtcd, type EtcdClients } from '../src/client/etcd.js';
import { type BuffDbClients, connect } from '../src/client/network.js';
import { type QueryResult, TargetStore } from '../src/generated/query.js';
import { unpackValue } from '../src/server/any-values.js';
// The same seeded PRNG as the fuzzer, so a failing run can be replayed with --seed.
import { rng } from './fuzz.js';
import { ABSENT, EtcdTorture, type KvState, type Tracked } from './torture-etcd.js';
import { UploadTorture } from './torture-upload.js';

const CLI = resolve(import.meta.dirname, '..', 'dist', 'cli', 'main.js');

export interface TortureOptions {
  loops: number;
  backend: string;
  clients?: number;
  seed?: number;
  durability?: 'full' | 'normal';
  /** Longest time a loop writes before the kill (ms). */
  maxRunMs?: number;
  log?: (line: string) => void;
  /** Where the stores are (default: kv.db and blob.db in a temporary directory); e.g. postgres URLs. */
  stores?: { kvStore: string; blobStore: string };
}

export interface TortureResult {
  backend: string;
  loops: number;
  ackedWrites: number;
  /** Of those, through the etcd API; and the highest revision acknowledged. */
  etcdAcked: number;
  maxRevision: number;
  /** Uploads acknowledged; calls that continued a resumable upload; resumable uploads completed. */
  uploadsAcked: number;
  resumedCalls: number;
  resumableCompleted: number;
  inFlightAtKill: number;
  inFlightLanded: number;
  keysChecked: number;
  blobsChecked: number;
  seconds: number;
}

interface BlobState {
  data: Buffer;
  metadata: string | null;
}
type BState = BlobState | typeof ABSENT;

const sameBlob = (a: BState, b: BState): boolean =>
  a === ABSENT || b === ABSENT ? a === b : a.metadata === b.metadata && a.data.equals(b.data);

interface Server {
  child: ChildProcess;
  addr: string;
  exited: Promise<void>;
}

function startServer(
  dir: string,
  backend: string,
  durability: string,
  stores = { kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') },
): Promise<Server> {
  const child = spawn(
    process.execPath,
    [
      CLI,
      'run',
      '127.0.0.1:0',
      '--backend',
      backend,
      '--durability',
      durability,
      '--kv-store',
      stores.kvStore,
      '--blob-store',
      stores.blobStore,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`server did not start in 30 s: ${err}`));
    }, 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res({ child, addr: m[1]!, exited });
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      rej(new Error(`server exited at start (files did not open cleanly?): ${err.trim()}`));
    });
  });
}

/** Sends `reqs` on a bidi stream, calling onAck(i) per answer; resolves with the status error, if any. */
function stream<Req, Res>(
  call: import('@grpc/grpc-js').ClientDuplexStream<Req, Res>,
  reqs: Req[],
  onAck: (i: number, res: Res) => void,
): Promise<import('@grpc/grpc-js').ServiceError | undefined> {
  return new Promise((res) => {
    let i = 0;
    call.on('data', (d: Res) => onAck(i++, d));
    call.on('error', (e: import('@grpc/grpc-js').ServiceError) => res(e));
    call.on('end', () => res(undefined));
    for (const r of reqs) call.write(r);
    call.end();
  });
}

export async function runTorture(options: TortureOptions): Promise<TortureResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const nClients = options.clients ?? 4;
  const seed = options.seed ?? Date.now() % 1_000_000;
  const rand = rng(seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const maxRunMs = options.maxRunMs ?? 1500;
  const durability = options.durability ?? 'full';
  const { capabilities } = await loadBackend(options.backend);
  const dir = mkdtempSync(join(tmpdir(), `buffdb-torture-${options.backend}-`));
  const started = Date.now();
  log(
    `torture: backend ${options.backend}, ${options.loops} loops, ${nClients} clients, seed ${seed}, durability ${durability}, dir ${dir}`,
  );

  const kv = new Map<string, Tracked<KvState>>();
  const blobs = new Map<bigint, Tracked<BState>>();
  /** Blob stores in flight (id unknown): payload nonce → state. Found again by scanning (raw SQL). */
  const unackedStores = new Map<string, BlobState>();
  let maxIdSeen = 0n;
  const stats = { ackedWrites: 0, inFlightAtKill: 0, inFlightLanded: 0, keysChecked: 0, blobsChecked: 0 };
  let nonce = 0;
  /** Problems seen inside stream callbacks (thrown from the client loop, not the callback). */
  const violations: string[] = [];

  const latest = <S>(t: Tracked<S>): S => (t.pending.length > 0 ? t.pending[t.pending.length - 1]! : t.confirmed);
  const fail = (msg: string): never => {
    throw new Error(`torture [${options.backend}, seed ${seed}]: ${msg}`);
  };
  const etcd = new EtcdTorture(kv, int, () => nonce++, fail);
  const uploads = new UploadTorture(
    int,
    () => nonce++,
    fail,
    (id) => {
      if (id > maxIdSeen) maxIdSeen = id;
    },
  );

  /** After a restart: every key and blob must hold its acknowledged state or an in-flight one. */
  async function verify(c: BuffDbClients, loop: number): Promise<void> {
    // Gets run 64 at a time (one stream each: a missing key ends its stream with NOT_FOUND).
    const inChunks = async <T>(items: T[], each: (item: T) => Promise<void>): Promise<void> => {
      for (let i = 0; i < items.length; i += 64) await Promise.all(items.slice(i, i + 64).map(each));
    };
    await inChunks([...kv], async ([key, t]) => {
      {
        let actual: KvState = ABSENT;
        const res = await stream(c.kv.get(), [{ key }], (_i, r: { value: string }) => {
          actual = r.value;
        });
        if (res && res.code !== 5) fail(`loop ${loop}: get ${key} failed: ${res.details}`);
        const allowed: KvState[] = [t.confirmed, ...t.pending];
        actual = actual as KvState;
        if (!allowed.includes(actual)) {
          fail(
            `loop ${loop}: key ${key} holds ${actual === ABSENT ? 'nothing' : JSON.stringify(actual)}; ` +
              `acknowledged ${t.confirmed === ABSENT ? 'absent' : JSON.stringify(t.confirmed)}, in flight ${t.pending.length}`,
          );
        }
        if (actual !== t.confirmed) stats.inFlightLanded++;
        t.confirmed = actual;
        t.pending = [];
        stats.keysChecked++;
      }
    });
    await inChunks([...blobs], async ([id, t]) => {
      let got: BState = ABSENT;
      const res = await stream(c.blob.get(), [{ id }], (_i, r: { bytes: Uint8Array; metadata?: string }) => {
        got = { data: Buffer.from(r.bytes), metadata: r.metadata ?? null };
      });
      const actual = got as BState;
      if (res && res.code !== 5) fail(`loop ${loop}: blob get ${id} failed: ${res.details}`);
      if (!([t.confirmed, ...t.pending] as BState[]).some((s) => sameBlob(s, actual))) {
        fail(
          `loop ${loop}: blob ${id} holds ${actual === ABSENT ? 'nothing' : `${(actual as BlobState).data.length} bytes`}, ` +
            'which is neither its acknowledged state nor an in-flight one',
        );
      }
      if (!sameBlob(actual, t.confirmed)) stats.inFlightLanded++;
      t.confirmed = actual;
      t.pending = [];
      stats.blobsChecked++;
    });
    if (capabilities.sqlDialect) {
      // Nothing nobody wrote: every key and blob in the store is known or an in-flight write.
      const rows = await sql(c, 'SELECT key, value FROM kv', TargetStore.KV);
      for (const [key, value] of rows) {
        const t = kv.get(key as string);
        if (!t || t.confirmed !== value) fail(`loop ${loop}: phantom key ${String(key)} = ${String(value)}`);
      }
      const ids = await sql(c, 'SELECT id, data, metadata FROM blob', TargetStore.BLOB);
      for (const [rawId, data, metadata] of ids) {
        const id = BigInt(rawId as bigint);
        if (id > maxIdSeen) maxIdSeen = id;
        if (blobs.has(id) || uploads.adopt(id, (metadata as string | null) ?? null)) continue;
        const state = { data: Buffer.from(data as Uint8Array), metadata: (metadata as string | null) ?? null };
        const nonceOf = state.data.subarray(0, 16).toString();
        const expected = unackedStores.get(nonceOf);
        if (!expected || !sameBlob(expected, state)) fail(`loop ${loop}: phantom blob ${id}`);
        // An in-flight store that landed: adopt it.
        blobs.set(id, { confirmed: state, pending: [] });
        stats.inFlightLanded++;
      }
      if (options.backend === 'sqlite') {
        for (const target of [TargetStore.KV, TargetStore.BLOB]) {
          const check = await sql(c, 'PRAGMA integrity_check', target);
          if (check[0]?.[0] !== 'ok') fail(`loop ${loop}: integrity_check: ${JSON.stringify(check)}`);
        }
      }
    }
    unackedStores.clear();
    await uploads.check(c, loop);
  }

  async function sql(c: BuffDbClients, query: string, target: TargetStore): Promise<unknown[][]> {
    const rows: unknown[][] = [];
    const err = await stream(c.query.query(), [{ query, target }], (_i, r: QueryResult) => {
      rows.push(r.fields.map(unpackValue));
    });
    if (err) fail(`${query}: ${err.details}`);
    return rows;
  }

  /** One client's writes until the server dies. Keys are owned by one client: order is known. */
  async function client(c: BuffDbClients, e: EtcdClients, who: number, stop: { killed: boolean }): Promise<void> {
    while (!stop.killed) {
      const kind = int(13);
      let err: import('@grpc/grpc-js').ServiceError | undefined;
      if (kind === 12) err = await uploads.write(c, who);
      else if (kind >= 10) err = await etcd.write(e, who);
      else if (kind < 4) {
        const n = 1 + int(20);
        const reqs = Array.from({ length: n }, () => {
          const key = `c${who}-k${int(60)}`;
          const value = `v${nonce++}-${'x'.repeat(int(200))}`;
          const t = kv.get(key) ?? { confirmed: ABSENT, pending: [] };
          kv.set(key, t);
          t.pending.push(value);
          return { key, value };
        });
        err = await stream(c.kv.set(), reqs, (_i, r: { key: string }) => {
          const t = kv.get(r.key)!;
          t.confirmed = t.pending.shift()!;
          stats.ackedWrites++;
        });
      } else if (kind < 6) {
        const present = [...kv.entries()].filter(([k, t]) => k.startsWith(`c${who}-`) && latest(t) !== ABSENT);
        const chosen = [...new Set(Array.from({ length: 1 + int(5) }, () => present[int(present.length)]?.[0]))].filter(
          (k): k is string => k !== undefined,
        );
        if (chosen.length === 0) continue;
        for (const key of chosen) kv.get(key)!.pending.push(ABSENT);
        err = await stream(
          c.kv.delete(),
          chosen.map((key) => ({ key })),
          (_i, r: { key: string }) => {
            const t = kv.get(r.key)!;
            t.confirmed = t.pending.shift()!;
            stats.ackedWrites++;
          },
        );
      } else if (kind < 8) {
        const n = 1 + int(5);
        const states: BlobState[] = Array.from({ length: n }, () => {
          const tag = `c${who}n${nonce++}`.padEnd(16, '.').slice(0, 16);
          const data = Buffer.concat([Buffer.from(tag), Buffer.alloc(int(8192), int(256))]);
          const s = { data, metadata: int(3) === 0 ? null : `meta-${tag}` };
          unackedStores.set(tag, s);
          return s;
        });
        err = await stream(
          c.blob.store(),
          states.map((s) => ({ bytes: s.data, metadata: s.metadata ?? undefined })),
          (i, r: { id: bigint }) => {
            // Ids of one batch reach different clients in any order: check uniqueness, not order.
            if (blobs.has(r.id)) violations.push(`blob id ${r.id} handed out twice`);
            if (r.id > maxIdSeen) maxIdSeen = r.id;
            blobs.set(r.id, { confirmed: states[i]!, pending: [] });
            unackedStores.delete(states[i]!.data.subarray(0, 16).toString());
            stats.ackedWrites++;
          },
        );
      } else {
        const mine = [...blobs.entries()].filter(
          ([, t]) =>
            latest(t) !== ABSENT && (latest(t) as BlobState).data.subarray(0, 16).toString().startsWith(`c${who}n`),
        );
        const chosen = [
          ...new Map(
            Array.from({ length: 1 + int(4) }, () => mine[int(mine.length)])
              .filter((e) => e)
              .map((e) => [e![0], e![1]]),
          ).entries(),
        ];
        if (chosen.length === 0) continue;
        if (kind === 8) {
          const reqs = chosen.map(([id, t]) => {
            const prev = latest(t) as BlobState;
            const mode = int(3);
            const data =
              mode === 1
                ? undefined
                : Buffer.concat([prev.data.subarray(0, 16), Buffer.alloc(int(4096), nonce++ % 256)]);
            const metadata = mode === 0 ? undefined : int(2) === 0 ? null : `upd-${nonce++}`;
            t.pending.push({ data: data ?? prev.data, metadata: metadata === undefined ? prev.metadata : metadata });
            return { id, bytes: data, shouldUpdateMetadata: metadata !== undefined, metadata: metadata ?? undefined };
          });
          err = await stream(c.blob.update(), reqs, (_i, r: { id: bigint }) => {
            const t = blobs.get(r.id)!;
            t.confirmed = t.pending.shift()!;
            stats.ackedWrites++;
          });
        } else {
          for (const [, t] of chosen) t.pending.push(ABSENT);
          err = await stream(
            c.blob.delete(),
            chosen.map(([id]) => ({ id })),
            (_i, r: { id: bigint }) => {
              const t = blobs.get(r.id)!;
              t.confirmed = t.pending.shift()!;
              stats.ackedWrites++;
            },
          );
        }
      }
      if (violations.length > 0) fail(violations.join('; '));
      if (err) {
        if (stop.killed) return;
        fail(`client ${who}: unexpected ${err.code} ${err.details} while the server was up`);
      }
    }
  }

  try {
    for (let loop = 1; loop <= options.loops; loop++) {
      const server = await startServer(dir, options.backend, durability, options.stores);
      const c = connect(server.addr);
      const e = connectEtcd(server.addr);
      try {
        await etcd.check(e, loop);
        await verify(c, loop);
        const stop = { killed: false };
        const workers = Array.from({ length: nClients }, (_, who) => client(c, e, who, stop));
        const failure = Promise.race(workers.map((w) => w.then(() => new Promise<never>(() => {}))));
        await Promise.race([new Promise((r) => setTimeout(r, 50 + int(maxRunMs))), failure]);
        stop.killed = true;
        server.child.kill('SIGKILL');
        await server.exited;
        await Promise.race([
          Promise.all(workers),
          new Promise((_, rej) => setTimeout(() => rej(new Error('clients hung after the kill')), 20_000)),
        ]);
        let inFlight = unackedStores.size;
        for (const t of kv.values()) inFlight += t.pending.length;
        for (const t of blobs.values()) inFlight += t.pending.length;
        stats.inFlightAtKill += inFlight;
        if (loop % 10 === 0 || loop === options.loops) {
          log(
            `  loop ${loop}/${options.loops}: ${stats.ackedWrites} acknowledged writes so far, ${inFlight} in flight at this kill`,
          );
        }
      } finally {
        c.close();
        e.close();
        if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
      }
    }
    // Final restart and check.
    const server = await startServer(dir, options.backend, durability, options.stores);
    const c = connect(server.addr);
    const e = connectEtcd(server.addr);
    try {
      await etcd.check(e, options.loops + 1);
      await verify(c, options.loops + 1);
      // Ids are never reused, even after crashes.
      let newId = 0n;
      await stream(c.blob.store(), [{ bytes: Buffer.from('final') }], (_i, r: { id: bigint }) => {
        newId = r.id;
      });
      if (newId <= maxIdSeen) fail(`blob id ${newId} reused after restart (largest seen ${maxIdSeen})`);
      if ((await etcd.write(e, 0)) !== undefined) fail('an etcd write failed after the last restart');
    } finally {
      c.close();
      e.close();
      server.child.kill('SIGTERM');
      await server.exited;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const result = {
    backend: options.backend,
    loops: options.loops,
    ...stats,
    ackedWrites: stats.ackedWrites + etcd.acked + uploads.acked,
    etcdAcked: etcd.acked,
    maxRevision: etcd.maxAckedRev,
    uploadsAcked: uploads.acked,
    resumedCalls: uploads.resumedCalls,
    resumableCompleted: uploads.completedResumable,
    seconds: (Date.now() - started) / 1000,
  };
  log(
    `torture: ${options.backend} survived ${result.loops} kill -9 loops in ${result.seconds.toFixed(1)} s: ` +
      `${result.ackedWrites} acknowledged writes all present (${result.etcdAcked} through etcd, at their revisions, up to ${result.maxRevision}; ` +
      `${result.uploadsAcked} uploads, ${result.resumableCompleted} of them resumable, ${result.resumedCalls} resumed calls), ${result.inFlightAtKill} in flight at kills ` +
      `(${result.inFlightLanded} landed, the rest cleanly absent), ${result.keysChecked} key and ${result.blobsChecked} blob checks`,
  );
  return result;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      loops: { type: 'string', default: '50' },
      backend: { type: 'string', default: 'sqlite' },
      clients: { type: 'string', default: '4' },
      seed: { type: 'string' },
      durability: { type: 'string', default: 'full' },
      'max-run-ms': { type: 'string', default: '1500' },
    },
  });
  const backends = values.backend === 'all' ? [...BACKEND_NAMES] : values.backend.split(',').filter(Boolean);
  for (const b of backends) {
    if (!(BACKEND_NAMES as readonly string[]).includes(b)) {
      console.error(`torture: unknown backend ${JSON.stringify(b)}; choose from ${BACKEND_NAMES.join(', ')} or all`);
      process.exit(2);
    }
  }
  if (values.durability !== 'full' && values.durability !== 'normal') {
    console.error('torture: --durability is full or normal');
    process.exit(2);
  }
  let failed = false;
  for (const backend of backends) {
    try {
      await runTorture({
        backend,
        loops: Number(values.loops),
        clients: Number(values.clients),
        seed: values.seed === undefined ? undefined : Number(values.seed),
        durability: values.durability,
        maxRunMs: Number(values['max-run-ms']),
      });
    } catch (err) {
      failed = true;
      console.error(`FAILED: ${(err as Error).message}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) await main();
