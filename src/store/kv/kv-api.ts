/**
 * The revisioned key-value API of the store, in etcd's terms (the etcd service maps its protobuf
 * messages onto these one to one). Keys and values are bytes; revisions are numbers.
 */
import type { KvRecord } from '../../backends/backend.js';
import type { KeySpan } from './key-span.js';

export type SortOrder = 'none' | 'ascend' | 'descend';
export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value';

export interface RangeArgs {
  span: KeySpan;
  /** 0: no limit. */
  limit: number;
  /** 0 (or less): the current revision. */
  revision: number;
  sortOrder: SortOrder;
  sortTarget: SortTarget;
  keysOnly: boolean;
  countOnly: boolean;
  /** 0: no bound. */
  minModRev: number;
  maxModRev: number;
  minCreateRev: number;
  maxCreateRev: number;
}

/** A plain Range of `span` at the current revision (no limit, key order); `extra` overrides. */
export function rangeArgs(span: KeySpan, extra: Partial<RangeArgs> = {}): RangeArgs {
  return {
    span,
    limit: 0,
    revision: 0,
    sortOrder: 'none',
    sortTarget: 'key',
    keysOnly: false,
    countOnly: false,
    minModRev: 0,
    maxModRev: 0,
    minCreateRev: 0,
    maxCreateRev: 0,
    ...extra,
  };
}

export interface RangeResult {
  /** The store revision the read saw. */
  rev: number;
  kvs: KvRecord[];
  more: boolean;
  count: number;
}

export interface PutArgs {
  key: Buffer;
  value: Buffer;
  /** 0n: none. */
  lease: bigint;
  prevKv: boolean;
  ignoreValue: boolean;
  ignoreLease: boolean;
}

export interface PutResult {
  rev: number;
  prevKv: KvRecord | undefined;
}

export interface DeleteRangeArgs {
  span: KeySpan;
  prevKv: boolean;
}

export interface DeleteRangeResult {
  rev: number;
  deleted: number;
  prevKvs: KvRecord[];
}

export type CompareTarget = 'version' | 'create' | 'mod' | 'value' | 'lease';
export type CompareResult = 'equal' | 'greater' | 'less' | 'not_equal';

export interface Compare {
  span: KeySpan;
  target: CompareTarget;
  result: CompareResult;
  /** A revision or version (number), a value (Buffer) or a lease id (bigint), per `target`. */
  operand: number | Buffer | bigint;
}

export type TxnOp = { range: RangeArgs } | { put: PutArgs } | { deleteRange: DeleteRangeArgs } | { txn: TxnArgs };

export interface TxnArgs {
  compare: Compare[];
  success: TxnOp[];
  failure: TxnOp[];
}

export type TxnOpResult =
  | { range: RangeResult }
  | { put: PutResult }
  | { deleteRange: DeleteRangeResult }
  | { txn: TxnResult };

export interface TxnResult {
  rev: number;
  succeeded: boolean;
  responses: TxnOpResult[];
}

export interface CompactResult {
  rev: number;
}

/** Limits etcd clients expect (configurable like etcd's flags). */
export interface KvLimits {
  /** Operations per Txn branch (etcd's --max-txn-ops, 128). */
  maxTxnOps: number;
}

export const DEFAULT_KV_LIMITS: KvLimits = { maxTxnOps: 128 };
