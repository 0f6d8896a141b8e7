/**
 * Large blobs from a client (network or in-process): `uploadBlob` streams a file, a Node stream or
 * bytes through Upload with backpressure; `downloadBlob` returns a Node stream of a blob's bytes
 * (or a range of them) with the header — size, metadata, SHA-256 — as a promise.
 */
import { createReadStream } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { Metadata } from '@grpc/grpc-js';
import type { BlobClient, DownloadHeader, UploadHeader } from '../generated/blob.js';

export interface UploadOptions extends Partial<Omit<UploadHeader, 'offset' | 'shouldUpdateMetadata'>> {
  offset?: bigint;
  shouldUpdateMetadata?: boolean;
  /** Bytes per message (default 1 MiB). */
  chunkSize?: number;
  /** Call metadata (an `authorization` token, …). */
  callMetadata?: Metadata;
}

export interface UploadResult {
  id: bigint;
  size: bigint;
  sha256: Buffer;
}

const DEFAULT_CHUNK = 1024 * 1024;
const MAX_QUEUED = 4;

async function* rechunk(source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let bytes = 0;
  for await (const piece of source) {
    let buf = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    // Nothing pending: whole messages go out as they are, with no copy.
    while (bytes === 0 && buf.length >= size) {
      yield buf.subarray(0, size);
      buf = buf.subarray(size);
    }
    while (bytes + buf.length >= size) {
      const take = size - bytes;
      pending.push(buf.subarray(0, take));
      yield Buffer.concat(pending, size);
      pending = [];
      bytes = 0;
      buf = buf.subarray(take);
    }
    if (buf.length > 0) {
      pending.push(buf);
      bytes += buf.length;
    }
  }
  if (bytes > 0) yield Buffer.concat(pending, bytes);
}

/** What `uploadBlob` takes: a file path, a Node stream, an async iterable of bytes, or bytes. */
export type UploadSource = Readable | AsyncIterable<Uint8Array> | Uint8Array | string;

/** `upload` and `download` of the network and transitive clients. */
export interface BlobTransfer {
  /** Uploads a file, stream or bytes as one blob (see `uploadBlob`). */
  upload(source: UploadSource, options?: UploadOptions): Promise<UploadResult>;
  /** Blob `id` (or a range of it) as a stream, with its header (see `downloadBlob`). */
  download(id: bigint | number, options?: DownloadOptions): DownloadStream;
}

/** `upload` and `download` over one Blob client. */
export function blobTransfer(client: BlobClient): BlobTransfer {
  return {
    upload: (source, options) => uploadBlob(client, source, options),
    download: (id, options) => downloadBlob(client, BigInt(id), options),
  };
}

function sourceOf(source: UploadSource, chunk: number): AsyncIterable<Uint8Array> {
  if (typeof source === 'string') return createReadStream(source, { highWaterMark: chunk });
  if (source instanceof Uint8Array) {
    return (async function* () {
      yield source;
    })();
  }
  return source;
}

/**
 * Uploads `source` (a file path, a stream, an async iterable or bytes) as one blob. Resolves once
 * the server has committed it; rejects with the call's status otherwise.
 */
export function uploadBlob(
  client: BlobClient,
  source: UploadSource,
  options: UploadOptions = {},
): Promise<UploadResult> {
  const {
    chunkSize = DEFAULT_CHUNK,
    offset = 0n,
    shouldUpdateMetadata = false,
    callMetadata = new Metadata(),
    ...rest
  } = options;
  return new Promise((resolve, reject) => {
    let settled = false;
    // Messages handed to grpc-js but not yet to the transport: a few at most, so the client holds
    // a few chunks too (grpc-js alone would queue 16 before asking to wait).
    let queued = 0;
    let wake = (): void => {};
    const call = client.upload(callMetadata, (err, res) => {
      settled = true;
      wake();
      if (err) reject(err);
      else resolve({ id: res!.id, size: res!.size, sha256: res!.sha256 });
    });
    call.on('error', () => {});
    const sent = (): void => {
      queued--;
      wake();
    };
    (async () => {
      call.write({ header: { ...rest, offset, shouldUpdateMetadata } });
      for await (const chunk of rechunk(sourceOf(source, chunkSize), chunkSize)) {
        if (settled) return;
        queued++;
        call.write({ chunk }, sent);
        while (queued >= MAX_QUEUED && !settled) await new Promise<void>((r) => (wake = r));
      }
      call.end();
    })().catch((err: unknown) => {
      // The source failed (a file that cannot be read): end the call without completing the blob.
      call.cancel();
      if (!settled) {
        settled = true;
        reject(err);
      }
    });
  });
}

export interface DownloadOptions {
  offset?: bigint;
  length?: bigint;
  chunkSize?: number;
  transactionId?: string;
  /** Call metadata (an `authorization` token, …). */
  callMetadata?: Metadata;
}

/** A blob's bytes as a stream; `header` resolves with size, metadata, SHA-256 and the range served. */
export type DownloadStream = Readable & { header: Promise<DownloadHeader> };

export function downloadBlob(client: BlobClient, id: bigint, options: DownloadOptions = {}): DownloadStream {
  const call = client.download(
    {
      id,
      offset: options.offset ?? 0n,
      length: options.length,
      transactionId: options.transactionId,
      chunkSize: options.chunkSize ?? 0,
    },
    options.callMetadata ?? new Metadata(),
  );
  const out = new PassThrough() as PassThrough & { header: Promise<DownloadHeader> };
  let gotHeader: (h: DownloadHeader) => void = () => {};
  let noHeader: (err: unknown) => void = () => {};
  out.header = new Promise<DownloadHeader>((resolve, reject) => {
    gotHeader = resolve;
    noHeader = reject;
  });
  out.header.catch(() => {});
  let headerSeen = false;
  call.on('data', (msg: { header?: DownloadHeader; chunk?: Buffer }) => {
    if (msg.header) {
      headerSeen = true;
      gotHeader(msg.header);
    }
    // Backpressure: stop reading from the server while our reader is behind.
    else if (msg.chunk && !out.write(msg.chunk)) {
      call.pause();
      out.once('drain', () => call.resume());
    }
  });
  call.on('end', () => out.end());
  call.on('error', (err) => {
    noHeader(err);
    // Before the header, `header` rejects with the status: a caller that awaits it and never reads
    // the stream must not also meet an unhandled 'error' event.
    if (!headerSeen && out.listenerCount('error') === 0) out.on('error', () => {});
    out.destroy(err);
  });
  out.on('close', () => call.cancel());
  return out;
}
