/** BeginTransaction / CommitTransaction / RollbackTransaction handlers. */
import type { ServerUnaryCall, ServiceError, sendUnaryData } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type * as kv from '../generated/kv.js';
import type { DecodeFailure } from './codec.js';

export interface TransactionService {
  begin(call: ServerUnaryCall<kv.BeginTransactionRequest | DecodeFailure, kv.BeginTransactionResponse>,
    callback: sendUnaryData<kv.BeginTransactionResponse>): void;
  commit(call: ServerUnaryCall<kv.CommitTransactionRequest | DecodeFailure, kv.CommitTransactionResponse>,
    callback: sendUnaryData<kv.CommitTransactionResponse>): void;
  rollback(call: ServerUnaryCall<kv.RollbackTransactionRequest | DecodeFailure, kv.RollbackTransactionResponse>,
    callback: sendUnaryData<kv.RollbackTransactionResponse>): void;
}

const notYet = (callback: sendUnaryData<never>): void => {
  const details = 'transactions are not available in this version of buffdb';
  callback({ code: status.UNIMPLEMENTED, details, message: details } as ServiceError);
};

/** Placeholder until transactions land: a clear UNIMPLEMENTED, never a silent auto-commit. */
export const unimplementedTransactions: TransactionService = {
  begin: (_call, callback) => notYet(callback as sendUnaryData<never>),
  commit: (_call, callback) => notYet(callback as sendUnaryData<never>),
  rollback: (_call, callback) => notYet(callback as sendUnaryData<never>),
};
