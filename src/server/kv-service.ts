/** Kv gRPC handlers: read the request stream, call the store, write the answers. Nothing else. */
import type {
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  sendUnaryData,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type * as kv from '../generated/kv.js';
import { EqualityCheck } from '../store/equality.js';
import type { KvStore } from '../store/kv-store.js';
import type { DecodeFailure } from './codec.js';
import { MemoryBudget } from './memory-budget.js';
import { serveBidi, serveFold } from './stream-handler.js';
import type { TransactionService } from './transaction-service.js';

type Bidi<Req, Res> = ServerDuplexStream<Req | DecodeFailure, Res>;
type Fold<Req> = ServerReadableStream<Req | DecodeFailure, boolean>;

export function kvService(
  store: KvStore,
  transactions: TransactionService,
  budget: MemoryBudget = new MemoryBudget(),
): UntypedServiceImplementation {
  return {
    get: (call: Bidi<kv.GetRequest, kv.GetResponse>) =>
      serveBidi(
        call,
        budget,
        (req, reply, seq) => store.get(req.key, (err, value) => reply(err, { value: value! }), seq, req.transactionId),
        'data',
      ),

    set: (call: Bidi<kv.SetRequest, kv.SetResponse>) =>
      serveBidi(call, budget, (req, reply, seq) =>
        store.set(req.key, req.value, (err) => reply(err, { key: req.key }), seq, req.transactionId),
      ),

    delete: (call: Bidi<kv.DeleteRequest, kv.DeleteResponse>) =>
      serveBidi(call, budget, (req, reply, seq) =>
        store.delete(req.key, (err) => reply(err, { key: req.key }), seq, req.transactionId),
      ),

    eq: (call: Fold<kv.EqRequest>, callback: sendUnaryData<boolean>) => {
      const check = new EqualityCheck('eq');
      serveFold(
        call,
        budget,
        callback,
        (req, reply, seq) => store.get(req.key, reply, seq),
        (value: string) => check.add(value),
        () => check.finish(),
      );
    },

    notEq: (call: Fold<kv.NotEqRequest>, callback: sendUnaryData<boolean>) => {
      const check = new EqualityCheck('not-eq');
      serveFold(
        call,
        budget,
        callback,
        (req, reply, seq) => store.get(req.key, reply, seq),
        (value: string) => check.add(value),
        () => check.finish(),
      );
    },

    beginTransaction: (
      call: ServerUnaryCall<kv.BeginTransactionRequest | DecodeFailure, kv.BeginTransactionResponse>,
      callback: sendUnaryData<kv.BeginTransactionResponse>,
    ) => transactions.begin(call, callback),

    commitTransaction: (
      call: ServerUnaryCall<kv.CommitTransactionRequest | DecodeFailure, kv.CommitTransactionResponse>,
      callback: sendUnaryData<kv.CommitTransactionResponse>,
    ) => transactions.commit(call, callback),

    rollbackTransaction: (
      call: ServerUnaryCall<kv.RollbackTransactionRequest | DecodeFailure, kv.RollbackTransactionResponse>,
      callback: sendUnaryData<kv.RollbackTransactionResponse>,
    ) => transactions.rollback(call, callback),
  };
}
