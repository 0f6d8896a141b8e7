/**
 * Small probes of running sync sites, shared by the sync bench (bench/sync.ts) and the sync
 * torture (scripts/sync-torture.ts): an edge's Sync/Status, and key counts read over the etcd API.
 */
import { credentials, Metadata } from '@grpc/grpc-js';
import { connectEtcd, type EtcdClients } from '../src/client/etcd.js';
import { RangeRequest, type RangeResponse } from '../src/generated/etcd/etcdserverpb/rpc.js';
import { type StatusResponse, SyncClient } from '../src/generated/sync.js';

/** One `buffdb.sync.Sync/Status` call (the figures of `buffdb sync status`). */
export function syncStatus(addr: string, deadlineMs = 5000): Promise<StatusResponse> {
  const client = new SyncClient(addr, credentials.createInsecure());
  return new Promise<StatusResponse>((resolve, reject) =>
    client.status({}, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
      err ? reject(err) : resolve(res!),
    ),
  ).finally(() => client.close());
}

/** The key after every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.of(0);
}

function range(etcd: EtcdClients, req: RangeRequest): Promise<RangeResponse> {
  return new Promise((resolve, reject) =>
    etcd.kv.range(req, new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
      err ? reject(err) : resolve(res!),
    ),
  );
}

/** Reads keys of one server over its etcd API (one channel, reused). */
export class KeyProbe {
  private readonly etcd: EtcdClients;

  constructor(addr: string) {
    this.etcd = connectEtcd(addr);
  }

  /** How many keys start with `prefix`. */
  async count(prefix: string): Promise<number> {
    const key = Buffer.from(prefix);
    const res = await range(this.etcd, RangeRequest.fromPartial({ key, rangeEnd: prefixEnd(key), countOnly: true }));
    return Number(res.count);
  }

  /** The value of `key` (utf8), or undefined. */
  async get(key: string): Promise<string | undefined> {
    const res = await range(this.etcd, RangeRequest.fromPartial({ key: Buffer.from(key) }));
    return res.kvs[0]?.value.toString('utf8');
  }

  close(): void {
    this.etcd.close();
  }
}
