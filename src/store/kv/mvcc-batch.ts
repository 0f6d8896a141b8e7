/**
 * Revisions, written once for every backend. Each KV engine batch gets an MvccBatch: it reads the
 * store revision when the batch starts, hands every mutating request its own revision (`mutate`),
 * records one history event per key written, and stores the new revision before the batch commits.
 * Events are published to watchers only once the batch has committed.
 */
import type { KvEngineOps, KvRecord, MaybePromise } from '../../backends/backend.js';
import { internal, StoreError } from '../../errors.js';
import type { HybridClock } from '../sync/clock.js';
import { encodeKeyStamp, type SiteId, type Stamp } from '../sync/stamp.js';
import { EMPTY, encodeEvent, historyKey, type KvEvent, tombstone } from './history.js';
import { leaseKeyEntry } from './lease-keys.js';
import { META, readCounter, writeCounter } from './meta.js';

/** One committed revision and its events, as watchers receive it. */
export interface Revision {
  rev: number;
  events: KvEvent[];
  /** The stamp of this site's writes in the revision (made at its first write). */
  stamp?: Stamp;
}

/** What stamps a site's own writes: its clock and its current identity. */
export interface Stamper {
  readonly clock: HybridClock;
  readonly site: SiteId;
}

/** A write received from a sync peer: its original stamp, kept as it was made. */
export interface Origin {
  stamp: Stamp;
  /** The hub clamped the write's clock (docs/sync.md): the clock it was made with. */
  replaces?: number;
}

/** What a batch reads when it starts. */
export interface RevisionState {
  /** The last committed revision (starts at 1, as etcd's: a new store is at revision 1). */
  rev: number;
  /** Revisions below this are compacted (0: nothing is). */
  compactRev: number;
}

/** Collects promises of engine calls that answered asynchronously, so sync engines pay nothing. */
function settle<T>(pending: Promise<unknown>[] | undefined, value: T): MaybePromise<T> {
  return pending === undefined ? value : Promise.all(pending).then(() => value);
}

function track(pending: Promise<unknown>[] | undefined, result: MaybePromise<unknown>): Promise<unknown>[] | undefined {
  if (!(result instanceof Promise)) return pending;
  const list = pending ?? [];
  list.push(result);
  return list;
}

export class MvccBatch {
  /** Revisions written in this batch, in order, for publishing after commit. */
  readonly written: Revision[] = [];
  private current: Revision | undefined;

  constructor(
    readonly ops: KvEngineOps,
    private state: RevisionState,
    private readonly stamper: Stamper,
  ) {}

  /** The store revision as this batch sees it (including revisions written earlier in the batch). */
  get rev(): number {
    return this.state.rev;
  }

  get compactRev(): number {
    return this.state.compactRev;
  }

  /** Sets the compaction revision (etcd Compact); stored with the batch. */
  setCompactRev(rev: number): MaybePromise<void> {
    this.state = { ...this.state, compactRev: rev };
    return writeCounter(this.ops.maps, META.compact, rev);
  }

  /**
   * Runs `work` as one revision: every put and delete it makes carries the same new revision. A
   * request that writes nothing consumes no revision. `work` must check everything before its
   * first write: a buffdb error after a write would leave half a revision, so it abandons the batch.
   */
  mutate<T>(work: (rev: number) => MaybePromise<T>): MaybePromise<T> {
    if (this.current) throw internal('nested revision');
    const revision: Revision = { rev: this.state.rev + 1, events: [] };
    this.current = revision;
    let result: MaybePromise<T>;
    try {
      result = work(revision.rev);
    } catch (err) {
      return this.failed(revision, err);
    }
    // No closure per call when `work` answered synchronously (one Set: a call per message).
    return result instanceof Promise
      ? result.then(
          (r) => this.finished(revision, r),
          (err: unknown) => this.failed(revision, err),
        )
      : this.finished(revision, result);
  }

  private finished<T>(revision: Revision, result: T): T {
    this.current = undefined;
    if (revision.events.length > 0) {
      this.state = { ...this.state, rev: revision.rev };
      this.written.push(revision);
    }
    return result;
  }

  private failed(revision: Revision, err: unknown): never {
    this.current = undefined;
    if (revision.events.length > 0 && err instanceof StoreError) {
      // Not a buffdb answer any more: the engine must roll the whole batch back.
      throw new Error(`a request failed after writing part of revision ${revision.rev}: ${err.message}`);
    }
    throw err;
  }

  private revision(): Revision {
    if (!this.current) throw internal('a write outside mutate()');
    return this.current;
  }

  /**
   * Stamps an event (a local write, or one received with `origin`). A local put's stamp lives only
   * in its history event — the hot path writes nothing more; compaction copies it to the key's
   * stamp row when it drops the key's last event. A received write and every delete (whose stamp
   * is the key's tombstone, outliving its history) write the stamp row now.
   */
  private stampEvent(revision: Revision, event: KvEvent, origin: Origin | undefined): MaybePromise<void> {
    if (origin) {
      event.stamp = origin.stamp;
      event.replaces = origin.replaces;
    } else {
      revision.stamp ??= { hlc: this.stamper.clock.tick(), site: this.stamper.site };
      event.stamp = revision.stamp;
      event.local = true;
      if (event.type === 'put') return;
    }
    return this.ops.maps.put('sync_stamp', event.kv.key, encodeKeyStamp(event.stamp, revision.rev));
  }

  /** Writes `key`; `prev` is its current record (read by the caller). Returns the new record. */
  put(key: Buffer, value: Buffer, lease: bigint, prev: KvRecord | undefined, origin?: Origin): MaybePromise<KvRecord> {
    const revision = this.revision();
    const rev = revision.rev;
    const record: KvRecord = {
      key,
      value,
      createRev: prev ? prev.createRev : rev,
      modRev: rev,
      version: prev ? prev.version + 1 : 1,
      lease,
    };
    const event: KvEvent = { type: 'put', kv: record, sub: revision.events.length, prev };
    revision.events.push(event);
    const { maps } = this.ops;
    let pending = track(track(undefined, this.stampEvent(revision, event, origin)), this.ops.put(record));
    if (prev && prev.lease !== 0n && prev.lease !== lease) {
      pending = track(pending, maps.delete('lease_key', leaseKeyEntry(prev.lease, key)));
    }
    if (lease !== 0n && prev?.lease !== lease)
      pending = track(pending, maps.put('lease_key', leaseKeyEntry(lease, key), EMPTY));
    pending = track(pending, maps.put('history', historyKey(rev, event.sub), encodeEvent(event)));
    return settle(pending, record);
  }

  /** Deletes the key whose current record is `prev`. */
  delete(prev: KvRecord, origin?: Origin): MaybePromise<void> {
    const revision = this.revision();
    const rev = revision.rev;
    const event: KvEvent = { type: 'delete', kv: tombstone(prev.key, rev), sub: revision.events.length, prev };
    revision.events.push(event);
    const { maps } = this.ops;
    let pending = track(track(undefined, this.stampEvent(revision, event, origin)), this.ops.delete(prev.key));
    if (prev.lease !== 0n) pending = track(pending, maps.delete('lease_key', leaseKeyEntry(prev.lease, prev.key)));
    pending = track(pending, maps.put('history', historyKey(rev, event.sub), encodeEvent(event)));
    return settle(pending, undefined);
  }

  /**
   * Records a peer's delete of a key this site does not have (sync): a tombstone event that goes
   * on to other peers and beats older writes of the key, while watchers see nothing (no key changed).
   */
  markDeleted(key: Buffer, origin: Origin): MaybePromise<void> {
    const revision = this.revision();
    const rev = revision.rev;
    const event: KvEvent = { type: 'delete', kv: tombstone(key, rev), sub: revision.events.length, prev: undefined };
    revision.events.push(event);
    const pending = track(
      track(undefined, this.stampEvent(revision, event, origin)),
      this.ops.maps.put('history', historyKey(rev, event.sub), encodeEvent(event)),
    );
    return settle(pending, undefined);
  }

  /** Stores the revision counter if this batch wrote; called once, just before commit. */
  finish(startRev: number): MaybePromise<void> {
    if (this.state.rev === startRev) return;
    return writeCounter(this.ops.maps, META.rev, this.state.rev);
  }
}

/** Reads the revision state at the start of a batch. */
export function readRevisionState(ops: KvEngineOps): MaybePromise<RevisionState> {
  const rev = readCounter(ops.maps, META.rev);
  const compact = readCounter(ops.maps, META.compact);
  if (rev instanceof Promise || compact instanceof Promise) {
    return Promise.all([rev, compact]).then(([r, c]) => ({ rev: r || 1, compactRev: c }));
  }
  // A new store is at revision 1 (etcd's first revision), with no event yet.
  return { rev: rev || 1, compactRev: compact };
}
