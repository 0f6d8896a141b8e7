/**
 * etcd protobuf messages to the store's shapes (src/store/kv/kv-api.ts) and back, one to one.
 * Requests are validated first (validate.ts), so the enums here are known values.
 */
import type { KvRecord } from '../../backends/backend.js';
import type * as pb from '../../generated/etcd/etcdserverpb/rpc.js';
import { Event_EventType, type KeyValue, type Event as PbEvent } from '../../generated/etcd/mvccpb/kv.js';
import type { KvEvent } from '../../store/kv/history.js';
import { etcdSpan } from '../../store/kv/key-span.js';
import type {
  Compare,
  CompareResult,
  CompareTarget,
  DeleteRangeArgs,
  PutArgs,
  RangeArgs,
  RangeResult,
  SortOrder,
  SortTarget,
  TxnArgs,
  TxnOp,
  TxnResult,
} from '../../store/kv/kv-api.js';
import { safeNumber } from './common.js';

/** Enum values in proto order: SortOrder NONE, ASCEND, DESCEND … */
export const SORT_ORDERS: readonly SortOrder[] = ['none', 'ascend', 'descend'];
export const SORT_TARGETS: readonly SortTarget[] = ['key', 'version', 'create', 'mod', 'value'];
export const COMPARE_RESULTS: readonly CompareResult[] = ['equal', 'greater', 'less', 'not_equal'];
export const COMPARE_TARGETS: readonly CompareTarget[] = ['version', 'create', 'mod', 'value', 'lease'];

const EMPTY = Buffer.alloc(0);

export function keyValue(r: KvRecord): KeyValue {
  return {
    key: r.key,
    createRevision: BigInt(r.createRev),
    modRevision: BigInt(r.modRev),
    version: BigInt(r.version),
    value: r.value,
    lease: r.lease,
  };
}

export function rangeArgs(req: pb.RangeRequest): RangeArgs {
  return {
    span: etcdSpan(req.key, req.rangeEnd),
    limit: safeNumber(req.limit),
    revision: safeNumber(req.revision),
    sortOrder: SORT_ORDERS[req.sortOrder]!,
    sortTarget: SORT_TARGETS[req.sortTarget]!,
    keysOnly: req.keysOnly,
    countOnly: req.countOnly,
    minModRev: safeNumber(req.minModRevision),
    maxModRev: safeNumber(req.maxModRevision),
    minCreateRev: safeNumber(req.minCreateRevision),
    maxCreateRev: safeNumber(req.maxCreateRevision),
  };
}

export function putArgs(req: pb.PutRequest): PutArgs {
  return {
    key: req.key,
    value: req.value,
    lease: req.lease,
    prevKv: req.prevKv,
    ignoreValue: req.ignoreValue,
    ignoreLease: req.ignoreLease,
  };
}

export function deleteRangeArgs(req: pb.DeleteRangeRequest): DeleteRangeArgs {
  return { span: etcdSpan(req.key, req.rangeEnd), prevKv: req.prevKv };
}

function compare(c: pb.Compare): Compare {
  const target = COMPARE_TARGETS[c.target]!;
  // The operand is the union member of the target; an unset union compares with zero (as etcd).
  const operand =
    target === 'value'
      ? (c.value ?? EMPTY)
      : target === 'lease'
        ? (c.lease ?? 0n)
        : safeNumber((target === 'version' ? c.version : target === 'create' ? c.createRevision : c.modRevision) ?? 0n);
  return { span: etcdSpan(c.key, c.rangeEnd), target, result: COMPARE_RESULTS[c.result]!, operand };
}

function txnOp(op: pb.RequestOp): TxnOp {
  if (op.requestRange) return { range: rangeArgs(op.requestRange) };
  if (op.requestPut) return { put: putArgs(op.requestPut) };
  if (op.requestDeleteRange) return { deleteRange: deleteRangeArgs(op.requestDeleteRange) };
  return { txn: txnArgs(op.requestTxn!) };
}

export function txnArgs(req: pb.TxnRequest): TxnArgs {
  return { compare: req.compare.map(compare), success: req.success.map(txnOp), failure: req.failure.map(txnOp) };
}

export function rangeResponse(r: RangeResult, header: pb.ResponseHeader): pb.RangeResponse {
  return { header, kvs: r.kvs.map(keyValue), more: r.more, count: BigInt(r.count) };
}

export function putResponse(prev: KvRecord | undefined, header: pb.ResponseHeader): pb.PutResponse {
  return { header, prevKv: prev ? keyValue(prev) : undefined };
}

export function deleteRangeResponse(
  deleted: number,
  prevKvs: KvRecord[],
  header: pb.ResponseHeader,
): pb.DeleteRangeResponse {
  return { header, deleted: BigInt(deleted), prevKvs: prevKvs.map(keyValue) };
}

/** Responses nested in a Txn carry only the revision in their header, as etcd's do. */
const nestedHeader = (rev: number): pb.ResponseHeader => ({
  clusterId: 0n,
  memberId: 0n,
  revision: BigInt(rev),
  raftTerm: 0n,
});

export function txnResponse(r: TxnResult, header: pb.ResponseHeader): pb.TxnResponse {
  return {
    header,
    succeeded: r.succeeded,
    responses: r.responses.map((op): pb.ResponseOp => {
      if ('range' in op) return { responseRange: rangeResponse(op.range, nestedHeader(op.range.rev)) };
      if ('put' in op) return { responsePut: putResponse(op.put.prevKv, nestedHeader(op.put.rev)) };
      if ('deleteRange' in op) {
        const d = op.deleteRange;
        return { responseDeleteRange: deleteRangeResponse(d.deleted, d.prevKvs, nestedHeader(d.rev)) };
      }
      return { responseTxn: txnResponse(op.txn, nestedHeader(op.txn.rev)) };
    }),
  };
}

/** A hub event as a watch event; the previous kv only when the watcher asked for it. */
export function watchEvent(e: KvEvent, withPrev: boolean): PbEvent {
  return {
    type: e.type === 'put' ? Event_EventType.PUT : Event_EventType.DELETE,
    kv: keyValue(e.kv),
    prevKv: withPrev && e.prev ? keyValue(e.prev) : undefined,
  };
}
