/** BeginTransaction / CommitTransaction / RollbackTransaction handlers (semantics: docs/transactions.md). */

import type { EventEmitter } from 'node:events';
import type { ServerUnaryCall, ServiceError, sendUnaryData } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type * as kv from '../generated/kv.js';
import type { TransactionManager } from '../store/transactions/manager.js';
import { DecodeFailure } from './codec.js';
import { decodeError, toServiceError } from './stream-handler.js';

export interface TransactionService {
  begin(
    call: ServerUnaryCall<kv.BeginTransactionRequest | DecodeFailure, kv.BeginTransactionResponse>,
    callback: sendUnaryData<kv.BeginTransactionResponse>,
  ): void;
  commit(
    call: ServerUnaryCall<kv.CommitTransactionRequest | DecodeFailure, kv.CommitTransactionResponse>,
    callback: sendUnaryData<kv.CommitTransactionResponse>,
  ): void;
  rollback(
    call: ServerUnaryCall<kv.RollbackTransactionRequest | DecodeFailure, kv.RollbackTransactionResponse>,
    callback: sendUnaryData<kv.RollbackTransactionResponse>,
  ): void;
}

const notYet = (callback: sendUnaryData<never>): void => {
  const details = 'transactions are not available in this version of buffdb';
  callback({ code: status.UNIMPLEMENTED, details, message: details } as ServiceError);
};

/** Answers UNIMPLEMENTED: for embedders that want to switch transactions off. */
export const unimplementedTransactions: TransactionService = {
  begin: (_call, callback) => notYet(callback as sendUnaryData<never>),
  commit: (_call, callback) => notYet(callback as sendUnaryData<never>),
  rollback: (_call, callback) => notYet(callback as sendUnaryData<never>),
};

type Connection = EventEmitter & { closed?: boolean; destroyed?: boolean };

/**
 * The HTTP/2 session (client connection) a call arrived on, so a transaction can be rolled back
 * when its client disconnects. grpc-js does not expose it publicly: this walks its call objects
 * and answers undefined if their shape differs (then only the timeout ends an abandoned
 * transaction). In-process (transitive) calls have no connection.
 */
export function connectionOf(call: unknown): Connection | undefined {
  let c = (call as { call?: unknown } | undefined)?.call;
  for (let depth = 0; c && depth < 16; depth++) {
    const session = (c as { stream?: { session?: unknown } }).stream?.session as Connection | undefined;
    if (session && typeof session.once === 'function') return session;
    c = (c as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

const fail = (callback: sendUnaryData<never>, err: unknown): void =>
  callback((err instanceof DecodeFailure ? decodeError(err) : toServiceError(err)) as ServiceError);

/**
 * Real transactions over `manager`. Errors are gRPC statuses (never `success: false`): ABORTED for
 * a conflict, FAILED_PRECONDITION for an unknown, committed, rolled-back or expired id,
 * INVALID_ARGUMENT for a bad timeout_ms.
 */
export function transactionService(manager: TransactionManager): TransactionService {
  return {
    begin: (call, callback) => {
      const req = call.request;
      if (req instanceof DecodeFailure) return fail(callback as sendUnaryData<never>, req);
      let transactionId: string;
      try {
        transactionId = manager.begin({ readOnly: req.readOnly ?? false, timeoutMs: req.timeoutMs });
      } catch (err) {
        return fail(callback as sendUnaryData<never>, err);
      }
      const connection = connectionOf(call);
      if (connection) manager.bindToConnection(transactionId, connection);
      callback(null, { transactionId });
    },

    commit: (call, callback) => {
      const req = call.request;
      if (req instanceof DecodeFailure) return fail(callback as sendUnaryData<never>, req);
      manager.commit(req.transactionId).then(
        () => callback(null, { success: true }),
        (err: unknown) => fail(callback as sendUnaryData<never>, err),
      );
    },

    rollback: (call, callback) => {
      const req = call.request;
      if (req instanceof DecodeFailure) return fail(callback as sendUnaryData<never>, req);
      try {
        manager.rollback(req.transactionId);
      } catch (err) {
        return fail(callback as sendUnaryData<never>, err);
      }
      callback(null, { success: true });
    },
  };
}
