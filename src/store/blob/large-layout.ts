/**
 * How large blobs lie in the BLOB store's maps (any backend). A blob written by Upload keeps its
 * row in the `blob` table (metadata; empty data) and its bytes in 1 MiB chunks:
 *
 *   chunk:  data id (8) + chunk index (4)  → bytes (every chunk CHUNK_SIZE long but the last)
 *   large:  blob id (8)                     → data id (8) + size (8) + SHA-256 (32)
 *   upload: 'u' + upload id                 → a resumable upload's state (JSON)
 *   upload: 'g' + data id (8)               → chunks of data no blob uses any more (to delete)
 *   meta:   'data_id'                       → the last data id handed out
 *
 * A data id is never reused and its chunks never change once its blob is committed, so a download
 * reads a consistent snapshot without holding anything but the data id.
 */

export const CHUNK_SIZE = 1024 * 1024;

const HIGH = 2 ** 32;

/**
 * `pieces` (in order, `total` bytes in all) cut into chunks of CHUNK_SIZE, the last one shorter
 * if `total` is not a multiple. A chunk within one piece is a view of it; only a chunk that spans
 * pieces is copied, so bytes received as whole chunks (the usual upload) are never copied, and
 * nothing allocated here is larger than one chunk.
 */
export function toChunks(pieces: readonly Buffer[], total: number): Buffer[] {
  const chunks: Buffer[] = [];
  let p = 0;
  let at = 0; // within pieces[p]
  for (let start = 0; start < total; start += CHUNK_SIZE) {
    const size = Math.min(CHUNK_SIZE, total - start);
    const piece = pieces[p]!;
    if (piece.length - at >= size) {
      chunks.push(piece.subarray(at, at + size));
      at += size;
    } else {
      const out = Buffer.allocUnsafe(size);
      for (let filled = 0; filled < size; ) {
        const from = pieces[p]!;
        const n = Math.min(from.length - at, size - filled);
        from.copy(out, filled, at, at + n);
        filled += n;
        at += n;
        if (at === from.length) {
          p++;
          at = 0;
        }
      }
      chunks.push(out);
    }
    if (p < pieces.length && at === pieces[p]!.length) {
      p++;
      at = 0;
    }
  }
  return chunks;
}

export function u64(n: number): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeUInt32BE(Math.floor(n / HIGH), 0);
  out.writeUInt32BE(n >>> 0, 4);
  return out;
}

export function readU64(buf: Buffer, at = 0): number {
  return buf.readUInt32BE(at) * HIGH + buf.readUInt32BE(at + 4);
}

export function chunkKey(dataId: number, index: number): Buffer {
  const out = Buffer.allocUnsafe(12);
  out.writeUInt32BE(Math.floor(dataId / HIGH), 0);
  out.writeUInt32BE(dataId >>> 0, 4);
  out.writeUInt32BE(index, 8);
  return out;
}

/** Where a large blob's bytes are. */
export interface LargeRef {
  dataId: number;
  size: number;
  sha256: Buffer;
}

export function encodeLargeRef(ref: LargeRef): Buffer {
  return Buffer.concat([u64(ref.dataId), u64(ref.size), ref.sha256]);
}

export function decodeLargeRef(raw: Buffer): LargeRef {
  return { dataId: readU64(raw, 0), size: readU64(raw, 8), sha256: Buffer.from(raw.subarray(16, 48)) };
}

export const DATA_ID_COUNTER = Buffer.from('data_id');

export function uploadKey(uploadId: string): Buffer {
  return Buffer.concat([Buffer.of(0x75), Buffer.from(uploadId, 'utf8')]);
}

export const UPLOAD_PREFIX = { start: Buffer.of(0x75), end: Buffer.of(0x76) };

export function garbageKey(dataId: number): Buffer {
  return Buffer.concat([Buffer.of(0x67), u64(dataId)]);
}

export const GARBAGE_PREFIX = { start: Buffer.of(0x67), end: Buffer.of(0x68) };

/** What a resumable upload keeps between calls. */
export interface UploadState {
  dataId: number;
  /** Bytes durably stored. */
  received: number;
  /** Wall-clock ms after which an unfinished upload is removed. */
  expiresAt: number;
  /** The first call's header, which later calls must match. */
  header: UploadFingerprint;
}

export interface UploadFingerprint {
  metadata: string | null;
  id: string | null;
  size: number | null;
  sha256: string | null;
  transactionId: string | null;
  shouldUpdateMetadata: boolean;
}

export function encodeUploadState(state: UploadState): Buffer {
  return Buffer.from(JSON.stringify(state), 'utf8');
}

export function decodeUploadState(raw: Buffer): UploadState {
  return JSON.parse(raw.toString('utf8')) as UploadState;
}
