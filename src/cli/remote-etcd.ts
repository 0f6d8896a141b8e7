/**
 * `kv list`, `kv watch` and `kv set --ttl` against a running server (`--addr`): the same EtcdKvApi
 * as on a store file, over the server's etcd services (KV Range/Put, Lease, Watch), with the same
 * TLS and token handling as the other remote commands.
 */
import type { ServiceError } from '@grpc/grpc-js';
import type { KvRecord } from '../backends/backend.js';
import { connectEtcd } from '../client/etcd.js';
import type {
  LeaseGrantResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
} from '../generated/etcd/etcdserverpb/rpc.js';
import type { KeyValue, Event as PbEvent } from '../generated/etcd/mvccpb/kv.js';
import type { KvEvent } from '../store/kv/history.js';
import type { RangeArgs } from '../store/kv/kv-api.js';
import type { EtcdKvApi } from './kv-etcd-commands.js';
import { channelCredentials, toCliError, tokenMetadata } from './remote.js';
import type { RemoteTarget } from './store-access.js';

const ORDERS = { none: 0, ascend: 1, descend: 2 } as const;
const TARGETS = { key: 0, version: 1, create: 2, mod: 3, value: 4 } as const;

function record(kv: KeyValue): KvRecord {
  return {
    key: kv.key,
    value: kv.value,
    createRev: Number(kv.createRevision),
    modRev: Number(kv.modRevision),
    version: Number(kv.version),
    lease: kv.lease,
  };
}

function event(e: PbEvent): KvEvent {
  return {
    type: e.type === 1 ? 'delete' : 'put',
    kv: record(e.kv!),
    sub: 0,
    prev: e.prevKv ? record(e.prevKv) : undefined,
  };
}

/** The end of a span as etcd's range_end: `\0` for "every key from start on". */
const rangeEnd = (end: Buffer | undefined): Buffer => end ?? Buffer.of(0);

export async function withRemoteKvApi<T>(target: RemoteTarget, work: (api: EtcdKvApi) => Promise<T>): Promise<T> {
  const clients = connectEtcd(target.addr, channelCredentials(target));
  const meta = tokenMetadata(target);
  const fail = (err: ServiceError) => toCliError(err, target.addr, target.token !== undefined);
  const unary = <Res>(start: (done: (err: ServiceError | null, res?: Res) => void) => unknown): Promise<Res> =>
    new Promise((resolve, reject) => {
      start((err, res) => (err ? reject(fail(err)) : resolve(res!)));
    });
  const api: EtcdKvApi = {
    range: async (args: RangeArgs) => {
      const req: RangeRequest = {
        key: args.span.start,
        rangeEnd: rangeEnd(args.span.end),
        limit: BigInt(args.limit),
        revision: BigInt(args.revision),
        sortOrder: ORDERS[args.sortOrder],
        sortTarget: TARGETS[args.sortTarget],
        serializable: false,
        keysOnly: args.keysOnly,
        countOnly: args.countOnly,
        minModRevision: BigInt(args.minModRev),
        maxModRevision: BigInt(args.maxModRev),
        minCreateRevision: BigInt(args.minCreateRev),
        maxCreateRevision: BigInt(args.maxCreateRev),
      };
      const res = await unary<RangeResponse>((done) => clients.kv.range(req, meta, done));
      return {
        rev: Number(res.header?.revision ?? 0),
        kvs: res.kvs.map(record),
        more: res.more,
        count: Number(res.count),
      };
    },
    put: async (args) => {
      const req: PutRequest = {
        key: args.key,
        value: args.value,
        lease: args.lease,
        prevKv: args.prevKv,
        ignoreValue: args.ignoreValue,
        ignoreLease: args.ignoreLease,
      };
      const res = await unary<PutResponse>((done) => clients.kv.put(req, meta, done));
      return { rev: Number(res.header?.revision ?? 0), prevKv: res.prevKv ? record(res.prevKv) : undefined };
    },
    grantLease: async (ttl) =>
      (await unary<LeaseGrantResponse>((done) => clients.lease.leaseGrant({ TTL: BigInt(ttl), ID: 0n }, meta, done)))
        .ID,
    watch: (spec, sink) => {
      const call = clients.watch.watch(meta);
      call.on(
        'data',
        (res: { events: PbEvent[]; canceled: boolean; compactRevision: bigint; cancelReason: string }) => {
          if (res.compactRevision > 0n) return sink.compacted(Number(res.compactRevision));
          if (res.events.length > 0 && !sink.deliver(res.events.map(event))) call.pause();
        },
      );
      call.on('error', (err: ServiceError) => {
        if (err.code !== 1) sink.failed(fail(err) as never);
      });
      call.write({
        createRequest: {
          key: spec.span.start,
          rangeEnd: rangeEnd(spec.span.end),
          startRevision: BigInt(spec.startRev),
          progressNotify: false,
          filters: [...(spec.noPut ? [0] : []), ...(spec.noDelete ? [1] : [])],
          prevKv: false,
          watchId: 0n,
          fragment: false,
        },
      });
      return { resume: () => call.resume(), stop: () => call.cancel() };
    },
  };
  try {
    return await work(api);
  } finally {
    clients.close();
  }
}
