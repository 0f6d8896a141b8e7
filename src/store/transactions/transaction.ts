/** A transaction as the library sees it: promise-returning operations on both stores. */
import type { BlobRecord } from '../../backends/backend.js';
import type { BlobId, BlobUpdate } from '../blob/blob-store.js';
import type { Done } from '../group-commit.js';
import type { BlobRequests, KvRequests } from '../requests.js';
import type { TransactionManager } from './manager.js';

function call<R>(start: (done: Done<R>) => void): Promise<R> {
  return new Promise((resolve, reject) => start((err, r) => (err ? reject(err) : resolve(r as R))));
}

export class Transaction {
  private readonly kvRequests: KvRequests;
  private readonly blobRequests: BlobRequests;

  constructor(
    private readonly manager: TransactionManager,
    readonly id: string,
    readonly readOnly: boolean,
  ) {
    this.kvRequests = manager.kvRequests(id);
    this.blobRequests = manager.blobRequests(id);
  }

  readonly kv = {
    get: (key: string): Promise<string> => call((d) => this.kvRequests.get(key, d)),
    set: (key: string, value: string): Promise<void> => call((d) => this.kvRequests.set(key, value, d)),
    delete: (key: string): Promise<void> => call((d) => this.kvRequests.delete(key, d)),
  };

  readonly blob = {
    get: (id: BlobId): Promise<BlobRecord> => call((d) => this.blobRequests.get(id, d)),
    store: (bytes: Uint8Array, metadata?: string): Promise<number> =>
      call((d) => this.blobRequests.store(bytes, metadata, d)),
    update: (id: BlobId, update: BlobUpdate): Promise<void> => call((d) => this.blobRequests.update(id, update, d)),
    delete: (id: BlobId): Promise<void> => call((d) => this.blobRequests.delete(id, d)),
  };

  commit(): Promise<void> {
    return this.manager.commit(this.id);
  }

  async rollback(): Promise<void> {
    this.manager.rollback(this.id);
  }
}
