/**
 * Server memory under clients that are too fast or too slow (issue #12): peak RSS (VmHWM) of a
 * `buffdb run` child process, sampled while each scenario runs.
 *
 *   node --import tsx bench/memory.ts [--budget=64MiB] [--durability=normal] [--only=a,b]
 *                                     [--cli=PATH/TO/dist/cli/main.js]
 *
 *   single      1 stream storing 200 × 1 MiB blobs as fast as HTTP/2 allows (the case)
 *   flood       32 streams on 8 connections, each storing 16 × 1 MiB blobs as fast as they can
 *   slow-get    Get of 200 × 1 MiB answers on one stream, read one every 10 ms
 *   slow-query  SELECT of 200 × 1 MiB rows, read one every 10 ms
 *
 * `--cli` measures another build (for a before/after comparison). Each scenario starts a fresh
 * server, so each peak is that scenario's own.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { connect } from '../src/client/network.js';
import type * as blobPb from '../src/generated/blob.js';
import { TargetStore } from '../src/generated/query.js';
import { type Child, log, memoryOf, pump, startChild } from './lib.js';

const MiB = 1024 * 1024;
const argv = process.argv.slice(2);
const arg = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const CLI = resolve(arg('cli') ?? join(import.meta.dirname, '..', 'dist', 'cli', 'main.js'));
const BUDGET = arg('budget');
const DURABILITY = arg('durability');
const ONLY = arg('only')?.split(',');

/** Samples the child's VmRSS every 20 ms; VmHWM (the kernel's own peak) is read at the end too. */
function sampler(pid: number): { stop(): { peak: number; samples: number } } {
  let peak = 0;
  let samples = 0;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, memoryOf(pid).rss);
      samples++;
    } catch {}
  }, 20);
  return {
    stop: () => {
      clearInterval(timer);
      return { peak: Math.max(peak, memoryOf(pid).hwm), samples };
    },
  };
}

async function startServer(dir: string): Promise<Child> {
  const args = [CLI, 'run', '127.0.0.1:0', '--kv-store', join(dir, 'kv.db'), '--blob-store', join(dir, 'blob.db')];
  if (BUDGET) args.push('--memory-budget', BUDGET);
  if (DURABILITY) args.push('--durability', DURABILITY);
  return startChild(process.execPath, args, dir);
}

const blob = Buffer.alloc(MiB, 0xab);
const storeReq = (): blobPb.StoreRequest => ({ bytes: blob, metadata: undefined, transactionId: undefined });

/** Reads a stream's answers one every `ms` milliseconds (pause/resume), until it ends. */
function readSlowly<Req, Res>(call: ClientDuplexStream<Req, Res>, ms: number): Promise<number> {
  return new Promise((res, rej) => {
    let n = 0;
    call.on('data', () => {
      n++;
      call.pause();
      setTimeout(() => call.resume(), ms);
    });
    call.on('error', rej);
    call.on('end', () => res(n));
  });
}

async function storeBlobs(addr: string, count: number): Promise<bigint[]> {
  const db = connect(addr);
  const ids: bigint[] = [];
  const call = db.blob.store();
  call.on('data', (r: blobPb.StoreResponse) => ids.push(r.id));
  await pump(call, count, storeReq);
  db.close();
  return ids;
}

const scenarios: Record<string, (addr: string) => Promise<string>> = {
  single: async (addr) => {
    const ids = await storeBlobs(addr, 200);
    return `${ids.length} blobs stored`;
  },
  // The same, written without waiting for 'drain': the client buffers, the server reads at its pace.
  'single-nowait': async (addr) => {
    const db = connect(addr);
    const call = db.blob.store();
    let n = 0;
    const done = new Promise<void>((res, rej) => {
      call.on('data', () => n++);
      call.on('error', rej);
      call.on('end', () => res());
    });
    for (let i = 0; i < 200; i++) call.write(storeReq());
    call.end();
    await done;
    db.close();
    return `${n} blobs stored`;
  },
  flood: async (addr) => {
    const conns = Array.from({ length: 8 }, () =>
      connect(addr, { clientOptions: { 'grpc.use_local_subchannel_pool': 1 } }),
    );
    await Promise.all(Array.from({ length: 32 }, (_, s) => pump(conns[s % 8]!.blob.store(), 16, storeReq)));
    for (const c of conns) c.close();
    return '32 × 16 blobs stored';
  },
  'slow-get': async (addr) => {
    const ids = await storeBlobs(addr, 20);
    const db = connect(addr);
    const call = db.blob.get();
    const read = readSlowly(call, 10);
    for (let i = 0; i < 200; i++) call.write({ id: ids[i % ids.length]!, transactionId: undefined });
    call.end();
    const n = await read;
    db.close();
    return `${n} answers read`;
  },
  'slow-query': async (addr) => {
    await storeBlobs(addr, 20);
    const db = connect(addr);
    const call = db.query.query();
    const read = readSlowly(call, 10);
    const sql = 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT data FROM blob, n';
    call.write({ query: sql, target: TargetStore.BLOB });
    call.end();
    const n = await read;
    db.close();
    return `${n} rows read`;
  },
};

for (const [name, run] of Object.entries(scenarios)) {
  if (ONLY && !ONLY.includes(name)) continue;
  const dir = mkdtempSync(join(tmpdir(), 'buffdb-memory-'));
  const server = await startServer(dir);
  const idle = memoryOf(server.pid).rss;
  const s = sampler(server.pid);
  const what = await run(server.addr);
  const { peak, samples } = s.stop();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
  const line = `${name}: peak ${peak.toFixed(0)} MiB (idle ${idle.toFixed(0)} MiB, ${samples} samples; ${what})`;
  log(line);
  process.stdout.write(`${line}\n`);
}
