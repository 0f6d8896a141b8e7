/**
 * etcd's KV semantics over an MvccBatch, written once for every backend: Range (current or old
 * revision, filters, sorting, limit), Put, DeleteRange and Txn. Error texts are etcd's, so etcd
 * clients recognise them.
 */
import type { KvRecord } from '../../backends/backend.js';
import { invalidArgument, NotFoundError, outOfRange } from '../../errors.js';
import { readAllCurrent, readAtRevision } from './history-reads.js';
import { isEmptySpan, type KeySpan, spansOverlap } from './key-span.js';
import type {
  Compare,
  DeleteRangeArgs,
  DeleteRangeResult,
  KvLimits,
  PutArgs,
  PutResult,
  RangeArgs,
  RangeResult,
  SortTarget,
  TxnArgs,
  TxnOp,
  TxnOpResult,
  TxnResult,
} from './kv-api.js';
import { leaseId } from './lease-keys.js';
import type { MvccBatch } from './mvcc-batch.js';

export const ERR_COMPACTED = 'etcdserver: mvcc: required revision has been compacted';
export const ERR_FUTURE_REV = 'etcdserver: mvcc: required revision is a future revision';

export const compactedError = () => outOfRange(ERR_COMPACTED);
export const futureRevError = () => outOfRange(ERR_FUTURE_REV);

const compareBy: Record<SortTarget, (a: KvRecord, b: KvRecord) => number> = {
  key: (a, b) => Buffer.compare(a.key, b.key),
  version: (a, b) => a.version - b.version,
  create: (a, b) => a.createRev - b.createRev,
  mod: (a, b) => a.modRev - b.modRev,
  value: (a, b) => Buffer.compare(a.value, b.value),
};

function withoutValue(r: KvRecord): KvRecord {
  return { ...r, value: Buffer.alloc(0) };
}

/** Range as etcd's apply layer does it: read, filter, sort, truncate; `count` is before filters. */
export async function range(b: MvccBatch, args: RangeArgs): Promise<RangeResult> {
  const rev = b.rev;
  const { span } = args;
  if (args.revision > 0) {
    if (args.revision > rev) throw futureRevError();
    if (args.revision < b.compactRev) throw compactedError();
  }
  if (isEmptySpan(span)) return { rev, kvs: [], more: false, count: 0 };
  const atOld = args.revision > 0 && args.revision < rev;
  const filtered = args.minModRev > 0 || args.maxModRev > 0 || args.minCreateRev > 0 || args.maxCreateRev > 0;
  // etcd sorts by key ascending already; any other order or a filter needs every key first.
  let order = args.sortOrder;
  if (args.sortTarget !== 'key' && order === 'none') order = 'ascend';
  else if (args.sortTarget === 'key' && order === 'ascend') order = 'none';
  const needAll = atOld || filtered || order !== 'none';

  let kvs: KvRecord[];
  let count: number;
  if (atOld) {
    kvs = await readAtRevision(b.ops, span, args.revision, rev);
    count = kvs.length;
  } else if (args.countOnly && !filtered) {
    return { rev, kvs: [], more: false, count: await b.ops.count(span.start, span.end) };
  } else if (needAll || args.limit <= 0) {
    kvs = await readAllCurrent(b.ops, span, args.keysOnly && !(order !== 'none' && args.sortTarget === 'value'));
    count = kvs.length;
  } else {
    kvs = await b.ops.range({ start: span.start, end: span.end, limit: args.limit + 1, reverse: false }, args.keysOnly);
    count = kvs.length <= args.limit ? kvs.length : await b.ops.count(span.start, span.end);
  }
  if (filtered) {
    kvs = kvs.filter(
      (kv) =>
        !(args.maxModRev > 0 && kv.modRev > args.maxModRev) &&
        !(args.minModRev > 0 && kv.modRev < args.minModRev) &&
        !(args.maxCreateRev > 0 && kv.createRev > args.maxCreateRev) &&
        !(args.minCreateRev > 0 && kv.createRev < args.minCreateRev),
    );
  }
  if (order !== 'none') {
    const by = compareBy[args.sortTarget];
    kvs.sort(order === 'ascend' ? by : (a, b) => by(b, a));
  }
  let more = false;
  if (args.limit > 0 && kvs.length > args.limit) {
    kvs = kvs.slice(0, args.limit);
    more = true;
  }
  if (args.countOnly) return { rev, kvs: [], more, count };
  if (args.keysOnly) kvs = kvs.map(withoutValue);
  return { rev, kvs, more, count };
}

/** Put checks that need no write: etcd's error texts for a missing key or lease. */
async function preparePut(
  b: MvccBatch,
  args: PutArgs,
): Promise<{ prev: KvRecord | undefined; value: Buffer; lease: bigint }> {
  const prev = await b.ops.get(args.key);
  if ((args.ignoreValue || args.ignoreLease) && !prev) throw invalidArgument('etcdserver: key not found');
  const lease = args.ignoreLease ? prev!.lease : args.lease;
  if (lease !== 0n && (await b.ops.maps.get('lease', leaseId(lease))) === undefined) {
    throw new NotFoundError('etcdserver: requested lease not found');
  }
  return { prev, value: args.ignoreValue ? prev!.value : args.value, lease };
}

/** One Put inside an already open revision. */
async function putIn(b: MvccBatch, args: PutArgs): Promise<PutResult> {
  const { prev, value, lease } = await preparePut(b, args);
  await b.put(args.key, value, lease, prev);
  return { rev: b.rev, prevKv: args.prevKv ? prev : undefined };
}

export async function put(b: MvccBatch, args: PutArgs): Promise<PutResult> {
  const checked = await preparePut(b, args);
  await b.mutate(() => b.put(args.key, checked.value, checked.lease, checked.prev));
  return { rev: b.rev, prevKv: args.prevKv ? checked.prev : undefined };
}

async function deleteIn(b: MvccBatch, args: DeleteRangeArgs): Promise<DeleteRangeResult> {
  const victims = isEmptySpan(args.span) ? [] : await readAllCurrent(b.ops, args.span, false);
  for (const prev of victims) await b.delete(prev);
  return { rev: b.rev, deleted: victims.length, prevKvs: args.prevKv ? victims : [] };
}

export async function deleteRange(b: MvccBatch, args: DeleteRangeArgs): Promise<DeleteRangeResult> {
  const result = await b.mutate(() => deleteIn(b, args));
  return { ...result, rev: b.rev };
}

function compareOne(kv: KvRecord, c: Compare): boolean {
  let diff: number;
  switch (c.target) {
    case 'value':
      diff = Buffer.compare(kv.value, c.operand as Buffer);
      break;
    case 'lease': {
      const want = c.operand as bigint;
      diff = kv.lease === want ? 0 : kv.lease > want ? 1 : -1;
      break;
    }
    case 'version':
      diff = kv.version - (c.operand as number);
      break;
    case 'create':
      diff = kv.createRev - (c.operand as number);
      break;
    case 'mod':
      diff = kv.modRev - (c.operand as number);
      break;
  }
  switch (c.result) {
    case 'equal':
      return diff === 0;
    case 'not_equal':
      return diff !== 0;
    case 'greater':
      return diff > 0;
    case 'less':
      return diff < 0;
  }
}

const ABSENT: KvRecord = {
  key: Buffer.alloc(0),
  value: Buffer.alloc(0),
  createRev: 0,
  modRev: 0,
  version: 0,
  lease: 0n,
};

async function compareHolds(b: MvccBatch, c: Compare): Promise<boolean> {
  const kvs = isEmptySpan(c.span) ? [] : await readAllCurrent(b.ops, c.span, c.target !== 'value');
  // As etcd: a value compare on missing keys always fails; other targets compare the zero record.
  if (kvs.length === 0) return c.target === 'value' ? false : compareOne(ABSENT, c);
  return kvs.every((kv) => compareOne(kv, c));
}

/** etcd's request checks: op counts per branch, and no key written twice in one branch. */
export function checkTxn(txn: TxnArgs, limits: KvLimits): void {
  const tooMany = (n: number) => n > limits.maxTxnOps;
  const walk = (t: TxnArgs): void => {
    if (tooMany(t.compare.length) || tooMany(t.success.length) || tooMany(t.failure.length)) {
      throw invalidArgument('etcdserver: too many operations in txn request');
    }
    for (const op of [...t.success, ...t.failure]) if ('txn' in op) walk(op.txn);
  };
  walk(txn);
  checkWrites(txn.success);
  checkWrites(txn.failure);
}

const duplicateKey = () => invalidArgument('etcdserver: duplicate key given in txn request');

/** The keys a branch puts and the spans it deletes; throws on a key written twice. */
function checkWrites(ops: TxnOp[]): { puts: Set<string>; dels: KeySpan[] } {
  const dels: KeySpan[] = [];
  for (const op of ops) if ('deleteRange' in op) dels.push(op.deleteRange.span);
  const puts = new Set<string>();
  const clashes = (k: string): boolean => {
    const key = Buffer.from(k, 'latin1');
    return dels.some((d) => spansOverlap(d, { start: key, end: Buffer.concat([key, Buffer.of(0)]) }));
  };
  for (const op of ops) {
    if (!('txn' in op)) continue;
    const then = checkWrites(op.txn.success);
    const otherwise = checkWrites(op.txn.failure);
    for (const k of then.puts) {
      if (puts.has(k) || clashes(k)) throw duplicateKey();
      puts.add(k);
    }
    for (const k of otherwise.puts) {
      // The two branches of one txn never both run: the same key in both is fine.
      if ((puts.has(k) && !then.puts.has(k)) || clashes(k)) throw duplicateKey();
      puts.add(k);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    if (!('put' in op)) continue;
    const k = op.put.key.toString('latin1');
    if (puts.has(k) || clashes(k)) throw duplicateKey();
    puts.add(k);
  }
  return { puts, dels };
}

/** Whether a Txn (with its nested ones) may write: then it needs a revision. */
function mayWrite(ops: TxnOp[]): boolean {
  return ops.some(
    (op) =>
      'put' in op || 'deleteRange' in op || ('txn' in op && (mayWrite(op.txn.success) || mayWrite(op.txn.failure))),
  );
}

/**
 * Which branch each Txn takes (the outer one first, then nested ones in order), decided — as in
 * etcd — from the state before any of its writes.
 */
async function choosePath(b: MvccBatch, t: TxnArgs, path: boolean[]): Promise<void> {
  let succeeded = true;
  for (const c of t.compare) {
    if (!(await compareHolds(b, c))) {
      succeeded = false;
      break;
    }
  }
  path.push(succeeded);
  for (const op of succeeded ? t.success : t.failure) if ('txn' in op) await choosePath(b, op.txn, path);
}

/** The put checks of every branch on the path, before anything is written. */
async function checkPath(b: MvccBatch, t: TxnArgs, path: boolean[], at: { i: number }): Promise<void> {
  const succeeded = path[at.i++]!;
  for (const op of succeeded ? t.success : t.failure) {
    if ('put' in op) await preparePut(b, op.put);
    else if ('txn' in op) await checkPath(b, op.txn, path, at);
  }
}

async function runPath(b: MvccBatch, t: TxnArgs, path: boolean[], at: { i: number }): Promise<TxnResult> {
  const succeeded = path[at.i++]!;
  const responses: TxnOpResult[] = [];
  for (const op of succeeded ? t.success : t.failure) {
    if ('range' in op) responses.push({ range: await range(b, op.range) });
    else if ('put' in op) responses.push({ put: await putIn(b, op.put) });
    else if ('deleteRange' in op) responses.push({ deleteRange: await deleteIn(b, op.deleteRange) });
    else responses.push({ txn: await runPath(b, op.txn, path, at) });
  }
  return { rev: b.rev, succeeded, responses };
}

/**
 * A Txn: compares against the current state, then one branch; every write of it (nested ones
 * included) shares one new revision. Reads inside see the Txn's earlier writes, as in etcd.
 */
export async function txn(b: MvccBatch, args: TxnArgs, limits: KvLimits): Promise<TxnResult> {
  checkTxn(args, limits);
  const path: boolean[] = [];
  await choosePath(b, args, path);
  await checkPath(b, args, path, { i: 0 });
  if (!mayWrite(args.success) && !mayWrite(args.failure)) return runPath(b, args, path, { i: 0 });
  const result = await b.mutate(() => runPath(b, args, path, { i: 0 }));
  return withRevision(result, b.rev);
}

/** Every response of a Txn reports the revision after it, as etcd's do. */
function withRevision(result: TxnResult, rev: number): TxnResult {
  return {
    rev,
    succeeded: result.succeeded,
    responses: result.responses.map((r): TxnOpResult => {
      if ('range' in r) return r;
      if ('put' in r) return { put: { ...r.put, rev } };
      if ('deleteRange' in r) return { deleteRange: { ...r.deleteRange, rev } };
      return { txn: withRevision(r.txn, rev) };
    }),
  };
}
