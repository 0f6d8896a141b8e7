/**
 * The request interfaces the gRPC handlers call. The stores implement them for plain requests and
 * the transaction manager for requests that carry a transaction id; `BuffDb.kvFor(txId)` /
 * `blobFor(txId)` pick one — the only place that routing happens.
 */
import type { BlobRecord } from '../backends/backend.js';
import type { BlobId, BlobReader, BlobUpdate } from './blob/blob-store.js';
import type { Upload, UploadHeader } from './blob/upload.js';
import type { Done, Sequence } from './group-commit.js';

export interface KvRequests {
  get(key: string, done: Done<string>, seq?: Sequence): void;
  set(key: string, value: string, done: Done<void>, seq?: Sequence): void;
  delete(key: string, done: Done<void>, seq?: Sequence): void;
}

export interface BlobRequests {
  get(id: BlobId, done: Done<BlobRecord>, seq?: Sequence): void;
  store(bytes: Uint8Array, metadata: string | undefined, done: Done<number>, seq?: Sequence): void;
  update(id: BlobId, update: BlobUpdate, done: Done<void>, seq?: Sequence): void;
  delete(id: BlobId, done: Done<void>, seq?: Sequence): void;
  /** Starts (or continues) a large-blob upload. */
  beginUpload(header: UploadHeader): Promise<Upload>;
  /** A consistent reader of one blob, for Download. */
  openReader(id: BlobId): Promise<BlobReader>;
}
