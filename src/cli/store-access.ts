/**
 * What the `kv` and `blob` commands do to a store, behind one small interface with two
 * implementations: the store file itself (through the store layer, as the server does) and a
 * running server (`--addr`, remote.ts, over gRPC). Both give the same results and the same
 * errors, so the commands format output once. A new command adds its operation to both.
 *
 * The remote implementation is imported only when --addr is given: `buffdb kv get` on a file
 * loads no gRPC.
 */
import type { BlobRecord } from '../backends/backend.js';
import type { BlobId, BlobStore, BlobUpdate } from '../store/blob/blob-store.js';
import { type ServedRange, servedRange } from '../store/blob/byte-range.js';
import { CHUNK_SIZE } from '../store/blob/large-layout.js';
import type { EqualityMode } from '../store/equality.js';
import type { KvStore } from '../store/kv/kv-store.js';
import { openBlobStore, openKvStore, resolveBackend } from '../store/open-store.js';
import { CliError, EXIT } from './exit-codes.js';

export interface KvAccess {
  /** The values of `keys`, in order; rejects with the first key's error in argument order. */
  get(keys: string[]): Promise<string[]>;
  set(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
  /** eq / not-eq over the keys' values, answered as soon as known (as the gRPC Eq stream). */
  compare(keys: string[], mode: EqualityMode): Promise<boolean>;
}

export interface BlobAccess {
  get(id: bigint): Promise<BlobRecord>;
  store(bytes: Uint8Array, metadata: string | undefined): Promise<BlobId>;
  update(id: bigint, update: BlobUpdate): Promise<void>;
  delete(id: bigint): Promise<void>;
  compare(ids: bigint[], mode: EqualityMode): Promise<boolean>;
  /** Stores a stream as a blob (or, with `id`, as that blob's new data) through Upload: bounded memory. */
  upload(source: AsyncIterable<Buffer>, write: StreamedWrite): Promise<BlobId>;
  /** `[offset, offset + length)` of blob `id` (clamped as Download does): the header now, the bytes as read. */
  read(id: bigint, offset: number, length: number | undefined): Promise<BlobRange>;
}

export interface StreamedWrite {
  /** Replace this blob's data; undefined: a new blob. */
  id?: bigint;
  metadata: string | undefined;
  shouldUpdateMetadata: boolean;
}

export interface BlobRange {
  /** The whole blob's size. */
  size: number;
  metadata: string | null;
  offset: number;
  length: number;
  /** The bytes of the range; must be read to the end (that releases what it holds). */
  chunks: AsyncIterable<Buffer>;
}

/** A running server to talk to instead of a file (`--addr`). */
export interface RemoteTarget {
  addr: string;
  /** PEM CA bundle to verify the server with (TLS on when any TLS option is given). */
  tlsCa?: string;
  /** Client certificate and key, for mutual TLS. */
  tlsCert?: string;
  tlsKey?: string;
  token?: string;
}

export interface StoreTarget {
  store: string;
  backend: string;
  remote?: RemoteTarget;
}

/** Opens a store, runs `work`, and always closes the store so every write is committed. */
export async function withStore<S extends { close(): Promise<void> }, T>(
  label: string,
  target: StoreTarget,
  open: (target: StoreTarget) => Promise<S>,
  work: (store: S) => Promise<T>,
): Promise<T> {
  let store: S;
  try {
    store = await open(target);
  } catch (err) {
    // The store layer already names the store (open-store.ts); other failures get the name here.
    const message = (err as Error).message;
    const named = message.startsWith('cannot open the ')
      ? message
      : `cannot open the ${label} store ${target.store}: ${message}`;
    throw new CliError(EXIT.FAILURE, named);
  }
  let result: T;
  try {
    result = await work(store);
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  await store.close();
  return result;
}

/** Folds values through eq / not-eq, stopping at the first answer; `next(i)` reads the i-th value. */
export async function compareValues(
  count: number,
  mode: EqualityMode,
  next: (i: number) => Promise<string | Uint8Array>,
): Promise<boolean> {
  // Loaded here: it pulls in node:crypto, which plain get/set do not need.
  const { EqualityCheck } = await import('../store/equality.js');
  const check = new EqualityCheck(mode);
  for (let i = 0; i < count; i++) {
    if (check.add(await next(i)) === false) return false;
  }
  return check.finish();
}

function fileKv(kv: KvStore): KvAccess {
  // Every key is read in one batch (one consistent snapshot); errors are reported in key order.
  const readAll = async (keys: string[]): Promise<string[]> => {
    const results = await Promise.allSettled(keys.map((key) => kv.getValue(key)));
    return results.map((r) => {
      if (r.status === 'rejected') throw r.reason;
      return r.value;
    });
  };
  return {
    get: readAll,
    set: (key, value) => kv.setValue(key, value),
    delete: (key) => kv.deleteKey(key),
    compare: async (keys, mode) => {
      const results = await Promise.allSettled(keys.map((key) => kv.getValue(key)));
      return compareValues(keys.length, mode, async (i) => {
        const r = results[i]!;
        if (r.status === 'rejected') throw r.reason;
        return r.value;
      });
    },
  };
}

function fileBlob(blob: BlobStore): BlobAccess {
  return {
    get: (id) => blob.getBlob(id),
    store: (bytes, metadata) => blob.storeBlob(bytes, metadata),
    update: (id, update) => blob.updateBlob(id, update),
    delete: (id) => blob.deleteBlob(id),
    // One blob at a time, hashed as it comes, so comparing large blobs holds only one of them.
    compare: (ids, mode) => compareValues(ids.length, mode, async (i) => (await blob.getBlob(ids[i]!)).data),
    upload: async (source, write) => {
      const upload = await blob.beginUpload({
        ...write,
        id: write.id,
        size: undefined,
        sha256: undefined,
        transactionId: undefined,
        uploadId: undefined,
        offset: 0,
      });
      try {
        for await (const chunk of source) await upload.write(chunk);
      } catch (err) {
        await upload.interrupted();
        throw err;
      }
      return (await upload.end()).id;
    },
    read: async (id, offset, length) => {
      const reader = await blob.openReader(id);
      let range: ServedRange;
      try {
        range = servedRange(id, reader.size, offset, length);
      } catch (err) {
        reader.close();
        throw err;
      }
      async function* chunks(): AsyncGenerator<Buffer> {
        try {
          for (let at = range.offset; at < range.end; ) {
            const chunk = await reader.read(at, Math.min(CHUNK_SIZE, range.end - at));
            at += chunk.length;
            yield chunk;
          }
        } finally {
          reader.close();
        }
      }
      const { size, metadata } = reader;
      return { size, metadata, offset: range.offset, length: range.end - range.offset, chunks: chunks() };
    },
  };
}

export async function withKv<T>(target: StoreTarget, work: (kv: KvAccess) => Promise<T>): Promise<T> {
  if (target.remote) return (await import('./remote.js')).withRemote(target.remote, (r) => work(r.kv));
  return withStore(
    'KV',
    target,
    async ({ backend, store }) => openKvStore(await resolveBackend(backend), store, { background: false }),
    (kv) => work(fileKv(kv)),
  );
}

export async function withBlob<T>(target: StoreTarget, work: (blob: BlobAccess) => Promise<T>): Promise<T> {
  if (target.remote) return (await import('./remote.js')).withRemote(target.remote, (r) => work(r.blob));
  return withStore(
    'BLOB',
    target,
    async ({ backend, store }) => openBlobStore(await resolveBackend(backend), store),
    (blob) => work(fileBlob(blob)),
  );
}
