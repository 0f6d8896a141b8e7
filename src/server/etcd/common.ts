/**
 * What every etcd handler shares: the response header, the unary call shape, etcd's texts for
 * buffdb's own errors, UNIMPLEMENTED answers, and the registry that ends long-lived streams when
 * the server stops.
 */
import type { EventEmitter } from 'node:events';
import type { ServerUnaryCall, ServiceError, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import { asStoreError, type StoreError, shuttingDown, status, unavailable, unimplemented } from '../../errors.js';
import type { ResponseHeader } from '../../generated/etcd/etcdserverpb/rpc.js';
import type { KvStore } from '../../store/kv/kv-store.js';
import { DecodeFailure } from '../codec.js';
import { decodeError, toServiceError } from '../stream-handler.js';

/** buffdb is a single member that is always the leader: one raft term, for ever. */
export const RAFT_TERM = 1n;
/** The etcd server version buffdb reports (Maintenance.Status): the etcd API it follows. */
export const ETCD_SERVER_VERSION = '3.5.0';

/** `{cluster_id, member_id, revision, raft_term}`; the revision defaults to the current one. */
export function header(kv: KvStore, rev?: number): ResponseHeader {
  const s = kv.status();
  return { clusterId: s.clusterId, memberId: s.memberId, revision: BigInt(rev ?? s.rev), raftTerm: RAFT_TERM };
}

const SHUTTING_DOWN = shuttingDown().message;

/** A store error in etcd's words where etcd has words for it (clients match on the text). */
export function etcdError(err: unknown): StoreError {
  const e = asStoreError(err);
  if (e.code === status.UNAVAILABLE && e.message === SHUTTING_DOWN) return unavailable('etcdserver: server stopped');
  return e;
}

export function serviceError(err: unknown): ServiceError {
  return (err instanceof DecodeFailure ? decodeError(err) : toServiceError(etcdError(err))) as ServiceError;
}

/** A number from an int64 field, kept within the safe integers (beyond them nothing is exact anyway). */
export function safeNumber(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) return Number.MAX_SAFE_INTEGER;
  if (v < BigInt(Number.MIN_SAFE_INTEGER)) return Number.MIN_SAFE_INTEGER;
  return Number(v);
}

/** Serves a unary call: a request that did not decode is INVALID_ARGUMENT; `work` answers or throws. */
export function unary<Req, Res>(
  call: ServerUnaryCall<Req | DecodeFailure, Res>,
  callback: sendUnaryData<Res>,
  work: (req: Req) => Res | Promise<Res>,
): void {
  const req = call.request;
  if (req instanceof DecodeFailure) {
    callback(serviceError(req));
    return;
  }
  let result: Res | Promise<Res>;
  try {
    result = work(req);
  } catch (err) {
    callback(serviceError(err));
    return;
  }
  if (result instanceof Promise)
    result.then(
      (res) => callback(null, res),
      (err: unknown) => callback(serviceError(err)),
    );
  else callback(null, result);
}

type AnyHandler = (call: unknown, callback?: sendUnaryData<unknown>) => void;

/**
 * Handlers for every method of `definition` that answer UNIMPLEMENTED at once, naming the method
 * and `why`; `served` handlers replace them.
 */
export function withUnimplemented(
  service: string,
  definition: Record<string, { path: string; responseStream: boolean }>,
  why: string,
  served: UntypedServiceImplementation = {},
): UntypedServiceImplementation {
  const out: UntypedServiceImplementation = {};
  for (const [name, m] of Object.entries(definition)) {
    const method = m.path.slice(m.path.lastIndexOf('/') + 1);
    const err = toServiceError(unimplemented(`${service}/${method} is not served by buffdb: ${why}`));
    const refuse: AnyHandler = (call, callback) => {
      if (callback) callback(err as ServiceError);
      else (call as { emit(event: 'error', e: unknown): void }).emit('error', err);
    };
    out[name] = (served[name] ?? refuse) as UntypedServiceImplementation[string];
  }
  return out;
}

/** Long-lived etcd streams (watch, lease keep-alive): a server that stops ends them. */
export class OpenStreams {
  private readonly enders = new Set<() => void>();
  private stopped = false;

  /** Registers a stream's ender; returns the function that unregisters it. */
  add(end: () => void): () => void {
    if (this.stopped) {
      end();
      return () => {};
    }
    this.enders.add(end);
    return () => this.enders.delete(end);
  }

  /** Ends every open stream with etcd's "server stopped" (clients reconnect elsewhere or retry). */
  endAll(): void {
    this.stopped = true;
    for (const end of [...this.enders]) end();
    this.enders.clear();
  }
}

export const serverStopped = (): ServiceError =>
  toServiceError(unavailable('etcdserver: server stopped')) as ServiceError;

/** Registers a long-lived stream: ended with "server stopped" when the server stops, forgotten when it ends. */
export function trackStream(streams: OpenStreams, call: EventEmitter): void {
  const forget = streams.add(() => call.emit('error', serverStopped()));
  for (const event of ['cancelled', 'error', 'finish', 'close']) call.once(event, forget);
}
