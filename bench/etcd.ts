/**
 * etcd as a peer reference: its v3 gRPC KV API (unary Put/Range, so "concurrency" is requests in
 * flight), spoken with grpc-js and two hand-encoded messages so no etcd client package is needed.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { type Client, credentials, makeGenericClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { CLIENT_OPTIONS } from './lib.js';

export function etcdBinary(): string | undefined {
  const res = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' });
  const path = res.stdout.trim();
  return res.status === 0 && path ? path : undefined;
}

export function freePort(): Promise<number> {
  return listenOnce(0);
}

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => {
      const bound = (srv.address() as { port: number }).port;
      srv.close(() => resolve(bound));
    });
  });
}

/**
 * A free port below the kernel's ephemeral range (32768+), for a process that is killed and must
 * come back on the same address: no port-0 socket of another program takes it in between.
 */
export async function stablePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await listenOnce(20_000 + Math.floor(Math.random() * 12_000));
    } catch (err) {
      if (attempt > 20) throw err;
    }
  }
}

export interface Etcd {
  child: ChildProcess;
  addr: string;
  stop(): Promise<void>;
}

/** Starts a single-member etcd with default (durable: fsync per raft commit) settings. */
export async function startEtcd(bin: string, dir: string): Promise<Etcd> {
  const client = await freePort();
  const peer = await freePort();
  const child = spawn(
    bin,
    [
      '--name',
      'bench',
      '--data-dir',
      join(dir, 'etcd'),
      '--listen-client-urls',
      `http://127.0.0.1:${client}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${client}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-cluster',
      `bench=http://127.0.0.1:${peer}`,
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const addr = `127.0.0.1:${client}`;
  const kv = etcdKv(addr);
  // Ready when a put succeeds.
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`etcd exited: ${stderr}`);
    try {
      await kv.put(Buffer.from('ready'), Buffer.from('1'));
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  kv.close();
  return {
    child,
    addr,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

const identity = (b: Buffer): Buffer => b;

export function etcdKv(addr: string): {
  put(k: Buffer, v: Buffer): Promise<void>;
  get(k: Buffer): Promise<void>;
  close(): void;
} {
  const definition = {
    put: {
      path: '/etcdserverpb.KV/Put',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
    range: {
      path: '/etcdserverpb.KV/Range',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  };
  const Ctor = makeGenericClientConstructor(definition as unknown as ServiceDefinition, 'etcdserverpb.KV');
  type Unary = (req: Buffer, cb: (err: Error | null, res?: Buffer) => void) => void;
  const c = new Ctor(addr, credentials.createInsecure(), CLIENT_OPTIONS) as unknown as Client & {
    put: Unary;
    range: Unary;
  };
  const call = (m: Unary, req: Buffer): Promise<void> =>
    new Promise((resolve, reject) => m.call(c, req, (err) => (err ? reject(err) : resolve())));
  return {
    // PutRequest { bytes key = 1; bytes value = 2; }
    put: (k, v) => call(c.put, Buffer.from(new BinaryWriter().uint32(10).bytes(k).uint32(18).bytes(v).finish())),
    // RangeRequest { bytes key = 1; }
    get: (k) => call(c.range, Buffer.from(new BinaryWriter().uint32(10).bytes(k).finish())),
    close: () => c.close(),
  };
}

/** `total` requests with `inFlight` outstanding at a time; resolves with wall milliseconds. */
export async function etcdLoad(op: (i: number) => Promise<void>, total: number, inFlight: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < total) await op(next++);
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return performance.now() - t0;
}
