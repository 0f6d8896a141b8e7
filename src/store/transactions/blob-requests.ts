/**
 * BLOB requests inside a transaction: reads see the transaction's own writes first, then the
 * blob as it was at first touch (validated at commit); writes wait in the overlay until commit.
 */
import type { BlobRecord } from '../../backends/backend.js';
import { aborted, idNotFound } from '../../errors.js';
import {
  type BlobId,
  type BlobReader,
  type BlobStore,
  loadBlob,
  type StoredBlob,
  toLocalId,
  wholeRecord,
} from '../blob/blob-store.js';
import type { Upload } from '../blob/upload.js';
import type { Reply, Sequence } from '../group-commit.js';
import type { BlobRequests } from '../requests.js';
import { firstSeen, type Tx } from './tx-state.js';

/** Runs work on the transaction in order (TransactionManager.enqueue for one id). */
export type Enqueue = <R>(
  writes: boolean,
  seq: Sequence | undefined,
  done: Reply<R>,
  work: (tx: Tx) => Promise<R>,
) => void;

const copyBytes = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes);

function call<R>(enqueue: Enqueue, writes: boolean, work: (tx: Tx) => Promise<R>): Promise<R> {
  return new Promise((resolve, reject) =>
    enqueue(writes, undefined, (err, r) => (err ? reject(err) : resolve(r as R)), work),
  );
}

export function txBlobRequests(store: BlobStore, txId: string, enqueue: Enqueue): BlobRequests {
  const seen = (tx: Tx, id: number): Promise<StoredBlob | undefined> =>
    firstSeen(tx.blobSeen, id, () => store.committer.run((ops) => loadBlob(ops, id)));
  const current = async (tx: Tx, id: BlobId): Promise<[number, StoredBlob] | undefined> => {
    const local = toLocalId(id);
    if (local === undefined) return undefined;
    const written = tx.blobWrites.get(local);
    const blob = written !== undefined ? (written.record ?? undefined) : await seen(tx, local);
    return blob === undefined ? undefined : [local, blob];
  };
  const isNew = (tx: Tx, id: number): boolean => tx.blobWrites.get(id)?.isNew ?? false;

  return {
    get: (id, done, seq) =>
      enqueue(false, seq, done, async (tx): Promise<BlobRecord> => {
        const found = await current(tx, id);
        if (found === undefined) throw idNotFound(id);
        const blob = found[1];
        return store.committer.run((ops) => wholeRecord(ops, id, blob, store.maxGetBytes));
      }),

    store: (bytes, metadata, done, seq) => {
      const data = copyBytes(bytes);
      enqueue(true, seq, done, async (tx) => {
        store.checkSize(data);
        // The id is reserved now (so the client gets it now) and the blob stored at commit.
        const id = await store.committer.run((ops) => store.reserveId(ops));
        tx.blobWrites.set(id, { record: { data, metadata: metadata ?? null, large: undefined }, isNew: true });
        return id;
      });
    },

    update: (id, update, done, seq) => {
      const bytes = update.bytes === undefined ? undefined : copyBytes(update.bytes);
      const metadata = update.shouldUpdateMetadata ? (update.metadata ?? null) : undefined;
      // As outside transactions: setting metadata to null needs no existing blob.
      const mayBeMissing = bytes === undefined && metadata === null;
      enqueue(true, seq, done, async (tx) => {
        store.checkSize(bytes);
        const found = await current(tx, id);
        if (found === undefined) {
          if (mayBeMissing) return;
          throw idNotFound(id);
        }
        const [local, blob] = found;
        tx.blobWrites.set(local, {
          record: {
            data: bytes ?? blob.data,
            large: bytes === undefined ? blob.large : undefined,
            metadata: metadata === undefined ? blob.metadata : metadata,
          },
          isNew: isNew(tx, local),
          uploadState: bytes === undefined ? tx.blobWrites.get(local)?.uploadState : undefined,
        });
      });
    },

    delete: (id, done, seq) =>
      enqueue(true, seq, done, async (tx) => {
        const found = await current(tx, id);
        if (found === undefined) throw idNotFound(id);
        tx.blobWrites.set(found[0], { record: null, isNew: isNew(tx, found[0]) });
      }),

    beginUpload: async (header): Promise<Upload> => {
      if (header.id !== undefined) {
        await call(enqueue, true, async (tx) => {
          if ((await current(tx, header.id!)) === undefined) throw idNotFound(header.id!);
        });
      } else {
        await call(enqueue, true, async () => {});
      }
      // The uploaded blob joins the transaction: it becomes visible at the commit.
      return store.beginUploadWith(header, (ref, h, uploadState) =>
        call(enqueue, true, async (tx) => {
          if (h.id === undefined) {
            const id = await store.committer.run((ops) => store.reserveId(ops));
            tx.blobWrites.set(id, {
              record: { data: undefined, large: ref, metadata: h.metadata ?? null },
              isNew: true,
              uploadState,
            });
            return id;
          }
          const found = await current(tx, h.id);
          if (found === undefined) throw idNotFound(h.id);
          const [local, blob] = found;
          const metadata = h.shouldUpdateMetadata ? (h.metadata ?? null) : blob.metadata;
          tx.blobWrites.set(local, {
            record: { data: undefined, large: ref, metadata },
            isNew: isNew(tx, local),
            uploadState,
          });
          return local;
        }),
      );
    },

    openReader: (id) =>
      call(enqueue, false, async (tx): Promise<BlobReader> => {
        const found = await current(tx, id);
        if (found === undefined) throw idNotFound(id);
        const [local, blob] = found;
        if (blob.large && !tx.blobWrites.has(local)) {
          // The chunks the transaction saw must still be there: pin them, or say why not.
          await store.committer.run(async (ops) => {
            const now = await loadBlob(ops, local);
            if (now?.large?.dataId !== blob.large!.dataId) {
              throw aborted(
                `blob ${id} was changed by another writer after transaction ${JSON.stringify(txId)} read it; retry the transaction`,
              );
            }
            store.large.pin(blob.large!.dataId);
          });
        } else if (blob.large) {
          store.large.pin(blob.large.dataId);
        }
        return store.readerOf(blob);
      }),
  };
}
