/** buffdb blob semantics, written once for every backend. */
import type { BlobEngineOps, BlobOps, BlobRecord, MaybePromise, StoreEngine } from '../../backends/backend.js';
import { idNotFound } from '../../errors.js';
import { type Done, GroupCommitter, type Sequence } from '../group-commit.js';
import { then } from '../maybe-promise.js';

export type BlobId = bigint | number;

export interface BlobUpdate {
  /** New data; undefined keeps the data. */
  bytes?: Uint8Array | undefined;
  /** Replace the metadata with `metadata` (undefined = null). */
  shouldUpdateMetadata: boolean;
  metadata?: string | undefined;
}

/** Ids beyond 2^53 were never handed out: they are simply not found. */
export function toLocalId(id: BlobId): number | undefined {
  const n = typeof id === 'bigint' ? (id <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(id) : undefined) : id;
  return n !== undefined && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

export function readBlob(ops: BlobOps, id: BlobId): MaybePromise<BlobRecord> {
  const local = toLocalId(id);
  if (local === undefined) throw idNotFound(id);
  return then(ops.get(local), (record) => {
    if (record === undefined) throw idNotFound(id);
    return record;
  });
}

export function updateBlob(ops: BlobOps, id: BlobId, update: BlobUpdate): MaybePromise<void> {
  const metadata = update.shouldUpdateMetadata ? (update.metadata ?? null) : undefined;
  // The one write that needs no existing blob: setting metadata to null (as the original buffdb).
  const mayBeMissing = update.bytes === undefined && metadata === null;
  const local = toLocalId(id);
  if (local === undefined) {
    if (mayBeMissing) return;
    throw idNotFound(id);
  }
  return then(ops.update(local, update.bytes, metadata), (existed) => {
    if (!existed && !mayBeMissing) throw idNotFound(id);
  });
}

export function deleteBlob(ops: BlobOps, id: BlobId): MaybePromise<void> {
  const local = toLocalId(id);
  if (local === undefined) throw idNotFound(id);
  return then(ops.delete(local), (existed) => {
    if (!existed) throw idNotFound(id);
  });
}

export class BlobStore {
  readonly committer: GroupCommitter<BlobEngineOps>;

  constructor(readonly engine: StoreEngine<BlobEngineOps>) {
    this.committer = new GroupCommitter(engine);
  }

  get(id: BlobId, done: Done<BlobRecord>, seq?: Sequence): void {
    this.committer.submit((ops) => readBlob(ops, id), done, seq);
  }

  store(bytes: Uint8Array, metadata: string | undefined, done: Done<number>, seq?: Sequence): void {
    this.committer.submit((ops) => ops.insert(bytes, metadata ?? null), done, seq);
  }

  update(id: BlobId, update: BlobUpdate, done: Done<void>, seq?: Sequence): void {
    this.committer.submit((ops) => updateBlob(ops, id, update), done, seq);
  }

  delete(id: BlobId, done: Done<void>, seq?: Sequence): void {
    this.committer.submit((ops) => deleteBlob(ops, id), done, seq);
  }

  /** Finishes queued work, then closes the engine. */
  async close(): Promise<void> {
    await this.committer.drainAndClose();
    await this.engine.close();
  }

  /** Promise forms, for callers that do one thing at a time (CLI, library). */
  getBlob(id: BlobId): Promise<BlobRecord> {
    return this.committer.run((ops) => readBlob(ops, id));
  }

  storeBlob(bytes: Uint8Array, metadata?: string): Promise<number> {
    return this.committer.run((ops) => ops.insert(bytes, metadata ?? null));
  }

  updateBlob(id: BlobId, update: BlobUpdate): Promise<void> {
    return this.committer.run((ops) => updateBlob(ops, id, update));
  }

  deleteBlob(id: BlobId): Promise<void> {
    return this.committer.run((ops) => deleteBlob(ops, id));
  }
}
