/** Blob gRPC handlers: read the request stream, call the store, write the answers. Nothing else. */
import type {
  ServerDuplexStream,
  ServerReadableStream,
  sendUnaryData,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type * as blob from '../generated/blob.js';
import type { BuffDb } from '../store/buffdb.js';
import { type Done, type Sequence, settle } from '../store/group-commit.js';
import { downloadHandler, uploadHandler, uploadStatusHandler } from './blob-streams.js';
import type { DecodeFailure } from './codec.js';
import { MemoryBudget } from './memory-budget.js';
import { serveBidi, serveEquality } from './stream-handler.js';

type Bidi<Req, Res> = ServerDuplexStream<Req | DecodeFailure, Res>;
type Fold<Req> = ServerReadableStream<Req | DecodeFailure, boolean>;

const toBuffer = (data: Uint8Array): Buffer =>
  Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);

export function blobService(db: BuffDb, budget: MemoryBudget = new MemoryBudget()): UntypedServiceImplementation {
  // Blobs compare by their SHA-256, so comparing large blobs reads none of their chunks.
  const getData = (req: blob.EqDataRequest, reply: Done<Uint8Array>, seq: Sequence) =>
    db.blob.digest(req.id, reply, seq);
  return {
    get: (call: Bidi<blob.GetRequest, blob.GetResponse>) =>
      serveBidi(
        call,
        budget,
        (req, reply, seq) =>
          db
            .blobFor(req.transactionId)
            .get(
              req.id,
              (err, record) =>
                settle(reply, err, record && { bytes: toBuffer(record.data), metadata: record.metadata ?? undefined }),
              seq,
            ),
        'data',
      ),

    store: (call: Bidi<blob.StoreRequest, blob.StoreResponse>) =>
      serveBidi(call, budget, (req, reply, seq) =>
        db
          .blobFor(req.transactionId)
          .store(req.bytes, req.metadata, (err, id) => settle(reply, err, { id: BigInt(id ?? 0) }), seq),
      ),

    update: (call: Bidi<blob.UpdateRequest, blob.UpdateResponse>) =>
      serveBidi(call, budget, (req, reply, seq) =>
        db.blobFor(req.transactionId).update(req.id, req, (err) => settle(reply, err, { id: req.id }), seq),
      ),

    delete: (call: Bidi<blob.DeleteRequest, blob.DeleteResponse>) =>
      serveBidi(call, budget, (req, reply, seq) =>
        db.blobFor(req.transactionId).delete(req.id, (err) => settle(reply, err, { id: req.id }), seq),
      ),

    eqData: (call: Fold<blob.EqDataRequest>, callback: sendUnaryData<boolean>) =>
      serveEquality(call, budget, callback, 'eq', getData),

    notEqData: (call: Fold<blob.NotEqDataRequest>, callback: sendUnaryData<boolean>) =>
      serveEquality(call, budget, callback, 'not-eq', getData),

    upload: uploadHandler(db, budget),
    uploadStatus: uploadStatusHandler(db),
    download: downloadHandler(db, budget),
  };
}
