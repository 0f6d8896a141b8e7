/**
 * Load: `buffdb run` as a child process, N concurrent clients (default 64, each on its own
 * connection) mixing every RPC for a bounded time on loopback. Expects zero errors; samples the
 * server's RSS every second (flat = no leak) and prints latency percentiles per RPC.
 *
 *   npm run load -- [--seconds 60] [--clients 64] [--backend sqlite] [--durability full]
 *   TLS and auth: --tls-cert F --tls-key F --tls-ca F --auth-file F --token T (scripts/connection.ts)
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InterceptingCall, type Interceptor, type ServiceError } from '@grpc/grpc-js';
import { loadBackend } from '../src/backends/index.js';
import { type BuffDbClients, connect } from '../src/client/network.js';
import { TargetStore } from '../src/generated/query.js';
import { CONNECTION_ARGS, type Connection, connection, PLAIN } from './connection.js';

const CLI = resolve(import.meta.dirname, '..', 'dist', 'cli', 'main.js');

export interface LoadOptions {
  seconds: number;
  clients: number;
  backend: string;
  durability: 'full' | 'normal';
  log?: (l: string) => void;
  /** TLS and token (scripts/connection.ts); plaintext without auth by default. */
  connection?: Connection;
}
export interface LoadResult {
  calls: number;
  messages: number;
  errors: string[];
  seconds: number;
  latencyMs: Record<string, { n: number; p50: number; p99: number; max: number }>;
  rssMiB: number[];
}

/** A client interceptor adding the token metadata to every call. */
function withMetadata(conn: Connection): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        metadata.merge(conn.metadata());
        next(metadata, listener);
      },
    });
}

function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;

function bidi<Req, Res>(call: import('@grpc/grpc-js').ClientDuplexStream<Req, Res>, reqs: Req[]): Promise<Res[]> {
  return new Promise((res, rej) => {
    const out: Res[] = [];
    call.on('data', (d: Res) => out.push(d));
    call.on('error', (e: ServiceError) => rej(e));
    call.on('end', () => res(out));
    for (const r of reqs) call.write(r);
    call.end();
  });
}

function fold<Req>(
  start: (cb: (err: ServiceError | null, v?: boolean) => void) => import('@grpc/grpc-js').ClientWritableStream<Req>,
  reqs: Req[],
): Promise<boolean> {
  return new Promise((res, rej) => {
    const call = start((err, v) => (err ? rej(err) : res(v ?? false)));
    call.on('error', () => {});
    for (const r of reqs) call.write(r);
    call.end();
  });
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const log = options.log ?? ((l: string) => console.log(l));
  const { capabilities } = await loadBackend(options.backend);
  const dir = mkdtempSync(join(tmpdir(), 'buffdb-load-'));
  const child = spawn(
    process.execPath,
    [
      CLI,
      'run',
      '127.0.0.1:0',
      '--backend',
      options.backend,
      '--durability',
      options.durability,
      '--kv-store',
      join(dir, 'kv.db'),
      '--blob-store',
      join(dir, 'blob.db'),
      ...(options.connection ?? PLAIN).serverArgs,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const addr = await new Promise<string>((res, rej) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) res(m[1]!);
    });
    void exited.then(() => rej(new Error(`server exited at start: ${stderr}`)));
  });
  log(
    `load: ${options.clients} clients for ${options.seconds} s against ${addr} (backend ${options.backend}, durability ${options.durability})`,
  );

  const latencies = new Map<string, number[]>();
  const errors: string[] = [];
  let calls = 0;
  let messages = 0;
  const rssSamples: number[] = [rss(child.pid!)];
  const sampler = setInterval(() => rssSamples.push(rss(child.pid!)), 1000);
  const deadline = Date.now() + options.seconds * 1000;

  async function timed<T>(name: string, n: number, fn: () => Promise<T>): Promise<T | undefined> {
    const t0 = performance.now();
    try {
      const r = await fn();
      const list = latencies.get(name) ?? [];
      list.push(performance.now() - t0);
      latencies.set(name, list);
      calls++;
      messages += n;
      return r;
    } catch (err) {
      const e = err as ServiceError;
      errors.push(`${name}: ${e.code} ${e.details ?? e.message}`);
      return undefined;
    }
  }

  async function client(c: BuffDbClients, who: number): Promise<void> {
    const keys: string[] = [];
    const blobIds: bigint[] = [];
    let n = 0;
    // Seed a few keys and blobs so reads never miss.
    await timed('kv.set', 5, () =>
      bidi(
        c.kv.set(),
        Array.from({ length: 5 }, (_, i) => {
          keys.push(`c${who}-${i}`);
          return { key: `c${who}-${i}`, value: `v${i}` };
        }),
      ),
    );
    const stored = await timed('blob.store', 2, () =>
      bidi(c.blob.store(), [{ bytes: Buffer.alloc(1024, who) }, { bytes: Buffer.alloc(2048, who), metadata: 'm' }]),
    );
    for (const s of stored ?? []) blobIds.push(s.id);
    while (Date.now() < deadline) {
      n++;
      const op = n % 12;
      const key = keys[n % keys.length]!;
      if (op === 0 || op === 1) {
        const batch = Array.from({ length: 1 + (n % 10) }, (_, i) => ({
          key: `c${who}-${(n + i) % 100}`,
          value: `value-${n}-${i}`,
        }));
        for (const b of batch) if (!keys.includes(b.key)) keys.push(b.key);
        await timed('kv.set', batch.length, () => bidi(c.kv.set(), batch));
      } else if (op === 2 || op === 3) {
        await timed('kv.get', 3, () => bidi(c.kv.get(), [{ key }, { key: keys[0]! }, { key: keys[keys.length - 1]! }]));
      } else if (op === 4) {
        const victim = keys.pop()!;
        if (keys.length < 3) {
          keys.push(victim);
          continue;
        }
        await timed('kv.delete', 1, () => bidi(c.kv.delete(), [{ key: victim }]));
      } else if (op === 5) {
        await timed(n % 2 ? 'kv.eq' : 'kv.not-eq', 2, () =>
          fold((cb) => (n % 2 ? c.kv.eq(cb) : c.kv.notEq(cb)), [{ key }, { key: keys[0]! }]),
        );
      } else if (op === 6) {
        const s = await timed('blob.store', 1, () =>
          bidi(c.blob.store(), [{ bytes: Buffer.alloc(512 + (n % 8192), n % 256), metadata: `m${n}` }]),
        );
        for (const x of s ?? []) blobIds.push(x.id);
      } else if (op === 7) {
        await timed('blob.get', 2, () =>
          bidi(c.blob.get(), [{ id: blobIds[0]! }, { id: blobIds[blobIds.length - 1]! }]),
        );
      } else if (op === 8) {
        const id = blobIds[n % blobIds.length]!;
        await timed('blob.update', 1, () =>
          bidi(c.blob.update(), [
            { id, bytes: Buffer.alloc(256, n % 256), shouldUpdateMetadata: n % 2 === 0, metadata: `u${n}` },
          ]),
        );
      } else if (op === 9) {
        if (blobIds.length > 4) {
          const id = blobIds.splice(1, 1)[0]!;
          await timed('blob.delete', 1, () => bidi(c.blob.delete(), [{ id }]));
        } else {
          await timed(n % 2 ? 'blob.eq-data' : 'blob.not-eq-data', 2, () =>
            fold(
              (cb) => (n % 2 ? c.blob.eqData(cb) : c.blob.notEqData(cb)),
              [{ id: blobIds[0]! }, { id: blobIds[1]! }],
            ),
          );
        }
      } else if (op === 10 && capabilities.sqlDialect) {
        await timed('query.query', 1, () =>
          bidi(c.query.query(), [
            { query: `SELECT key, value FROM kv WHERE key LIKE 'c${who}-%' LIMIT 20`, target: TargetStore.KV },
          ]),
        );
      } else if (op === 11 && capabilities.sqlDialect) {
        await timed('query.execute', 1, () =>
          bidi(c.query.execute(), [
            { query: `UPDATE kv SET value = 'x${n}' WHERE key = '${key}'`, target: TargetStore.KV },
          ]),
        );
      } else {
        await timed('kv.get', 1, () => bidi(c.kv.get(), [{ key }]));
      }
    }
  }

  const conn = options.connection ?? PLAIN;
  const conns = Array.from({ length: options.clients }, () =>
    connect(addr, { credentials: conn.credentials, clientOptions: { interceptors: [withMetadata(conn)] } }),
  );
  const started = Date.now();
  try {
    await Promise.all(conns.map((c, who) => client(c, who)));
  } finally {
    clearInterval(sampler);
    rssSamples.push(rss(child.pid!));
    for (const c of conns) c.close();
    child.kill('SIGTERM');
  }
  const code = await exited;
  if (code !== 0) errors.push(`server exit status ${code} after SIGTERM: ${stderr.slice(-500)}`);
  rmSync(dir, { recursive: true, force: true });
  const seconds = (Date.now() - started) / 1000;
  const latencyMs: LoadResult['latencyMs'] = {};
  const all: number[] = [];
  for (const [name, list] of [...latencies].sort()) {
    list.sort((a, b) => a - b);
    all.push(...list);
    latencyMs[name] = { n: list.length, p50: pct(list, 0.5), p99: pct(list, 0.99), max: list[list.length - 1]! };
  }
  all.sort((a, b) => a - b);
  latencyMs.all = { n: all.length, p50: pct(all, 0.5), p99: pct(all, 0.99), max: all[all.length - 1] ?? 0 };
  const result = { calls, messages, errors, seconds, latencyMs, rssMiB: rssSamples };
  log(
    `load: ${calls} calls (${messages} messages) in ${seconds.toFixed(1)} s = ${(calls / seconds).toFixed(0)} calls/s, ` +
      `${(messages / seconds).toFixed(0)} messages/s; ${errors.length} errors`,
  );
  log('  rpc               calls     p50 ms   p99 ms   max ms');
  for (const [name, l] of Object.entries(latencyMs)) {
    log(
      `  ${name.padEnd(16)} ${String(l.n).padStart(6)} ${l.p50.toFixed(2).padStart(10)} ${l.p99.toFixed(2).padStart(8)} ${l.max.toFixed(1).padStart(8)}`,
    );
  }
  const q = Math.max(1, Math.floor(rssSamples.length / 4));
  const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  log(
    `  server RSS MiB: start ${rssSamples[0]!.toFixed(0)}, first quarter avg ${avg(rssSamples.slice(0, q)).toFixed(0)}, ` +
      `last quarter avg ${avg(rssSamples.slice(-q)).toFixed(0)}, max ${Math.max(...rssSamples).toFixed(0)} (${rssSamples.length} samples)`,
  );
  const step = Math.max(1, Math.round(rssSamples.length / 12));
  log(
    `  server RSS MiB over time: ${rssSamples
      .filter((_, i) => i % step === 0)
      .map((x) => x.toFixed(0))
      .join(' ')}`,
  );
  for (const e of errors.slice(0, 20)) log(`  ERROR ${e}`);
  return result;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      clients: { type: 'string', default: '64' },
      backend: { type: 'string', default: 'sqlite' },
      durability: { type: 'string', default: 'full' },
      ...CONNECTION_ARGS,
    },
  });
  const seconds = Number(values.seconds);
  if (!(seconds > 0 && seconds <= 3600)) {
    console.error('load: --seconds must be between 1 and 3600');
    process.exit(2);
  }
  const result = await runLoad({
    seconds,
    clients: Number(values.clients),
    backend: values.backend,
    durability: values.durability === 'normal' ? 'normal' : 'full',
    connection: connection(values),
  });
  process.exit(result.errors.length > 0 ? 1 : 0);
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) await main();
