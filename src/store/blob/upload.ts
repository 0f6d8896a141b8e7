/**
 * One Upload call (spec: blob-streams.md): data arrives in chunks of any size, is hashed as it
 * comes, and is written to the store in 1 MiB chunks at least every 4 MiB — so the server holds a
 * few MiB of an upload at most, however large the blob. The blob becomes visible atomically when
 * the upload completes (verified size and SHA-256), or, with a transaction, at its commit.
 *
 * A resumable upload (upload_id) keeps what arrived when a call ends early, for a later call that
 * continues at `offset = received`; its state is in the `upload` map, so it survives a restart.
 */
import { createHash, type Hash } from 'node:crypto';
import type { BlobEngineOps } from '../../backends/backend.js';
import { aborted, dataLoss, failedPrecondition, invalidArgument, outOfRange } from '../../errors.js';
import type { GroupCommitter } from '../group-commit.js';
import { type BlobLimit, blobTooLarge, checkBlobSize } from './blob-limit.js';
import { discardData, newDataId } from './large-blobs.js';
import {
  CHUNK_SIZE,
  chunkKey,
  decodeUploadState,
  encodeUploadState,
  type LargeRef,
  toChunks,
  type UploadFingerprint,
  type UploadState,
  u64,
  uploadKey,
} from './large-layout.js';

/** Received bytes are written (durably) whenever this many are pending. */
export const FLUSH_BYTES = 4 * 1024 * 1024;

export interface UploadHeader {
  metadata: string | undefined;
  /** Replace this blob's data; undefined: a new blob. */
  id: bigint | undefined;
  size: number | undefined;
  sha256: Buffer | undefined;
  transactionId: string | undefined;
  uploadId: string | undefined;
  offset: number;
  shouldUpdateMetadata: boolean;
}

export interface UploadResult {
  id: number;
  size: number;
  sha256: Buffer;
}

/**
 * Commits a finished upload as a blob (or into its transaction); answers the blob id. The upload's
 * state (`stateKey` in the `upload` map) must be deleted in the same batch that makes the blob
 * live, or its expiry would later discard live data.
 */
export type CompleteUpload = (ref: LargeRef, header: UploadHeader, stateKey: Buffer) => Promise<number>;

/** What uploads share: the store, the running uploads, hash states of paused ones. */
export interface UploadContext {
  committer: GroupCommitter<BlobEngineOps>;
  /** How long an unfinished resumable upload is kept after its last call (ms). */
  ttlMs: number;
  running: Set<string>;
  /** Hash state after the last call of a paused resumable upload (saves re-reading its data). */
  pausedHashes: Map<string, { received: number; hash: Hash }>;
  /** After data was discarded: collect its chunks. */
  collect(): void;
  /** The backend's largest blob (none: undefined). */
  limit: BlobLimit | undefined;
}

function fingerprint(h: UploadHeader): UploadFingerprint {
  return {
    metadata: h.metadata ?? null,
    id: h.id === undefined ? null : String(h.id),
    size: h.size ?? null,
    sha256: h.sha256 ? h.sha256.toString('hex') : null,
    transactionId: h.transactionId ?? null,
    shouldUpdateMetadata: h.shouldUpdateMetadata,
  };
}

/** The `upload` map key of an upload: the client's id, or an internal one for a one-call upload. */
function stateKey(header: UploadHeader, dataId: number): Buffer {
  return header.uploadId !== undefined ? uploadKey(header.uploadId) : Buffer.concat([Buffer.of(0x69), u64(dataId)]);
}

export function checkHeader(h: UploadHeader): void {
  if (h.uploadId !== undefined && (h.uploadId.length < 1 || h.uploadId.length > 128)) {
    throw invalidArgument(`upload_id must be 1 to 128 characters, got ${h.uploadId.length}`);
  }
  if (h.sha256 !== undefined && h.sha256.length !== 32) {
    throw invalidArgument(`sha256 must be 32 bytes (a SHA-256 digest), got ${h.sha256.length}`);
  }
  if (h.uploadId === undefined && h.offset !== 0) {
    throw invalidArgument('offset is only for continuing a resumable upload (set upload_id)');
  }
}

export class Upload {
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  private finished = false;
  /** The write of the previous 4 MiB, if it is still committing. */
  private inFlight: Promise<void> = Promise.resolve();
  private durableBytes: number;

  private constructor(
    private readonly ctx: UploadContext,
    readonly header: UploadHeader,
    private readonly dataId: number,
    private readonly key: Buffer,
    /** Byte offset where `pending` starts: always a chunk boundary. */
    private base: number,
    /** Bytes received so far (durable ones and pending ones). */
    private received: number,
    private readonly hash: Hash,
    private readonly complete: CompleteUpload,
  ) {
    this.durableBytes = received;
  }

  /** Starts (or, with an upload_id, continues) an upload. */
  static async begin(ctx: UploadContext, header: UploadHeader, complete: CompleteUpload): Promise<Upload> {
    checkHeader(header);
    if (header.size !== undefined) checkBlobSize(ctx.limit, header.size);
    const resumable = header.uploadId !== undefined;
    if (resumable && ctx.running.has(header.uploadId!)) {
      throw aborted(`upload ${JSON.stringify(header.uploadId)} is already running in another call`);
    }
    const now = Date.now();
    const begun = await ctx.committer.run(async (ops) => {
      const existing = resumable ? await ops.maps.get('upload', uploadKey(header.uploadId!)) : undefined;
      if (existing === undefined) {
        if (header.offset !== 0) {
          throw outOfRange(`upload ${JSON.stringify(header.uploadId)} has received 0 bytes; continue at offset 0`);
        }
        const dataId = await newDataId(ops);
        const state: UploadState = { dataId, received: 0, expiresAt: now + ctx.ttlMs, header: fingerprint(header) };
        await ops.maps.put('upload', stateKey(header, dataId), encodeUploadState(state));
        return { state, partial: undefined };
      }
      const state = decodeUploadState(existing);
      if (state.expiresAt < now) {
        throw failedPrecondition(`upload ${JSON.stringify(header.uploadId)} expired; start it again`);
      }
      if (JSON.stringify(state.header) !== JSON.stringify(fingerprint(header))) {
        throw failedPrecondition(
          `upload ${JSON.stringify(header.uploadId)} was begun with a different header (metadata, id, size, ` +
            'sha256, transaction_id and should_update_metadata must match the first call)',
        );
      }
      if (header.offset !== state.received) {
        throw outOfRange(
          `upload ${JSON.stringify(header.uploadId)} continues at offset ${state.received}, not ${header.offset}`,
        );
      }
      // The last chunk may be partial: it is rewritten when the upload continues.
      const base = Math.floor(state.received / CHUNK_SIZE) * CHUNK_SIZE;
      const partial =
        state.received > base ? await ops.maps.get('chunk', chunkKey(state.dataId, base / CHUNK_SIZE)) : undefined;
      return { state, partial };
    });
    const { state, partial } = begun;
    if (resumable) ctx.running.add(header.uploadId!);
    try {
      const hash = await resumedHash(ctx, header.uploadId, state);
      const base = Math.floor(state.received / CHUNK_SIZE) * CHUNK_SIZE;
      const upload = new Upload(
        ctx,
        header,
        state.dataId,
        stateKey(header, state.dataId),
        base,
        state.received,
        hash,
        complete,
      );
      if (partial) {
        upload.pending.push(partial);
        upload.pendingBytes = partial.length;
      }
      return upload;
    } catch (err) {
      if (resumable) ctx.running.delete(header.uploadId!);
      throw err;
    }
  }

  /** UploadStatus: the durable bytes of a resumable upload, and whether it exists. */
  static async status(
    committer: GroupCommitter<BlobEngineOps>,
    uploadId: string,
  ): Promise<{ received: number; exists: boolean }> {
    if (uploadId.length < 1 || uploadId.length > 128) {
      throw invalidArgument(`upload_id must be 1 to 128 characters, got ${uploadId.length}`);
    }
    const raw = await committer.run((ops) => ops.maps.get('upload', uploadKey(uploadId)));
    if (raw === undefined) return { received: 0, exists: false };
    const state = decodeUploadState(raw);
    if (state.expiresAt < Date.now()) return { received: 0, exists: false };
    return { received: state.received, exists: true };
  }

  /** Durable bytes (what UploadStatus reports). */
  get durable(): number {
    return this.durableBytes;
  }

  /**
   * Takes a chunk; resolves once it is safe to send more. Every 4 MiB the pending bytes go to the
   * store; one such write may be in flight while the next 4 MiB arrive (so receiving and writing
   * overlap), never two.
   */
  async write(chunk: Buffer): Promise<void> {
    if (this.header.size !== undefined && this.received + chunk.length > this.header.size) {
      throw invalidArgument(
        `the upload declared size ${this.header.size} but more bytes arrived (${this.received + chunk.length})`,
      );
    }
    const limit = this.ctx.limit;
    if (limit !== undefined && this.received + chunk.length > limit.bytes) {
      // Refused whole, a resumable upload too: its state and bytes go, an existing blob stays.
      await this.discard();
      throw blobTooLarge(limit, `this upload passed it: ${this.received + chunk.length} bytes received`);
    }
    this.hash.update(chunk);
    this.received += chunk.length;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= FLUSH_BYTES) {
      await this.inFlight;
      this.startFlush(false);
    }
  }

  /** Writes everything pending (a partial last chunk too) and waits until it is durable. */
  private async flush(all: boolean): Promise<void> {
    await this.inFlight;
    this.startFlush(all);
    await this.inFlight;
  }

  /**
   * Hands the pending bytes to the store as chunks — only whole chunks unless `all` (then the
   * partial last one too, rewritten later if the upload goes on) — and records, once committed,
   * how many bytes are durable.
   */
  private startFlush(all: boolean): void {
    const total = this.pendingBytes;
    const whole = all ? total : Math.floor(total / CHUNK_SIZE) * CHUNK_SIZE;
    if (whole === 0 && !all) return;
    // Chunk by chunk rather than one buffer of all pending bytes: no copy of whole received chunks.
    const chunks = toChunks(this.pending, total);
    const firstIndex = this.base / CHUNK_SIZE;
    const durable = this.base + whole;
    const partialTail = all ? whole % CHUNK_SIZE : 0;
    this.pending.length = 0;
    this.pendingBytes = total - whole + partialTail;
    // A partial last chunk stays pending (a copy, so it holds no more than its own bytes).
    if (this.pendingBytes > 0) this.pending.push(Buffer.from(chunks.at(-1)!));
    this.base = durable - partialTail;
    const written = chunks.slice(0, Math.ceil(whole / CHUNK_SIZE));
    this.inFlight = this.ctx.committer
      .run(async (ops) => {
        for (let k = 0; k < written.length; k++) {
          await ops.maps.put('chunk', chunkKey(this.dataId, firstIndex + k), written[k]!);
        }
        const state: UploadState = {
          dataId: this.dataId,
          received: durable,
          expiresAt: Date.now() + this.ctx.ttlMs,
          header: fingerprint(this.header),
        };
        await ops.maps.put('upload', this.key, encodeUploadState(state));
      })
      .then(() => {
        this.durableBytes = durable;
      });
  }

  /**
   * The client half-closed. Without a size, that completes the upload; a resumable upload with a
   * size that is not complete keeps what arrived and answers FAILED_PRECONDITION saying where to go on.
   */
  async end(): Promise<UploadResult> {
    if (this.header.size !== undefined && this.received < this.header.size) {
      if (this.header.uploadId !== undefined) {
        await this.pause();
        throw failedPrecondition(
          `upload ${JSON.stringify(this.header.uploadId)} is incomplete: ${this.received} of ${this.header.size} ` +
            `bytes received and kept; continue it with offset ${this.received}`,
        );
      }
      await this.discard();
      throw invalidArgument(`the upload declared size ${this.header.size} but only ${this.received} bytes arrived`);
    }
    await this.flush(true);
    const sha256 = this.hash.digest();
    if (this.header.sha256 !== undefined && !sha256.equals(this.header.sha256)) {
      await this.discard();
      throw dataLoss(
        `the uploaded data does not match the declared sha256 (got ${sha256.toString('hex')}); nothing was stored`,
      );
    }
    const ref: LargeRef = { dataId: this.dataId, size: this.received, sha256 };
    let id: number;
    try {
      id = await this.complete(ref, this.header, this.key);
    } catch (err) {
      await this.discard();
      throw err;
    }
    this.release();
    return { id, size: this.received, sha256 };
  }

  /** The call ended early (cancelled, cut, an error): a resumable upload keeps its bytes; others are dropped. */
  async interrupted(): Promise<void> {
    if (this.finished) return;
    if (this.header.uploadId !== undefined) await this.pause();
    else await this.discard();
  }

  private async pause(): Promise<void> {
    await this.flush(true);
    this.ctx.pausedHashes.set(this.header.uploadId!, { received: this.received, hash: this.hash.copy() });
    this.release();
  }

  private async discard(): Promise<void> {
    this.release();
    await this.inFlight.catch(() => {});
    await this.ctx.committer.run(async (ops) => {
      await ops.maps.delete('upload', this.key);
      // Every chunk written so far, including a partial last one.
      await discardData(ops, this.dataId, this.base + this.pendingBytes + CHUNK_SIZE);
    });
    this.ctx.collect();
  }

  private release(): void {
    this.finished = true;
    if (this.header.uploadId !== undefined) this.ctx.running.delete(this.header.uploadId);
  }
}

/** The hash of a resumed upload's received bytes: kept from its last call, or re-read from the store. */
async function resumedHash(ctx: UploadContext, uploadId: string | undefined, state: UploadState): Promise<Hash> {
  const paused = uploadId === undefined ? undefined : ctx.pausedHashes.get(uploadId);
  if (uploadId !== undefined) ctx.pausedHashes.delete(uploadId);
  if (paused && paused.received === state.received) return paused.hash;
  const hash = createHash('sha256');
  for (let index = 0, at = 0; at < state.received; index++) {
    const chunk = await ctx.committer.run((ops) => ops.maps.get('chunk', chunkKey(state.dataId, index)));
    if (chunk === undefined)
      throw failedPrecondition(`upload ${JSON.stringify(uploadId)} lost chunk ${index}; start it again`);
    const take = chunk.subarray(0, Math.min(chunk.length, state.received - at));
    hash.update(take);
    at += take.length;
  }
  return hash;
}

/** Unfinished uploads past their time (and, at open, one-call uploads a crash left): their data goes. */
export async function expireUploads(
  committer: GroupCommitter<BlobEngineOps>,
  running: Set<string>,
  atOpen: boolean,
): Promise<number> {
  return committer.run(async (ops) => {
    const rows = await ops.maps.range('upload', {
      start: Buffer.of(0x69),
      end: Buffer.of(0x76),
      limit: Number.MAX_SAFE_INTEGER,
      reverse: false,
    });
    const now = Date.now();
    let removed = 0;
    for (const [key, raw] of rows) {
      const internal = key[0] === 0x69;
      if (!internal && key[0] !== 0x75) continue;
      const state = decodeUploadState(raw);
      const id = key.subarray(1).toString('utf8');
      if (!internal && running.has(id)) continue;
      if ((internal && atOpen) || state.expiresAt < now) {
        await ops.maps.delete('upload', key);
        await discardData(ops, state.dataId, state.received + CHUNK_SIZE);
        removed++;
      }
    }
    return removed;
  });
}
