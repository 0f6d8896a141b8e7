/** Blob gRPC handlers: read the request stream, call the store, write the answers. Nothing else. */
import type {
  ServerDuplexStream,
  ServerReadableStream,
  sendUnaryData,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { BlobRecord } from '../backends/backend.js';
import type * as blob from '../generated/blob.js';
import type { BlobStore } from '../store/blob-store.js';
import { EqualityCheck } from '../store/equality.js';
import type { DecodeFailure } from './codec.js';
import { MemoryBudget } from './memory-budget.js';
import { serveBidi, serveFold } from './stream-handler.js';

type Bidi<Req, Res> = ServerDuplexStream<Req | DecodeFailure, Res>;
type Fold<Req> = ServerReadableStream<Req | DecodeFailure, boolean>;

const toBuffer = (data: Uint8Array): Buffer =>
  Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);

export function blobService(store: BlobStore, budget: MemoryBudget = new MemoryBudget()): UntypedServiceImplementation {
  return {
    get: (call: Bidi<blob.GetRequest, blob.GetResponse>) =>
      serveBidi(
        call,
        budget,
        (req, reply, seq) =>
          store.get(
            req.id,
            (err, record) =>
              reply(
                err,
                record && {
                  bytes: toBuffer(record.data),
                  metadata: record.metadata ?? undefined,
                },
              ),
            seq,
            req.transactionId,
          ),
        'data',
      ),

    store: (call: Bidi<blob.StoreRequest, blob.StoreResponse>) =>
      serveBidi(call, budget, (req, reply, seq) =>
        store.store(req.bytes, req.metadata, (err, id) => reply(err, { id: BigInt(id ?? 0) }), seq, req.transactionId),
      ),

    update: (call: Bidi<blob.UpdateRequest, blob.UpdateResponse>) =>
      serveBidi(call, budget, (req, reply, seq) =>
        store.update(req.id, req, (err) => reply(err, { id: req.id }), seq, req.transactionId),
      ),

    delete: (call: Bidi<blob.DeleteRequest, blob.DeleteResponse>) =>
      serveBidi(call, budget, (req, reply, seq) =>
        store.delete(req.id, (err) => reply(err, { id: req.id }), seq, req.transactionId),
      ),

    eqData: (call: Fold<blob.EqDataRequest>, callback: sendUnaryData<boolean>) => {
      const check = new EqualityCheck('eq');
      serveFold(
        call,
        budget,
        callback,
        (req, reply, seq) => store.get(req.id, reply, seq),
        (record: BlobRecord) => check.add(record.data),
        () => check.finish(),
      );
    },

    notEqData: (call: Fold<blob.NotEqDataRequest>, callback: sendUnaryData<boolean>) => {
      const check = new EqualityCheck('not-eq');
      serveFold(
        call,
        budget,
        callback,
        (req, reply, seq) => store.get(req.id, reply, seq),
        (record: BlobRecord) => check.add(record.data),
        () => check.finish(),
      );
    },
  };
}
