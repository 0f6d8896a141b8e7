/**
 * etcd's request checks (its v3rpc key.go), made before the store sees a request, with etcd's
 * texts: clients map the messages back to typed errors. The rules that need the data (duplicate
 * keys in a txn, missing leases, compacted revisions) are the store's.
 */
import { invalidArgument } from '../../errors.js';
import type * as pb from '../../generated/etcd/etcdserverpb/rpc.js';
import { COMPARE_RESULTS, COMPARE_TARGETS, SORT_ORDERS, SORT_TARGETS } from './convert.js';

export const ERR_REQUEST_TOO_LARGE = 'etcdserver: request is too large';

const emptyKey = () => invalidArgument('etcdserver: key is not provided');

export function checkRange(r: pb.RangeRequest): void {
  if (r.key.length === 0) throw emptyKey();
  if (SORT_ORDERS[r.sortOrder] === undefined || SORT_TARGETS[r.sortTarget] === undefined) {
    throw invalidArgument('etcdserver: invalid sort option');
  }
}

export function checkPut(r: pb.PutRequest): void {
  if (r.key.length === 0) throw emptyKey();
  if (r.ignoreValue && r.value.length !== 0) throw invalidArgument('etcdserver: value is provided');
  if (r.ignoreLease && r.lease !== 0n) throw invalidArgument('etcdserver: lease is provided');
}

export function checkDeleteRange(r: pb.DeleteRangeRequest): void {
  if (r.key.length === 0) throw emptyKey();
}

function checkOp(op: pb.RequestOp, maxTxnOps: number): void {
  if (op.requestRange) checkRange(op.requestRange);
  else if (op.requestPut) checkPut(op.requestPut);
  else if (op.requestDeleteRange) checkDeleteRange(op.requestDeleteRange);
  else if (op.requestTxn) checkTxn(op.requestTxn, maxTxnOps);
  // An empty RequestOp: etcd's answer.
  else throw invalidArgument('etcdserver: key not found');
}

/**
 * A Txn, in etcd's order: operation counts, compare keys, then every op of both branches; a
 * nested txn gets the budget its parent left (max-txn-ops minus the parent's largest list).
 */
export function checkTxn(r: pb.TxnRequest, maxTxnOps: number): void {
  const ops = Math.max(r.compare.length, r.success.length, r.failure.length);
  if (ops > maxTxnOps) throw invalidArgument('etcdserver: too many operations in txn request');
  for (const c of r.compare) {
    if (c.key.length === 0) throw emptyKey();
    // etcd does not check these; buffdb refuses what it could only guess at.
    if (COMPARE_TARGETS[c.target] === undefined)
      throw invalidArgument(`etcdserver: unknown compare target ${c.target}`);
    if (COMPARE_RESULTS[c.result] === undefined)
      throw invalidArgument(`etcdserver: unknown compare result ${c.result}`);
  }
  for (const op of r.success) checkOp(op, maxTxnOps - ops);
  for (const op of r.failure) checkOp(op, maxTxnOps - ops);
}
