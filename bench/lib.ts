/** Bench plumbing: child servers, stream pumps, statistics. No buffdb logic lives here. */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import {
  Client,
  type ClientDuplexStream,
  credentials,
  makeGenericClientConstructor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { serializer } from '../src/server/codec.js';

/** One row of the bench table. */
export interface Row {
  group: string;
  name: string;
  /** buffdb's figure and the reference's, in `unit` (medians). */
  value: number;
  reference?: number;
  referenceName?: string;
  unit: string;
  /** Median of the per-round ratios value/reference (higher is better unless `lowerIsBetter`). */
  ratio?: number;
  lowerIsBetter?: boolean;
  target?: string;
  pass?: boolean;
  note?: string;
}

export const MAX_MESSAGE = 64 * 1024 * 1024;
export const CLIENT_OPTIONS = {
  'grpc.max_receive_message_length': MAX_MESSAGE,
  'grpc.max_send_message_length': MAX_MESSAGE,
};

/**
 * grpc-js client options that remove the client's own bottleneck: its retry buffer (1 MiB per call
 * by default) is re-sliced on every message sent, which costs O(buffered messages) per message
 * for small messages. With 64 KiB the server, not the client, limits a stream.
 */
export const TUNED_CLIENT = { 'grpc.per_rpc_retry_buffer_size': 64 * 1024 };

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

export interface Child {
  child: ChildProcess;
  addr: string;
  pid: number;
  stderr: () => string;
  stop(): Promise<void>;
}

/** Starts a server process that prints "listening on ADDR" on stdout, and waits for that line. */
export function startChild(cmd: string, args: string[], cwd: string): Promise<Child> {
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  return new Promise((resolve, reject) => {
    const onExit = (): void => reject(new Error(`${args.join(' ')} exited before listening: ${stderr}`));
    child.once('exit', onExit);
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /listening on (\S+)/.exec(stdout);
      if (m && child.listenerCount('exit') > 0) {
        child.off('exit', onExit);
        resolve({
          child,
          addr: m[1]!,
          pid: child.pid!,
          stderr: () => stderr,
          stop: async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
            await exited;
            clearTimeout(timer);
          },
        });
        stdout = '';
      }
    });
  });
}

/** Peak resident set (VmHWM) and current RSS of a process, in MiB. */
export function memoryOf(pid: number): { hwm: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { hwm: kib('VmHWM') / 1024, rss: kib('VmRSS') / 1024 };
}

/**
 * Writes `n` requests on one bidi stream (respecting backpressure), half-closes, and resolves with
 * the milliseconds from the first write to the end of the stream once all `n` answers arrived.
 */
export function pump<Req>(
  call: ClientDuplexStream<Req, unknown>,
  n: number,
  make: (i: number) => Req,
): Promise<number> {
  return new Promise((resolve, reject) => {
    let received = 0;
    let i = 0;
    const t0 = performance.now();
    call.on('data', () => {
      received++;
    });
    call.on('error', reject);
    call.on('end', () => {
      if (received === n) resolve(performance.now() - t0);
      else reject(new Error(`stream ended after ${received} of ${n} answers`));
    });
    const writeMore = (): void => {
      while (i < n) {
        if (!call.write(make(i++))) {
          call.once('drain', writeMore);
          return;
        }
      }
      call.end();
    };
    writeMore();
  });
}

/** `streams` concurrent pumps of `perStream` messages each; resolves with the wall milliseconds. */
export async function pumpMany<Req>(
  open: () => ClientDuplexStream<Req, unknown>,
  streams: number,
  perStream: number,
  make: (stream: number, i: number) => Req,
): Promise<number> {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: streams }, (_, s) => pump(open(), perStream, (i) => make(s, i))));
  return performance.now() - t0;
}

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

/**
 * A client of the bare echo server whose messages are `codec`'s: the client encodes (with the same
 * serializer buffdb's client uses) and decodes exactly as a buffdb client does; the server only
 * echoes bytes.
 */
export function echoClient<T>(
  addr: string,
  codec: Codec<T>,
  options: Record<string, unknown> = {},
): { open(): ClientDuplexStream<T, T>; close(): void } {
  const serialize = serializer(codec);
  const definition = {
    echo: {
      path: '/bench.Echo/Echo',
      requestStream: true,
      responseStream: true,
      requestSerialize: serialize,
      requestDeserialize: (b: Buffer) => codec.decode(b),
      responseSerialize: serialize,
      responseDeserialize: (b: Buffer) => codec.decode(b),
    },
  };
  const Ctor = makeGenericClientConstructor(definition as unknown as ServiceDefinition, 'bench.Echo');
  const client = new Ctor(addr, credentials.createInsecure(), {
    ...CLIENT_OPTIONS,
    ...options,
  }) as unknown as Client & {
    echo(): ClientDuplexStream<T, T>;
  };
  return { open: () => client.echo(), close: () => client.close() };
}

/** A unary client of the echo server for `codec`'s messages: encodes and decodes as a real client does. */
export function echoUnaryClient<T>(addr: string, codec: Codec<T>): { call(message: T): Promise<void>; close(): void } {
  const serialize = serializer(codec);
  const client = new Client(addr, credentials.createInsecure(), CLIENT_OPTIONS);
  return {
    call: (message) =>
      new Promise((resolve, reject) =>
        client.makeUnaryRequest(
          '/bench.Echo/Unary',
          serialize,
          (b: Buffer) => codec.decode(b),
          message,
          (err) => (err ? reject(err) : resolve()),
        ),
      ),
    close: () => client.close(),
  };
}

/** Median wall milliseconds of running `cmd args` `runs` times (each must exit 0). */
export function wallTime(cmd: string, args: string[], runs: number, cwd: string): number[] {
  const times: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    const res = spawnSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const ms = performance.now() - t0;
    if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${res.status}: ${res.stderr.toString()}`);
    times.push(ms);
  }
  return times;
}

/** The 16-byte key of message i (same keys every round, so Get always finds what Set wrote). */
export function key16(prefix: string, i: number): string {
  const s = prefix + i.toString(36);
  return s.length >= 16 ? s.slice(-16) : s.padStart(16, '0');
}

export const VALUE_100 = 'v'.repeat(100);
