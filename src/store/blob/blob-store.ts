/**
 * buffdb blob semantics, written once for every backend: the original one-message API (Get,
 * Store, Update, Delete, EqData) and large blobs (Upload, Download) whose bytes live in chunks
 * (large-layout.ts). A blob is either inline (its bytes in the `blob` row) or large (empty row
 * data, a `large` map entry pointing at its chunks).
 */
import { createHash } from 'node:crypto';
import type { BlobEngineOps, BlobRecord, MaybePromise, StoreEngine } from '../../backends/backend.js';
import { idNotFound, resourceExhausted } from '../../errors.js';
import { type Done, GroupCommitter, type Reply, type Sequence, settle } from '../group-commit.js';
import { then } from '../maybe-promise.js';
import type { BlobRequests } from '../requests.js';
import { type BlobLimit, checkBlobSize } from './blob-limit.js';
import { type BlobOp, type BlobStamper, BlobSyncLog } from './blob-sync-log.js';
import { assemble, discardData, LargeBlobs, largeRefOf, setLargeRef } from './large-blobs.js';
import type { LargeRef } from './large-layout.js';
import { type CompleteUpload, expireUploads, Upload, type UploadContext, type UploadHeader } from './upload.js';

export type BlobId = bigint | number;

export interface BlobUpdate {
  /** New data; undefined keeps the data. */
  bytes?: Uint8Array | undefined;
  /** Replace the metadata with `metadata` (undefined = null). */
  shouldUpdateMetadata: boolean;
  metadata?: string | undefined;
}

/** A blob as stored: inline bytes, or a reference to its chunks. */
export interface StoredBlob {
  metadata: string | null;
  data: Uint8Array | undefined;
  large: LargeRef | undefined;
}

/** A consistent view of one blob for Download: its bytes stay readable until `close()`. */
export interface BlobReader {
  size: number;
  metadata: string | null;
  sha256: Buffer;
  read(offset: number, length: number): Promise<Buffer>;
  close(): void;
}

export interface BlobStoreOptions {
  /** Get answers a blob in one message: larger ones are RESOURCE_EXHAUSTED, naming Download. */
  maxGetBytes?: number;
  /** How long an unfinished resumable upload is kept after its last call (default 1 h). */
  uploadTtlMs?: number;
  /** Expire old uploads and collect unused chunks in the background (a server does). */
  background?: boolean;
  /** The backend's largest blob (its `maxBlobBytes` capability); undefined: no limit. */
  limit?: BlobLimit | undefined;
  /** Stamps blob writes for sync (the KV store's identity); undefined: this store never syncs. */
  stamper?: BlobStamper | undefined;
}

const EMPTY = Buffer.alloc(0);
export const DEFAULT_UPLOAD_TTL_MS = 60 * 60 * 1000;
const UPLOAD_EXPIRY_CHECK_MS = 60_000;

/** Ids beyond 2^53 were never handed out: they are simply not found. */
export function toLocalId(id: BlobId): number | undefined {
  const n = typeof id === 'bigint' ? (id <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(id) : undefined) : id;
  return n !== undefined && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** The blob as stored; a row with empty data and a `large` entry is a large blob. */
export function loadBlob(ops: BlobEngineOps, id: number): MaybePromise<StoredBlob | undefined> {
  return then(ops.get(id), (record) => {
    if (record === undefined) return undefined;
    if (record.data.byteLength > 0) return { metadata: record.metadata, data: record.data, large: undefined };
    return then(largeRefOf(ops, id), (large) => ({
      metadata: record.metadata,
      data: large ? undefined : record.data,
      large,
    }));
  });
}

/** A stored blob as one record (Get): a large one is read whole if it fits in a message. */
export function wholeRecord(
  ops: BlobEngineOps,
  id: BlobId,
  stored: StoredBlob,
  maxBytes: number,
): MaybePromise<BlobRecord> {
  if (!stored.large) return { data: stored.data!, metadata: stored.metadata };
  if (stored.large.size > maxBytes) {
    throw resourceExhausted(
      `blob ${id} is ${stored.large.size} bytes, more than one message can carry (${maxBytes}); read it with Download`,
    );
  }
  return assemble(ops, stored.large).then((data) => ({ data, metadata: stored.metadata }));
}

export function readBlob(ops: BlobEngineOps, id: BlobId, maxBytes: number): MaybePromise<BlobRecord> {
  const local = toLocalId(id);
  if (local === undefined) throw idNotFound(id);
  return then(loadBlob(ops, local), (stored) => {
    if (stored === undefined) throw idNotFound(id);
    return wholeRecord(ops, id, stored, maxBytes);
  });
}

/** The SHA-256 of a blob's data (EqData/NotEqData compare by it, so no large blob is read). */
export function blobDigest(ops: BlobEngineOps, id: BlobId): MaybePromise<Buffer> {
  const local = toLocalId(id);
  if (local === undefined) throw idNotFound(id);
  return then(loadBlob(ops, local), (stored) => {
    if (stored === undefined) throw idNotFound(id);
    return stored.large ? stored.large.sha256 : createHash('sha256').update(stored.data!).digest();
  });
}

/** Drops a large blob's chunk reference (when its data is replaced or it is deleted). Answers whether it had one. */
export function dropLarge(ops: BlobEngineOps, id: number): MaybePromise<boolean> {
  return then(largeRefOf(ops, id), (ref) => {
    if (!ref) return false;
    return then(setLargeRef(ops, id, undefined), () => then(discardData(ops, ref.dataId, ref.size), () => true));
  });
}

/** Answers whether chunks were discarded (then they are collected after the commit). */
export function updateBlob(ops: BlobEngineOps, id: BlobId, update: BlobUpdate): MaybePromise<boolean> {
  const metadata = update.shouldUpdateMetadata ? (update.metadata ?? null) : undefined;
  // The one write that needs no existing blob: setting metadata to null (as the original buffdb).
  const mayBeMissing = update.bytes === undefined && metadata === null;
  const local = toLocalId(id);
  if (local === undefined) {
    if (mayBeMissing) return false;
    throw idNotFound(id);
  }
  return then(ops.update(local, update.bytes, metadata), (existed) => {
    if (!existed) {
      if (mayBeMissing) return false;
      throw idNotFound(id);
    }
    return update.bytes === undefined ? false : dropLarge(ops, local);
  });
}

export function deleteBlob(ops: BlobEngineOps, id: BlobId): MaybePromise<boolean> {
  const local = toLocalId(id);
  if (local === undefined) throw idNotFound(id);
  return then(ops.delete(local), (existed) => {
    if (!existed) throw idNotFound(id);
    return dropLarge(ops, local);
  });
}

export class BlobStore implements BlobRequests {
  readonly committer: GroupCommitter<BlobEngineOps>;
  readonly large: LargeBlobs;
  readonly maxGetBytes: number;
  readonly limit: BlobLimit | undefined;
  /** Fleet ids and the change log sync reads (docs/sync.md "Blobs"). */
  readonly syncLog: BlobSyncLog;
  private readonly uploads: UploadContext;
  private expiryTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly engine: StoreEngine<BlobEngineOps>,
    options: BlobStoreOptions = {},
  ) {
    this.committer = new GroupCommitter(engine);
    this.large = new LargeBlobs(this.committer);
    this.maxGetBytes = options.maxGetBytes ?? Number.MAX_SAFE_INTEGER;
    this.limit = options.limit;
    this.syncLog = new BlobSyncLog(options.stamper);
    this.uploads = {
      committer: this.committer,
      ttlMs: options.uploadTtlMs ?? DEFAULT_UPLOAD_TTL_MS,
      running: new Set(),
      pausedHashes: new Map(),
      collect: () => void this.large.collect(),
      limit: this.limit,
    };
    if (options.background) {
      this.expiryTimer = setInterval(() => void this.expireUploads(false), UPLOAD_EXPIRY_CHECK_MS);
      this.expiryTimer.unref();
    }
  }

  /** Removes uploads a crash or their age left behind, and the chunks nothing uses (done at open). */
  async expireUploads(atOpen: boolean): Promise<void> {
    try {
      await expireUploads(this.committer, this.uploads.running, atOpen);
      await this.large.collect();
    } catch {
      // Tried again at the next check (the store may be closing).
    }
  }

  /** Collects discarded chunks once the write that discarded them has committed. */
  private collecting<T>(done: Reply<T>): Done<boolean> {
    return (err, discarded) => {
      if (discarded) void this.large.collect();
      settle(done, err);
    };
  }

  get(id: BlobId, done: Reply<BlobRecord>, seq?: Sequence): void {
    this.committer.submit((ops) => readBlob(ops, id, this.maxGetBytes), done, seq);
  }

  store(bytes: Uint8Array, metadata: string | undefined, done: Reply<number>, seq?: Sequence): void {
    this.committer.submit(
      (ops) => {
        this.checkSize(bytes);
        return this.syncLog.insert(ops, bytes, metadata ?? null);
      },
      done,
      seq,
    );
  }

  update(id: BlobId, update: BlobUpdate, done: Reply<void>, seq?: Sequence): void {
    this.committer.submit(
      (ops) => {
        this.checkSize(update.bytes);
        return this.logged(ops, id, update.bytes === undefined ? 'meta' : 'put', updateBlob(ops, id, update));
      },
      this.collecting(done),
      seq,
    );
  }

  /** A write's result, once the write is in the sync log (a blob that was not there is not logged). */
  private async logged<T>(ops: BlobEngineOps, id: BlobId, op: BlobOp, write: MaybePromise<T>): Promise<T> {
    const result = await write;
    const local = toLocalId(id);
    if (local !== undefined) await this.syncLog.recordLocal(ops, local, op);
    return result;
  }

  /** A fresh id for a blob stored later (a transaction's): a fleet id when the store syncs. */
  async reserveId(ops: BlobEngineOps): Promise<number> {
    return (await this.syncLog.reserve(ops)) ?? ops.reserveId();
  }

  /** Refuses data over the backend's largest blob (RESOURCE_EXHAUSTED). */
  checkSize(bytes: Uint8Array | undefined): void {
    if (bytes !== undefined) checkBlobSize(this.limit, bytes.byteLength);
  }

  delete(id: BlobId, done: Reply<void>, seq?: Sequence): void {
    this.committer.submit((ops) => this.logged(ops, id, 'delete', deleteBlob(ops, id)), this.collecting(done), seq);
  }

  digest(id: BlobId, done: Done<Buffer>, seq?: Sequence): void {
    this.committer.submit((ops) => blobDigest(ops, id), done, seq);
  }

  /** Starts (or continues) an upload that commits as a blob of this store. */
  async beginUpload(header: UploadHeader): Promise<Upload> {
    if (header.id !== undefined) await this.getStored(header.id);
    return this.beginUploadWith(header, (ref, h, stateKey) => this.commitUpload(ref, h, stateKey));
  }

  /** Starts an upload that `complete` commits (a transaction registers it instead of committing). */
  beginUploadWith(header: UploadHeader, complete: CompleteUpload): Promise<Upload> {
    return Upload.begin(this.uploads, header, complete);
  }

  /** Makes an uploaded blob live: a new blob, or new data for an existing one (its old chunks go). */
  private async commitUpload(ref: LargeRef, header: UploadHeader, stateKey: Buffer): Promise<number> {
    const { id, discarded } = await this.committer.run(async (ops) => {
      let local: number;
      let discarded = false;
      if (header.id !== undefined) {
        const existing = toLocalId(header.id);
        if (existing === undefined || (await ops.get(existing)) === undefined) throw idNotFound(header.id);
        discarded = await dropLarge(ops, existing);
        await ops.update(existing, EMPTY, header.shouldUpdateMetadata ? (header.metadata ?? null) : undefined);
        local = existing;
        await this.syncLog.recordLocal(ops, local, 'put');
      } else {
        local = await this.syncLog.insert(ops, EMPTY, header.metadata ?? null);
      }
      await setLargeRef(ops, local, ref);
      await ops.maps.delete('upload', stateKey);
      return { id: local, discarded };
    });
    if (discarded) void this.large.collect();
    return id;
  }

  /** How many bytes of a resumable upload are durably held. */
  uploadStatus(uploadId: string): Promise<{ received: number; exists: boolean }> {
    return Upload.status(this.committer, uploadId);
  }

  private async getStored(id: BlobId): Promise<StoredBlob> {
    const local = toLocalId(id);
    const stored = local === undefined ? undefined : await this.committer.run((ops) => loadBlob(ops, local));
    if (stored === undefined) throw idNotFound(id);
    return stored;
  }

  /** A reader of one blob as it is now (its chunks are kept until the reader closes). */
  async openReader(id: BlobId): Promise<BlobReader> {
    const local = toLocalId(id);
    if (local === undefined) throw idNotFound(id);
    // Pinned inside the batch that read it, so no later batch can collect its chunks first.
    const stored = await this.committer.run((ops) =>
      then(loadBlob(ops, local), (s) => {
        if (s?.large) this.large.pin(s.large.dataId);
        return s;
      }),
    );
    if (stored === undefined) throw idNotFound(id);
    return this.readerOf(stored);
  }

  /** A reader over a stored blob (whose large data, if any, is already pinned). */
  readerOf(stored: StoredBlob): BlobReader {
    if (stored.large) {
      const { dataId, size, sha256 } = stored.large;
      let open = true;
      return {
        size,
        sha256,
        metadata: stored.metadata,
        read: (offset, length) => this.large.read(dataId, offset, length),
        close: () => {
          if (open) this.large.unpin(dataId);
          open = false;
        },
      };
    }
    const data = Buffer.from(stored.data!.buffer, stored.data!.byteOffset, stored.data!.byteLength);
    return {
      size: data.length,
      sha256: createHash('sha256').update(data).digest(),
      metadata: stored.metadata,
      read: async (offset, length) => data.subarray(offset, offset + length),
      close: () => {},
    };
  }

  /** Finishes queued work, then closes the engine. */
  async close(): Promise<void> {
    clearInterval(this.expiryTimer);
    await this.committer.drainAndClose();
    await this.engine.close();
  }

  /** Promise forms, for callers that do one thing at a time (CLI, library). */
  getBlob(id: BlobId): Promise<BlobRecord> {
    return this.committer.run((ops) => readBlob(ops, id, this.maxGetBytes));
  }

  storeBlob(bytes: Uint8Array, metadata?: string): Promise<number> {
    return this.committer.run((ops) => {
      this.checkSize(bytes);
      return this.syncLog.insert(ops, bytes, metadata ?? null);
    });
  }

  async updateBlob(id: BlobId, update: BlobUpdate): Promise<void> {
    this.checkSize(update.bytes); // an async function: a refusal is a rejection
    const op = update.bytes === undefined ? 'meta' : 'put';
    if (await this.committer.run((ops) => this.logged(ops, id, op, updateBlob(ops, id, update)))) {
      void this.large.collect();
    }
  }

  async deleteBlob(id: BlobId): Promise<void> {
    if (await this.committer.run((ops) => this.logged(ops, id, 'delete', deleteBlob(ops, id)))) {
      void this.large.collect();
    }
  }
}
