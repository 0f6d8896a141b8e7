/**
 * etcdserverpb.Maintenance: Status and Alarm, what etcdctl's `endpoint status` and `endpoint
 * health` need from a single-member server. The rest answers UNIMPLEMENTED.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { ServerUnaryCall, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import { unimplemented } from '../../errors.js';
import * as pb from '../../generated/etcd/etcdserverpb/rpc.js';
import type { BuffDb } from '../../store/buffdb.js';
import type { DecodeFailure } from '../codec.js';
import { ETCD_SERVER_VERSION, header, RAFT_TERM, unary, withUnimplemented } from './common.js';
import { EtcdMaintenanceDefinition } from './definitions.js';

type Call<Req, Res> = [ServerUnaryCall<Req | DecodeFailure, Res>, sendUnaryData<Res>];

/** Bytes of a file, or of everything in a directory (RocksDB keeps its store in one). */
async function sizeOf(path: string): Promise<number> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) return st.size;
  const entries = await readdir(path).catch(() => []);
  let total = 0;
  for (const name of entries) total += await sizeOf(join(path, name));
  return total;
}

/** The store file and the engine's files beside it (`kv.db-wal`, `kv.db-rocksdb/`, …). */
async function storeSize(path: string): Promise<number> {
  if (path === ':memory:') return 0;
  const base = basename(path);
  const names = await readdir(dirname(path)).catch(() => [] as string[]);
  let total = 0;
  for (const name of names)
    if (name === base || name.startsWith(`${base}-`)) total += await sizeOf(join(dirname(path), name));
  return total;
}

export function etcdMaintenanceService(db: BuffDb): UntypedServiceImplementation {
  const { kv } = db;
  return withUnimplemented(
    'etcdserverpb.Maintenance',
    EtcdMaintenanceDefinition,
    'only Status and Alarm are (buffdb is one member with no raft log to snapshot, hash or move)',
    {
      status: (...[call, callback]: Call<pb.StatusRequest, pb.StatusResponse>) =>
        unary(call, callback, async () => {
          // etcdctl divides by the size (3.6): never 0, even for an in-memory store.
          const dbSize = BigInt(Math.max(1, await storeSize(db.kvPath)));
          const h = header(kv);
          return {
            header: h,
            version: ETCD_SERVER_VERSION,
            dbSize,
            leader: h.memberId,
            raftIndex: h.revision,
            raftTerm: RAFT_TERM,
            raftAppliedIndex: h.revision,
            errors: [],
            dbSizeInUse: dbSize,
            isLearner: false,
            storageVersion: '',
            dbSizeQuota: 0n,
            downgradeInfo: undefined,
          };
        }),

      // No alarm is ever raised: GET lists none, DEACTIVATE has nothing to clear.
      alarm: (...[call, callback]: Call<pb.AlarmRequest, pb.AlarmResponse>) =>
        unary(call, callback, (req) => {
          if (req.action === pb.AlarmRequest_AlarmAction.GET || req.action === pb.AlarmRequest_AlarmAction.DEACTIVATE) {
            return { header: header(kv), alarms: [] };
          }
          throw unimplemented(
            'etcdserverpb.Maintenance/Alarm: buffdb raises no alarms, so only GET and DEACTIVATE are served',
          );
        }),
    },
  );
}
