/**
 * Everything a running buffdb server holds, read over gRPC as a client sees it, in a deterministic
 * order: two servers' dumps (an edge and its hub) compare with deepStrictEqual.
 */

import { type ServiceError, status } from '@grpc/grpc-js';
import { connectEtcd } from '../../src/client/etcd.js';
import { connect } from '../../src/client/network.js';
import { RangeRequest, type RangeResponse } from '../../src/generated/etcd/etcdserverpb/rpc.js';
import { TargetStore } from '../../src/generated/query.js';
import { unpackValue } from '../../src/server/any-values.js';
import { bidi } from './server.js';

export interface StoreDump {
  /** [key, value], both base64 of the bytes, in key byte order (the whole key space). */
  kv: [key: string, value: string][];
  /** [id (decimal), SHA-256 of the data (hex), metadata], by id. */
  blobs: [id: string, sha256: string, metadata: string | null][];
}

export interface DumpOptions {
  /**
   * The blob ids to read (ids that do not exist are left out, so a range 1..n will do). Unset:
   * every blob, listed by raw SQL `SELECT id FROM blob`, which only backends with SQL serve.
   */
  blobIds?: Iterable<bigint | number>;
  /** KV keys per Range page (default 1000). */
  pageSize?: number;
}

/** Dumps the KV key space (etcd Range, one revision across pages) and the blobs of the server at `address`. */
export async function dumpStore(address: string, options: DumpOptions = {}): Promise<StoreDump> {
  const etcd = connectEtcd(address, undefined, { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  const clients = connect(address);
  try {
    const kv = await dumpKv(etcd.kv.range.bind(etcd.kv), BigInt(options.pageSize ?? 1000));
    const ids = options.blobIds ? [...options.blobIds].map(BigInt) : await listBlobIds(clients.query);
    const blobs: StoreDump['blobs'] = [];
    for (const id of [...new Set(ids)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      const blob = await blobSummary(clients, id);
      if (blob) blobs.push(blob);
    }
    return { kv, blobs };
  } finally {
    etcd.close();
    clients.close();
  }
}

type Range = (req: RangeRequest, cb: (err: ServiceError | null, res?: RangeResponse) => void) => unknown;

async function dumpKv(range: Range, limit: bigint): Promise<StoreDump['kv']> {
  const out: StoreDump['kv'] = [];
  let key = Buffer.of(0);
  let revision = 0n;
  for (;;) {
    const req = RangeRequest.fromPartial({ key, rangeEnd: Buffer.of(0), limit, revision });
    const res = await new Promise<RangeResponse>((resolve, reject) =>
      range(req, (err, r) => (err ? reject(err) : resolve(r!))),
    );
    // Later pages read the revision the first one saw, so the dump is one snapshot.
    if (revision === 0n) revision = res.header?.revision ?? 0n;
    for (const kv of res.kvs) out.push([kv.key.toString('base64'), kv.value.toString('base64')]);
    if (!res.more || res.kvs.length === 0) return out;
    key = Buffer.concat([res.kvs[res.kvs.length - 1]!.key, Buffer.of(0)]);
  }
}

async function listBlobIds(query: ReturnType<typeof connect>['query']): Promise<bigint[]> {
  const res = await bidi(query.query(), [{ query: 'SELECT id FROM blob ORDER BY id', target: TargetStore.BLOB }]);
  if (res.err) {
    const hint =
      res.err.code === status.UNIMPLEMENTED ? ' (no SQL on this backend: pass dumpStore(…, { blobIds }))' : '';
    throw new Error(`listing blob ids: ${res.err.details}${hint}`);
  }
  return res.out.map((row) => BigInt(unpackValue(row.fields[0]!) as bigint | number));
}

/** The blob's SHA-256 and metadata from a Download header (no data is read); undefined if there is no such blob. */
async function blobSummary(
  clients: ReturnType<typeof connect>,
  id: bigint,
): Promise<StoreDump['blobs'][number] | undefined> {
  const stream = clients.download(id, { length: 0n });
  stream.on('error', () => {});
  try {
    const header = await stream.header;
    return [id.toString(), Buffer.from(header.sha256).toString('hex'), header.metadata ?? null];
  } catch (err) {
    if ((err as ServiceError).code === status.NOT_FOUND) return undefined;
    throw err;
  } finally {
    stream.destroy();
  }
}
