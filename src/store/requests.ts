/**
 * The request interfaces the gRPC handlers call. The stores implement them for plain requests and
 * the transaction manager for requests that carry a transaction id; `BuffDb.kvFor(txId)` /
 * `blobFor(txId)` pick one — the only place that routing happens.
 */
import type { BlobRecord } from '../backends/backend.js';
import type { BlobId, BlobReader, BlobUpdate } from './blob/blob-store.js';
import type { Upload, UploadHeader } from './blob/upload.js';
import type { Reply, Sequence } from './group-commit.js';

export interface KvRequests {
  get(key: string, done: Reply<string>, seq?: Sequence): void;
  set(key: string, value: string, done: Reply<void>, seq?: Sequence): void;
  delete(key: string, done: Reply<void>, seq?: Sequence): void;
}

export interface BlobRequests {
  get(id: BlobId, done: Reply<BlobRecord>, seq?: Sequence): void;
  store(bytes: Uint8Array, metadata: string | undefined, done: Reply<number>, seq?: Sequence): void;
  update(id: BlobId, update: BlobUpdate, done: Reply<void>, seq?: Sequence): void;
  delete(id: BlobId, done: Reply<void>, seq?: Sequence): void;
  /** Starts (or continues) a large-blob upload. */
  beginUpload(header: UploadHeader): Promise<Upload>;
  /** A consistent reader of one blob, for Download. */
  openReader(id: BlobId): Promise<BlobReader>;
}
