/**
 * Blob sync over one BLOB store, written once for every backend (docs/sync.md "Blobs"): reading
 * this site's changes for a peer (each with the blob as that change left it), and applying a
 * peer's changes by last-writer-wins per blob id — at once when no data has to travel (a delete, a
 * small blob carried inline, metadata over data already here), or through a resumable upload whose
 * partial data stays durable between links, so an interrupted transfer goes on where it stopped.
 */
import type { BlobEngineOps } from '../../backends/backend.js';
import { StoreError, status } from '../../errors.js';
import { compareStamps, type SiteId, type Stamp, ZERO_STAMP } from '../sync/stamp.js';
import { type BlobReader, type BlobStore, blobDigest, dropLarge, loadBlob } from './blob-store.js';
import type { BlobLogEntry, BlobOp } from './blob-sync-log.js';
import { discardData, setLargeRef } from './large-blobs.js';
import type { LargeRef } from './large-layout.js';
import type { Upload } from './upload.js';

/** A change as it travels: the blob as the change left it. */
export interface BlobChange {
  seq: number;
  id: number;
  /** `none`: only the receiver's cursor moves (changes the peer does not get). */
  op: BlobOp | 'none';
  stamp: Stamp;
  metadata: string | null;
  size: number;
  sha256: Buffer;
  /** A small blob's data, carried in the change. */
  inline: Buffer | undefined;
}

/** A change read for sending, with a reader of its data (close it once sent). */
export interface Outgoing {
  change: BlobChange;
  reader: BlobReader | undefined;
}

/** Which of this site's blob changes a peer gets (the KV rules: src/store/sync/changes.ts). */
export interface BlobFilter {
  localOnly: boolean;
  peer: SiteId | undefined;
}

/** Blobs up to this size travel inside their change. */
export const INLINE_BYTES = 256 * 1024;

const EMPTY = Buffer.alloc(0);

export function wantedBy(e: BlobLogEntry, filter: BlobFilter): boolean {
  if (filter.localOnly && !e.local) return false;
  return !(filter.peer && e.stamp.site.equals(filter.peer));
}

export class BlobSyncStore {
  /** Uploads of interrupted links still being paused, by upload id (the next link waits for them). */
  private readonly pausing = new Map<string, Promise<void>>();

  constructor(readonly store: BlobStore) {}

  private get log() {
    return this.store.syncLog;
  }

  private run<T>(work: (ops: BlobEngineOps) => Promise<T>): Promise<T> {
    return this.store.committer.run(work);
  }

  /** This store takes part in sync from now on: new blobs get fleet ids. */
  join(): Promise<void> {
    return this.run((ops) => this.log.join(ops));
  }

  applied(peer: SiteId): Promise<number> {
    return this.run((ops) => this.log.applied(ops, peer));
  }

  hub(): Promise<SiteId | undefined> {
    return this.run((ops) => this.log.hub(ops));
  }

  setHub(hub: SiteId): Promise<void> {
    return this.run((ops) => this.log.setHub(ops, hub));
  }

  /** Log entries after `after`, and the last sequence written. */
  read(after: number, limit: number): Promise<{ entries: BlobLogEntry[]; last: number }> {
    return this.run(async (ops) => ({
      entries: await this.log.read(ops, after, limit),
      last: await this.log.lastSeq(ops),
    }));
  }

  /** Resolves when the log grows, `ms` pass, or `signal` aborts. */
  waitForChange(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        off();
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      const off = this.log.onChange(done);
      signal.addEventListener('abort', done);
    });
  }

  /** The change `entry` as it travels; undefined when a later change of the blob superseded it. */
  async outgoing(entry: BlobLogEntry): Promise<Outgoing | undefined> {
    const base = { seq: entry.seq, id: entry.id, op: entry.op, stamp: entry.stamp };
    const found = await this.run(async (ops) => {
      const latest = await this.log.stampOf(ops, entry.id);
      if (latest?.seq !== entry.seq) return undefined;
      if (entry.op === 'delete') return { stored: undefined };
      const stored = await loadBlob(ops, entry.id);
      if (stored === undefined) return undefined;
      if (stored.large) this.store.large.pin(stored.large.dataId);
      return { stored };
    });
    if (found === undefined) return undefined;
    if (found.stored === undefined) {
      return { change: { ...base, metadata: null, size: 0, sha256: EMPTY, inline: undefined }, reader: undefined };
    }
    const reader = this.store.readerOf(found.stored);
    const inline = reader.size <= INLINE_BYTES ? await reader.read(0, reader.size) : undefined;
    const change = { ...base, metadata: reader.metadata, size: reader.size, sha256: reader.sha256, inline };
    if (inline === undefined) return { change, reader };
    reader.close();
    return { change, reader: undefined };
  }

  /** The stamp a change must beat: the blob's latest change here (a blob from before sync: the oldest). */
  private async localStamp(ops: BlobEngineOps, id: number): Promise<{ stamp: Stamp | undefined; exists: boolean }> {
    const exists = (await ops.get(id)) !== undefined;
    const latest = await this.log.stampOf(ops, id);
    return { stamp: latest?.stamp ?? (exists ? ZERO_STAMP : undefined), exists };
  }

  private async finish(ops: BlobEngineOps, peer: SiteId, c: BlobChange, op: BlobOp): Promise<void> {
    await this.log.record(ops, { id: c.id, op, stamp: c.stamp, local: false });
    await this.log.setApplied(ops, peer, c.seq);
  }

  /**
   * Applies a peer's change if it can be without more data; answers 'data' when the blob's bytes
   * must travel first (then `receiveData`). Either way a change applied once is not applied again.
   */
  async receive(peer: SiteId, c: BlobChange): Promise<'done' | 'data'> {
    this.log.stamper?.clock.observe(c.stamp.hlc);
    let discarded = false;
    const result = await this.run(async (ops): Promise<'done' | 'data'> => {
      if (c.seq <= (await this.log.applied(ops, peer))) return 'done';
      const local = await this.localStamp(ops, c.id);
      if (c.op === 'none' || (local.stamp && compareStamps(c.stamp, local.stamp) <= 0)) {
        await this.log.setApplied(ops, peer, c.seq);
        return 'done';
      }
      if (c.op === 'delete') {
        if (local.exists) {
          await ops.delete(c.id);
          discarded = await dropLarge(ops, c.id);
        }
        await this.finish(ops, peer, c, 'delete');
        return 'done';
      }
      if (c.inline !== undefined) {
        if (local.exists) {
          discarded = await dropLarge(ops, c.id);
          await ops.update(c.id, c.inline, c.metadata);
        } else {
          await ops.insertWithId(c.id, c.inline, c.metadata);
        }
        await this.finish(ops, peer, c, c.op);
        return 'done';
      }
      if (local.exists && (await blobDigest(ops, c.id)).equals(c.sha256)) {
        await ops.update(c.id, undefined, c.metadata);
        await this.finish(ops, peer, c, c.op);
        return 'done';
      }
      return 'data';
    });
    if (discarded) void this.store.large.collect();
    return result;
  }

  /**
   * Starts (or resumes) receiving a change's data: an upload per incoming blob version, kept
   * between links, so only the bytes not yet held here travel. Its completion applies the change.
   */
  async receiveData(peer: SiteId, c: BlobChange): Promise<Upload> {
    const uploadId = `sync:${peer.toString('hex')}:${c.id}:${c.stamp.hlc}:${c.stamp.site.toString('hex')}`;
    await this.pausing.get(uploadId);
    const { received } = await this.store.uploadStatus(uploadId);
    const header = {
      metadata: c.metadata ?? undefined,
      id: undefined,
      size: c.size,
      sha256: c.sha256,
      transactionId: undefined,
      uploadId,
      offset: received,
      shouldUpdateMetadata: false,
    };
    return this.store.beginUploadWith(header, (ref, _h, stateKey) => this.complete(peer, c, ref, stateKey));
  }

  /** Moves past a change this store cannot take (a blob larger than the backend holds). */
  passOver(peer: SiteId, c: BlobChange): Promise<void> {
    return this.run((ops) => this.log.setApplied(ops, peer, c.seq));
  }

  /** Keeps what an interrupted transfer received (the next link resumes from there). */
  interrupted(upload: Upload): Promise<void> {
    const id = upload.header.uploadId!;
    const paused = upload.interrupted().finally(() => this.pausing.delete(id));
    this.pausing.set(id, paused);
    return paused;
  }

  /** Commits received data as the blob (if the change still wins), with the log entry and cursor. */
  private async complete(peer: SiteId, c: BlobChange, ref: LargeRef, stateKey: Buffer): Promise<number> {
    let discarded = false;
    await this.run(async (ops) => {
      await ops.maps.delete('upload', stateKey);
      const local = await this.localStamp(ops, c.id);
      if (local.stamp && compareStamps(c.stamp, local.stamp) <= 0) {
        await discardData(ops, ref.dataId, ref.size);
        discarded = true;
        await this.log.setApplied(ops, peer, Math.max(c.seq, await this.log.applied(ops, peer)));
        return;
      }
      if (local.exists) {
        discarded = await dropLarge(ops, c.id);
        await ops.update(c.id, EMPTY, c.metadata);
      } else {
        await ops.insertWithId(c.id, EMPTY, c.metadata);
      }
      await setLargeRef(ops, c.id, ref);
      await this.finish(ops, peer, c, c.op === 'none' ? 'put' : c.op);
    });
    if (discarded) void this.store.large.collect();
    return c.id;
  }
}

/** A blob larger than this backend holds cannot be received: the change is passed over. */
export function tooLarge(err: unknown): boolean {
  return err instanceof StoreError && err.code === status.RESOURCE_EXHAUSTED;
}
