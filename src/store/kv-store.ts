/** buffdb key-value semantics, written once for every backend. */
import type { KvOps, MaybePromise, StoreEngine } from '../backends/backend.js';
import { failedPrecondition, keyNotFound } from './errors.js';
import { type Done, GroupCommitter, type Sequence } from './group-commit.js';
import { then } from './maybe-promise.js';
import type { TransactionRouter } from './transactions.js';

export class KvStore {
  readonly committer: GroupCommitter<KvOps>;
  /** Serves requests that carry a transaction id (set by BuffDb; absent: such ids are unknown). */
  transactions: TransactionRouter | undefined;

  constructor(readonly engine: StoreEngine<KvOps>) {
    this.committer = new GroupCommitter(engine);
  }

  get(key: string, done: Done<string>, seq?: Sequence, txId?: string): void {
    if (txId) {
      this.transactions ? this.transactions.kvGet(txId, key, done, seq) : done(unknownTransaction(txId));
      return;
    }
    this.committer.submit((ops) => readValue(ops, key), done, seq);
  }

  set(key: string, value: string, done: Done<void>, seq?: Sequence, txId?: string): void {
    if (txId) {
      this.transactions ? this.transactions.kvSet(txId, key, value, done, seq) : done(unknownTransaction(txId));
      return;
    }
    this.committer.submit((ops) => ops.put(key, value), done, seq);
  }

  delete(key: string, done: Done<void>, seq?: Sequence, txId?: string): void {
    if (txId) {
      this.transactions ? this.transactions.kvDelete(txId, key, done, seq) : done(unknownTransaction(txId));
      return;
    }
    this.committer.submit((ops) => deleteKey(ops, key), done, seq);
  }

  /** Finishes queued work, then closes the engine. */
  async close(): Promise<void> {
    await this.committer.drainAndClose();
    await this.engine.close();
  }

  /** Promise forms, for callers that do one thing at a time (CLI, library). */
  getValue(key: string): Promise<string> {
    return this.committer.run((ops) => readValue(ops, key));
  }

  setValue(key: string, value: string): Promise<void> {
    return this.committer.run((ops) => ops.put(key, value));
  }

  deleteKey(key: string): Promise<void> {
    return this.committer.run((ops) => deleteKey(ops, key));
  }
}

export function unknownTransaction(txId: string) {
  return failedPrecondition(
    `unknown or expired transaction id ${JSON.stringify(txId)}; begin one with BeginTransaction`,
  );
}

export function readValue(ops: KvOps, key: string): MaybePromise<string> {
  return then(ops.get(key), (value) => {
    if (value === undefined) throw keyNotFound(key);
    return value;
  });
}

export function deleteKey(ops: KvOps, key: string): MaybePromise<void> {
  return then(ops.delete(key), (existed) => {
    if (!existed) throw keyNotFound(key);
  });
}
