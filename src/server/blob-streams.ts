/**
 * Upload, UploadStatus and Download (spec: blob-streams.md): read the request stream, call the
 * store, write the answers — with backpressure both ways, so neither a fast uploader nor a slow
 * downloader makes the server hold more than a few chunks of one blob.
 */

import type { Readable } from 'node:stream';
import type {
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceError,
  sendUnaryData,
} from '@grpc/grpc-js';
import { asStoreError, invalidArgument } from '../errors.js';
import type * as blob from '../generated/blob.js';
import type { BlobReader } from '../store/blob/blob-store.js';
import { servedRange } from '../store/blob/byte-range.js';
import type { Upload, UploadHeader } from '../store/blob/upload.js';
import type { BuffDb } from '../store/buffdb.js';
import { DecodeFailure } from './codec.js';
import type { MemoryBudget } from './memory-budget.js';
import { budgetedReads, decodeError, openCallBudget, toServiceError } from './stream-handler.js';

/** Download chunks: 1 MiB unless asked, at most 4 MiB. */
const DEFAULT_CHUNK = 1024 * 1024;
const MAX_CHUNK = 4 * 1024 * 1024;

const asNumber = (n: bigint, what: string): number => {
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument(`${what} ${n} is larger than any blob`);
  return Number(n);
};

function uploadHeader(h: blob.UploadHeader): UploadHeader {
  return {
    metadata: h.metadata,
    id: h.id,
    size: h.size === undefined ? undefined : asNumber(h.size, 'size'),
    sha256: h.sha256,
    transactionId: h.transactionId,
    uploadId: h.uploadId,
    offset: asNumber(h.offset, 'offset'),
    shouldUpdateMetadata: h.shouldUpdateMetadata,
  };
}

/** Resolves when the client has read what was written, or the call is gone. */
function drained(call: ServerWritableStream<unknown, unknown>): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      call.off('close', done);
      call.off('cancelled', done);
      resolve();
    };
    call.on('drain', done);
    call.on('close', done);
    call.on('cancelled', done);
  });
}

/** Chunks written to a call and not yet handed to the transport: at most this many at a time. */
const CHUNKS_IN_FLIGHT = 2;

/**
 * Writes a call's chunks at most CHUNKS_IN_FLIGHT ahead of the transport. The call's own buffer
 * would take 16 messages (its object-mode highWaterMark) before `write` answered false: 16 MiB of
 * 1 MiB chunks per download, each kept long enough to outlive a young-generation GC and wait for a
 * full one — most of the server's peak RSS while serving downloads.
 */
class SendWindow {
  private inFlight = 0;
  private gone = false;
  private wake: (() => void) | undefined;

  constructor(private readonly call: ServerWritableStream<unknown, unknown>) {
    // A call that is cancelled or closes may never call back for what it had not sent.
    const end = (): void => {
      this.gone = true;
      this.wake?.();
    };
    call.once('close', end);
    call.once('cancelled', end);
  }

  /** Resolves when the next chunk may be read (`sent` runs once this one is on the transport). */
  async send(message: unknown, sent: () => void): Promise<void> {
    this.inFlight++;
    const more = this.call.write(message, () => {
      this.inFlight--;
      sent();
      this.wake?.();
    });
    if (!more) await drained(this.call);
    while (this.inFlight >= CHUNKS_IN_FLIGHT && !this.gone && !this.call.cancelled) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }
}

export function uploadHandler(db: BuffDb, budget: MemoryBudget) {
  return (
    call: ServerReadableStream<blob.UploadRequest | DecodeFailure, blob.UploadResponse>,
    callback: sendUnaryData<blob.UploadResponse>,
  ): void => {
    // Chunks are read only while the memory budget has room (and one at a time, below).
    const { mem, gate } = budgetedReads(call, budget, 'small');
    let upload: Upload | undefined;
    let answered = false;
    let work: Promise<void> = Promise.resolve();
    const answer = (err: unknown, res?: blob.UploadResponse): void => {
      if (answered) return;
      answered = true;
      if (err !== undefined) {
        callback((err instanceof DecodeFailure ? decodeError(err) : toServiceError(err)) as ServiceError);
        call.removeAllListeners('data');
        call.resume();
      } else callback(null, res);
    };
    const fail = (err: unknown): void => {
      answer(err);
      void upload?.interrupted().catch(() => {});
    };
    // One message at a time: the stream stays paused while a message is being handled, so HTTP/2
    // flow control holds a fast client back instead of the server buffering its chunks.
    const handle = async (msg: blob.UploadRequest | DecodeFailure): Promise<void> => {
      if (msg instanceof DecodeFailure) throw msg;
      if (msg.header !== undefined) {
        if (upload) throw invalidArgument('a second header: an Upload call carries one blob, with one header first');
        const h = uploadHeader(msg.header);
        upload = await db.blobFor(h.transactionId).beginUpload(h);
      } else if (msg.chunk !== undefined) {
        if (!upload)
          throw invalidArgument('a chunk before the header: the first message of an Upload must be the header');
        await upload.write(msg.chunk);
      } else {
        throw invalidArgument('an empty UploadRequest: set header or chunk');
      }
    };
    call.on('data', (msg: blob.UploadRequest | DecodeFailure) => {
      call.pause();
      const held = gate.take();
      work = work.then(async () => {
        if (answered) return mem.release(held);
        try {
          await handle(msg);
          mem.release(held);
          if (!answered) call.resume();
        } catch (err) {
          mem.release(held);
          fail(err);
        }
      });
    });
    call.on('end', () => {
      work = work.then(async () => {
        if (answered) return;
        if (!upload) return answer(invalidArgument('an Upload call with no header: nothing to store'));
        try {
          const res = await upload.end();
          answer(undefined, { id: BigInt(res.id), size: BigInt(res.size), sha256: res.sha256 });
        } catch (err) {
          answer(err);
        }
      });
    });
    const interrupted = (): void => {
      work = work.then(async () => {
        if (answered) return;
        answered = true;
        await upload?.interrupted().catch(() => {});
      });
    };
    call.on('cancelled', interrupted);
    call.on('error', interrupted);
  };
}

export function uploadStatusHandler(db: BuffDb) {
  return (
    call: ServerUnaryCall<blob.UploadStatusRequest | DecodeFailure, blob.UploadStatusResponse>,
    callback: sendUnaryData<blob.UploadStatusResponse>,
  ): void => {
    const req = call.request;
    if (req instanceof DecodeFailure) {
      callback(decodeError(req) as ServiceError);
      return;
    }
    db.blob.uploadStatus(req.uploadId).then(
      (s) => callback(null, { received: BigInt(s.received), exists: s.exists }),
      (err: unknown) => callback(toServiceError(err) as ServiceError),
    );
  };
}

export function downloadHandler(db: BuffDb, budget: MemoryBudget) {
  return (call: ServerWritableStream<blob.DownloadRequest | DecodeFailure, blob.DownloadResponse>): void => {
    const req = call.request;
    const mem = openCallBudget(call as unknown as Readable, budget);
    let reader: BlobReader | undefined;
    const serve = async (): Promise<void> => {
      if (req instanceof DecodeFailure) throw req;
      reader = await db.blobFor(req.transactionId).openReader(req.id);
      const { offset, end } = servedRange(
        req.id,
        reader.size,
        asNumber(req.offset, 'offset'),
        req.length === undefined ? undefined : asNumber(req.length, 'length'),
      );
      const chunkSize = req.chunkSize === 0 ? DEFAULT_CHUNK : Math.min(req.chunkSize, MAX_CHUNK);
      const header = {
        size: BigInt(reader.size),
        metadata: reader.metadata ?? undefined,
        sha256: reader.sha256,
        offset: BigInt(offset),
        length: BigInt(end - offset),
      };
      if (!call.write({ header })) await drained(call);
      const window = new SendWindow(call);
      for (let at = offset; at < end && !call.cancelled; ) {
        const size = Math.min(chunkSize, end - at);
        // Room in the memory budget first; held until the chunk is written to the transport.
        await mem.acquire(size);
        const chunk = await reader.read(at, size);
        at += chunk.length;
        // The next chunk is read while this one is sent, no sooner: a slow reader costs two chunks.
        await window.send({ chunk }, () => mem.release(size));
      }
    };
    serve().then(
      () => {
        reader?.close();
        if (!call.cancelled) call.end();
      },
      (err: unknown) => {
        reader?.close();
        if (!call.cancelled)
          call.emit('error', err instanceof DecodeFailure ? decodeError(err) : toServiceError(asStoreError(err)));
      },
    );
  };
}
