/**
 * The sites of the sync torture (./sync-torture.ts): `buffdb run` child processes on fixed
 * loopback ports (so a site killed with SIGKILL comes back on the same address and files), and the
 * writes a client makes to one site — Kv Set on a long-lived stream, Kv Delete, etcd Put and
 * DeleteRange — each resolving to acknowledged, a no-op (nothing to delete), or throwing (uncertain).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ClientDuplexStream, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { connectEtcd, type EtcdClients } from '../src/client/etcd.js';
import { type BuffDbClients, connect } from '../src/client/network.js';
import {
  DeleteRangeRequest,
  PutRequest,
  RangeRequest,
  type RangeResponse,
  TxnRequest,
  type TxnResponse,
} from '../src/generated/etcd/etcdserverpb/rpc.js';
import type * as kvPb from '../src/generated/kv.js';
import { prefixEnd } from './sync-sites.js';

const CLI = resolve(import.meta.dirname, '..', 'dist', 'cli', 'main.js');
const CALL_MS = 15_000;

/** A write's outcome when the site answered: done, or nothing to delete. */
export type Outcome = 'acked' | 'noop';

/** One pending Set on the shared stream (answers come in order). */
interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
}

export class Site {
  child: ChildProcess | undefined;
  up = false;
  /** Starts so far; a writer that saw an older epoch knows the process changed. */
  epoch = 0;
  stderrTail = '';
  private clients: BuffDbClients | undefined;
  private etcd: EtcdClients | undefined;
  private setStream: ClientDuplexStream<kvPb.SetRequest, kvPb.SetResponse> | undefined;
  private pending: Pending[] = [];

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly dir: string,
    private readonly extra: string[],
  ) {}

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts `buffdb run` on this site's address and files (retrying while the port is still held). */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.spawnOnce();
        break;
      } catch (err) {
        if (attempt >= 10) throw err;
        await sleep(300);
      }
    }
    this.clients = connect(this.addr);
    this.etcd = connectEtcd(this.addr);
    this.epoch++;
    this.up = true;
  }

  private spawnOnce(): Promise<void> {
    const args = [CLI, 'run', this.addr, '--kv-store', join(this.dir, `${this.name}-kv.db`)];
    args.push('--blob-store', join(this.dir, `${this.name}-blob.db`), ...this.extra);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let out = '';
    child.stderr!.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-4000);
    });
    return new Promise((res, rej) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        rej(new Error(`${this.name} did not listen within 30 s: ${this.stderrTail}`));
      }, 30_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (/listening on /.test(out)) {
          clearTimeout(timer);
          res();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        rej(new Error(`${this.name} exited (${code ?? signal}) before listening: ${this.stderrTail.slice(-500)}`));
      });
    });
  }

  /** Whether the process died on its own (not by our kill): a crash. */
  crashed(): boolean {
    return this.up && this.child !== undefined && (this.child.exitCode !== null || this.child.signalCode !== null);
  }

  /** `kill -9`, and waits for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.up = false;
    const child = this.child;
    this.closeClients();
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  }

  private closeClients(): void {
    for (const p of this.pending.splice(0)) p.reject(new Error(`${this.name} went down`));
    this.setStream?.cancel();
    this.setStream = undefined;
    this.clients?.close();
    this.etcd?.close();
  }

  private stream(): ClientDuplexStream<kvPb.SetRequest, kvPb.SetResponse> {
    if (this.setStream) return this.setStream;
    const call = this.clients!.kv.set();
    const failAll = (err: Error): void => {
      if (this.setStream === call) this.setStream = undefined;
      for (const p of this.pending.splice(0)) p.reject(err);
    };
    call.on('data', () => this.pending.shift()?.resolve());
    call.on('error', failAll);
    call.on('end', () => failAll(new Error('Set stream ended')));
    this.setStream = call;
    return call;
  }

  /** Kv Set on the site's shared stream. */
  set(key: string, value: string): Promise<Outcome> {
    if (!this.up) return Promise.reject(new Error(`${this.name} is down`));
    return new Promise((res, rej) => {
      this.pending.push({ resolve: () => res('acked'), reject: rej });
      this.stream().write({ key, value, transactionId: undefined });
    });
  }

  /** Kv Delete on a stream of its own (NOT_FOUND, which ends the stream, is a no-op). */
  delete(key: string): Promise<Outcome> {
    if (!this.up) return Promise.reject(new Error(`${this.name} is down`));
    const call = this.clients!.kv.delete(new Metadata(), { deadline: Date.now() + CALL_MS });
    return new Promise((res, rej) => {
      let answered = false;
      call.on('data', () => {
        answered = true;
      });
      call.on('error', (err: ServiceError) => (err.code === status.NOT_FOUND ? res('noop') : rej(err)));
      call.on('end', () => (answered ? res('acked') : rej(new Error('Delete ended without an answer'))));
      call.write({ key, transactionId: undefined });
      call.end();
    });
  }

  etcdPut(key: string, value: string): Promise<Outcome> {
    if (!this.up) return Promise.reject(new Error(`${this.name} is down`));
    const req = PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) });
    return new Promise((res, rej) =>
      this.etcd!.kv.put(req, new Metadata(), { deadline: Date.now() + CALL_MS }, (err) =>
        err ? rej(err) : res('acked'),
      ),
    );
  }

  etcdDelete(key: string): Promise<Outcome> {
    if (!this.up) return Promise.reject(new Error(`${this.name} is down`));
    const req = DeleteRangeRequest.fromPartial({ key: Buffer.from(key) });
    return new Promise((res, rej) =>
      this.etcd!.kv.deleteRange(req, new Metadata(), { deadline: Date.now() + CALL_MS }, (err, r) =>
        err ? rej(err) : res(Number(r!.deleted) > 0 ? 'acked' : 'noop'),
      ),
    );
  }

  /** One etcd Txn writing (or deleting) every key of `keys`: a transaction that must travel whole. */
  etcdTxn(keys: string[], value: string | null): Promise<Outcome> {
    if (!this.up) return Promise.reject(new Error(`${this.name} is down`));
    const success = keys.map((k) =>
      value === null
        ? { requestDeleteRange: DeleteRangeRequest.fromPartial({ key: Buffer.from(k) }) }
        : { requestPut: PutRequest.fromPartial({ key: Buffer.from(k), value: Buffer.from(value) }) },
    );
    const req = TxnRequest.fromPartial({ success });
    return new Promise((res, rej) =>
      this.etcd!.kv.txn(req, new Metadata(), { deadline: Date.now() + CALL_MS }, (err, r?: TxnResponse) => {
        if (err) return rej(err);
        const deleted = r!.responses.reduce((n, op) => n + Number(op.responseDeleteRange?.deleted ?? 0), 0);
        res(value !== null || deleted > 0 ? 'acked' : 'noop');
      }),
    );
  }

  /** Every key under `prefix` with its value, read at one revision. */
  rangePrefix(prefix: string): Promise<[key: string, value: string][]> {
    if (!this.up) return Promise.reject(new Error(`${this.name} is down`));
    const key = Buffer.from(prefix);
    const req = RangeRequest.fromPartial({ key, rangeEnd: prefixEnd(key) });
    return new Promise((res, rej) =>
      this.etcd!.kv.range(req, new Metadata(), { deadline: Date.now() + CALL_MS }, (err, r?: RangeResponse) =>
        err ? rej(err) : res(r!.kvs.map((kv) => [kv.key.toString('utf8'), kv.value.toString('utf8')])),
      ),
    );
  }
}
