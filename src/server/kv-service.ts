/** Kv gRPC handlers: read the request stream, call the store, write the answers. Nothing else. */
import type {
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  sendUnaryData,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type * as kv from '../generated/kv.js';
import type { BuffDb } from '../store/buffdb.js';
import type { Done, Reply, Sequence } from '../store/group-commit.js';
import type { DecodeFailure } from './codec.js';
import { MemoryBudget } from './memory-budget.js';
import { serveBidi, serveEquality } from './stream-handler.js';
import type { TransactionService } from './transaction-service.js';

type Bidi<Req, Res> = ServerDuplexStream<Req | DecodeFailure, Res>;
type Fold<Req> = ServerReadableStream<Req | DecodeFailure, boolean>;
type Unary<Req, Res> = [ServerUnaryCall<Req | DecodeFailure, Res>, sendUnaryData<Res>];

export function kvService(
  db: BuffDb,
  transactions: TransactionService,
  budget: MemoryBudget = new MemoryBudget(),
): UntypedServiceImplementation {
  const getValue = (req: kv.EqRequest, reply: Done<string>, seq: Sequence) => db.kv.get(req.key, reply, seq);
  return {
    get: (call: Bidi<kv.GetRequest, kv.GetResponse>) =>
      serveBidi(
        call,
        budget,
        (req, reply: Reply<string>, seq) => db.kvFor(req.transactionId).get(req.key, reply, seq),
        'data',
        (value): kv.GetResponse => ({ value }),
      ),

    set: (call: Bidi<kv.SetRequest, kv.SetResponse>) =>
      serveBidi(
        call,
        budget,
        (req, reply: Reply<void>, seq) => db.kvFor(req.transactionId).set(req.key, req.value, reply, seq),
        'small',
        (_, req): kv.SetResponse => ({ key: req.key }),
      ),

    delete: (call: Bidi<kv.DeleteRequest, kv.DeleteResponse>) =>
      serveBidi(
        call,
        budget,
        (req, reply: Reply<void>, seq) => db.kvFor(req.transactionId).delete(req.key, reply, seq),
        'small',
        (_, req): kv.DeleteResponse => ({ key: req.key }),
      ),

    eq: (call: Fold<kv.EqRequest>, callback: sendUnaryData<boolean>) =>
      serveEquality(call, budget, callback, 'eq', getValue),

    notEq: (call: Fold<kv.NotEqRequest>, callback: sendUnaryData<boolean>) =>
      serveEquality(call, budget, callback, 'not-eq', getValue),

    beginTransaction: (...[call, callback]: Unary<kv.BeginTransactionRequest, kv.BeginTransactionResponse>) =>
      transactions.begin(call, callback),

    commitTransaction: (...[call, callback]: Unary<kv.CommitTransactionRequest, kv.CommitTransactionResponse>) =>
      transactions.commit(call, callback),

    rollbackTransaction: (...[call, callback]: Unary<kv.RollbackTransactionRequest, kv.RollbackTransactionResponse>) =>
      transactions.rollback(call, callback),
  };
}
