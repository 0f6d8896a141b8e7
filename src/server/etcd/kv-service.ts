/** etcdserverpb.KV: check the request as etcd does, call the store, answer with a header. */
import type { ServerUnaryCall, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import type * as pb from '../../generated/etcd/etcdserverpb/rpc.js';
import type { KvStore } from '../../store/kv/kv-store.js';
import type { DecodeFailure } from '../codec.js';
import { header, safeNumber, unary, withUnimplemented } from './common.js';
import {
  deleteRangeArgs,
  deleteRangeResponse,
  putArgs,
  putResponse,
  rangeArgs,
  rangeResponse,
  txnArgs,
  txnResponse,
} from './convert.js';
import { EtcdKvDefinition } from './definitions.js';
import { checkDeleteRange, checkPut, checkRange, checkTxn } from './validate.js';

type Call<Req, Res> = [ServerUnaryCall<Req | DecodeFailure, Res>, sendUnaryData<Res>];

export function etcdKvService(kv: KvStore): UntypedServiceImplementation {
  return withUnimplemented('etcdserverpb.KV', EtcdKvDefinition, 'it follows etcd 3.5, which has no RangeStream', {
    range: (...[call, callback]: Call<pb.RangeRequest, pb.RangeResponse>) =>
      unary(call, callback, async (req) => {
        checkRange(req);
        const r = await kv.range(rangeArgs(req));
        return rangeResponse(r, header(kv, r.rev));
      }),

    put: (...[call, callback]: Call<pb.PutRequest, pb.PutResponse>) =>
      unary(call, callback, async (req) => {
        checkPut(req);
        const r = await kv.put(putArgs(req));
        return putResponse(r.prevKv, header(kv, r.rev));
      }),

    deleteRange: (...[call, callback]: Call<pb.DeleteRangeRequest, pb.DeleteRangeResponse>) =>
      unary(call, callback, async (req) => {
        checkDeleteRange(req);
        const r = await kv.deleteRange(deleteRangeArgs(req));
        return deleteRangeResponse(r.deleted, r.prevKvs, header(kv, r.rev));
      }),

    txn: (...[call, callback]: Call<pb.TxnRequest, pb.TxnResponse>) =>
      unary(call, callback, async (req) => {
        checkTxn(req, kv.limits.maxTxnOps);
        const r = await kv.txn(txnArgs(req));
        return txnResponse(r, header(kv, r.rev));
      }),

    compact: (...[call, callback]: Call<pb.CompactionRequest, pb.CompactionResponse>) =>
      unary(call, callback, async (req) => {
        const r = await kv.compact(safeNumber(req.revision), req.physical);
        return { header: header(kv, r.rev) };
      }),
  });
}
