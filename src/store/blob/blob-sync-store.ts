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
import { type BlobReader, blobDigest, dropLarge, loadBlob } from './blob-store.js';
import { BlobSyncBase } from './blob-sync-base.js';
import type { BlobLogEntry, BlobOp } from './blob-sync-log.js';
import { type LocalBlob, type Rekeyed, rekey, sameOrigin, stampPage, sweep } from './blob-sync-reset.js';
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
  /** A blob stored before sync: the site it was stored on (undefined: born with a fleet id). */
  origin: SiteId | undefined;
  /** A hub clamped the change's clock: the clock it was made with. */
  replaces?: number | undefined;
  /** Part of a reset: the id of the reset's previous change (0: the first). */
  resetAfter?: number | undefined;
}

/** How a receiver applies a peer's changes. */
export interface ReceiveContext {
  /** The hub clamps stamps further ahead of its clock than the skew bound (as for KV changes). */
  clamp: boolean;
  /**
   * An edge receiving from its hub: a reset drops what the hub no longer has, except this site's
   * writes after this sequence of its log (the hub has not applied them).
   */
  acked: (() => number) | undefined;
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
/** Blobs per page of a reset. */
const RESET_PAGE = 64;

export function wantedBy(e: Pick<BlobLogEntry, 'local' | 'stamp' | 'replaces'>, filter: BlobFilter): boolean {
  if (filter.localOnly && !e.local) return false;
  // Never the peer's own changes back, unless the hub clamped their clock (the peer must learn it).
  return !(filter.peer && e.stamp.site.equals(filter.peer) && e.replaces === undefined);
}

export type { BlobSyncOptions } from './blob-sync-base.js';

export class BlobSyncStore extends BlobSyncBase {
  /** Uploads of interrupted links still being paused, by upload id (the next link waits for them). */
  private readonly pausing = new Map<string, Promise<void>>();

  /** The change `entry` as it travels; undefined when a later change of the blob superseded it. */
  outgoing(entry: BlobLogEntry): Promise<Outgoing | undefined> {
    return this.outgoingOf(entry, undefined);
  }

  /**
   * A reset's next changes after id `after` (every synced blob's current state, as `filter`
   * allows), each with `seq` (where the peer's cursor goes once the reset ends) and the id of the
   * change sent before it (`previous`, carried on); `last` is where the next page starts.
   */
  async resetPage(
    after: number,
    previous: number,
    seq: number,
    filter: BlobFilter,
  ): Promise<{ outgoing: Outgoing[]; last: number; previous: number }> {
    const self = this.log.stamper?.site;
    const page = await this.run((ops) => stampPage(ops, this.log, after, RESET_PAGE));
    const outgoing: Outgoing[] = [];
    for (const { id, latest } of page) {
      const local = self !== undefined && latest.stamp.site.equals(self);
      if (!wantedBy({ local, stamp: latest.stamp, replaces: undefined }, filter)) continue;
      const entry = { seq, id, op: latest.op, stamp: latest.stamp, local };
      const out = await this.outgoingOf(entry, previous);
      if (out === undefined) continue;
      outgoing.push(out);
      previous = id;
    }
    return { outgoing, last: page.length === 0 ? after : page[page.length - 1]!.id, previous };
  }

  private async outgoingOf(entry: BlobLogEntry, resetAfter: number | undefined): Promise<Outgoing | undefined> {
    const found = await this.run(async (ops) => {
      const latest = await this.log.stampOf(ops, entry.id);
      if (latest === undefined || (resetAfter === undefined && latest.seq !== entry.seq)) return undefined;
      if (latest.op === 'delete') return { stored: undefined, latest };
      const stored = await loadBlob(ops, entry.id);
      if (stored === undefined) return undefined;
      if (stored.large) this.store.large.pin(stored.large.dataId);
      return { stored, latest };
    });
    if (found === undefined) return undefined;
    const { latest } = found;
    const base = {
      seq: entry.seq,
      id: entry.id,
      op: latest.op,
      stamp: latest.stamp,
      origin: latest.origin,
      replaces: entry.replaces,
      resetAfter,
    };
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

  /** The change as the hub applies it: a clock further ahead than the skew bound is clamped. */
  clamped(c: BlobChange, ctx: ReceiveContext): BlobChange {
    const clock = this.log.stamper?.clock;
    if (!ctx.clamp || !clock || c.stamp.hlc <= clock.limit()) return c;
    return { ...c, stamp: { hlc: clock.limit(), site: c.stamp.site }, replaces: c.stamp.hlc };
  }

  /** The stamp a change must beat: the blob's latest change here (a blob from before sync: the oldest). */
  private async localBlob(ops: BlobEngineOps, id: number): Promise<LocalBlob & { op: BlobOp | undefined }> {
    const exists = (await ops.get(id)) !== undefined;
    const latest = await this.log.stampOf(ops, id);
    if (latest) return { stamp: latest.stamp, exists, origin: latest.origin, op: latest.op };
    // Not logged yet: this site's own blob from before sync (the backfill has not reached it).
    const origin = exists ? await this.log.site(ops) : undefined;
    return { stamp: exists ? ZERO_STAMP : undefined, exists, origin, op: exists ? 'put' : undefined };
  }

  /** Moves the peer's cursor past `c` (a reset's changes move it only at its end). */
  private async passed(ops: BlobEngineOps, peer: SiteId, c: BlobChange): Promise<void> {
    if (c.resetAfter !== undefined && c.op !== 'none') return;
    await this.log.setApplied(ops, peer, Math.max(c.seq, await this.log.applied(ops, peer)));
  }

  private async finish(ops: BlobEngineOps, peer: SiteId, c: BlobChange, op: BlobOp): Promise<void> {
    await this.log.record(
      ops,
      { id: c.id, op, stamp: c.stamp, local: false, replaces: c.replaces },
      { keep: false, origin: c.origin },
    );
    await this.passed(ops, peer, c);
  }

  /**
   * Before a winning change is applied: if the blob here is a different blob with the same id (of
   * another origin), it moves to a new id (`moved`), so nothing is lost.
   */
  private async makeRoom(ops: BlobEngineOps, c: BlobChange, local: LocalBlob, moved: Rekeyed[]): Promise<void> {
    if (!local.exists || sameOrigin(local.origin, c.origin)) return;
    moved.push(await rekey(ops, this.log, c.id, local));
    local.exists = false;
  }

  /** After a commit: collect discarded data, report moved blobs. */
  private after(discarded: boolean, moved: Rekeyed[]): void {
    if (discarded) void this.store.large.collect();
    for (const m of moved) this.options.onRekey?.(m);
  }

  /**
   * Applies a peer's change if it can be without more data; answers 'data' when the blob's bytes
   * must travel first (then `receiveData`). Either way a change applied once is not applied again.
   */
  async receive(peer: SiteId, c: BlobChange, ctx: ReceiveContext): Promise<'done' | 'data'> {
    this.log.stamper?.clock.observe(c.stamp.hlc);
    let discarded = false;
    const moved: Rekeyed[] = [];
    const result = await this.run(async (ops): Promise<'done' | 'data'> => {
      discarded = false;
      moved.length = 0;
      const reset = c.resetAfter !== undefined;
      if (reset && ctx.acked && this.log.stamper) {
        discarded = await sweep(ops, this.log, c.resetAfter!, c.id, this.log.stamper.site, ctx.acked());
      }
      if (!reset && c.seq <= (await this.log.applied(ops, peer))) return 'done';
      const local = await this.localBlob(ops, c.id);
      // The hub clamped this site's own write: take the clamped stamp, so every site agrees.
      if (
        c.replaces !== undefined &&
        local.op &&
        local.stamp?.hlc === c.replaces &&
        local.stamp.site.equals(c.stamp.site)
      ) {
        await this.log.record(ops, { id: c.id, op: local.op, stamp: c.stamp, local: false });
        await this.passed(ops, peer, c);
        return 'done';
      }
      if (c.op === 'none' || !beats(c, local)) {
        await this.passed(ops, peer, c);
        return 'done';
      }
      const same = local.exists && sameOrigin(local.origin, c.origin) && (await blobDigest(ops, c.id)).equals(c.sha256);
      if (c.op !== 'delete' && c.inline === undefined && !same) return 'data';
      await this.makeRoom(ops, c, local, moved);
      if (c.op === 'delete') {
        if (local.exists) {
          await ops.delete(c.id);
          discarded = (await dropLarge(ops, c.id)) || discarded;
        }
        await this.finish(ops, peer, c, 'delete');
        return 'done';
      }
      if (c.inline !== undefined) {
        if (local.exists) {
          discarded = (await dropLarge(ops, c.id)) || discarded;
          await ops.update(c.id, c.inline, c.metadata);
        } else {
          await ops.insertWithId(c.id, c.inline, c.metadata);
        }
        await this.finish(ops, peer, c, c.op);
        return 'done';
      }
      await ops.update(c.id, undefined, c.metadata);
      await this.finish(ops, peer, c, c.op);
      return 'done';
    });
    this.after(discarded, moved);
    return result;
  }

  /**
   * Starts (or resumes) receiving a change's data: an upload per incoming blob version, kept
   * between links, so only the bytes not yet held here travel. Its completion applies the change.
   */
  async receiveData(peer: SiteId, c: BlobChange): Promise<Upload> {
    // Named by the change as made (a clamped stamp moves with the hub's clock; the change does not).
    const made = c.replaces ?? c.stamp.hlc;
    const uploadId = `sync:${peer.toString('hex')}:${c.id}:${made}:${c.stamp.site.toString('hex')}`;
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
    return this.run((ops) => this.passed(ops, peer, c));
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
    const moved: Rekeyed[] = [];
    await this.run(async (ops) => {
      discarded = false;
      moved.length = 0;
      await ops.maps.delete('upload', stateKey);
      const local = await this.localBlob(ops, c.id);
      if (!beats(c, local)) {
        await discardData(ops, ref.dataId, ref.size);
        discarded = true;
        await this.passed(ops, peer, c);
        return;
      }
      await this.makeRoom(ops, c, local, moved);
      if (local.exists) {
        discarded = await dropLarge(ops, c.id);
        await ops.update(c.id, EMPTY, c.metadata);
      } else {
        await ops.insertWithId(c.id, EMPTY, c.metadata);
      }
      await setLargeRef(ops, c.id, ref);
      await this.finish(ops, peer, c, c.op === 'none' ? 'put' : c.op);
    });
    this.after(discarded, moved);
    return c.id;
  }
}

/** Whether change `c` is newer than the blob's latest change here (the last writer wins). */
function beats(c: BlobChange, local: LocalBlob): boolean {
  return local.stamp === undefined || compareStamps(c.stamp, local.stamp) > 0;
}

/** A blob larger than this backend holds cannot be received: the change is passed over. */
export function tooLarge(err: unknown): boolean {
  return err instanceof StoreError && err.code === status.RESOURCE_EXHAUSTED;
}
