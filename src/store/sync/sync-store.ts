/**
 * Sync over one KV store, written once for every backend: reading a peer's batch from the history,
 * applying a peer's batch, remembering how far each peer has got (which holds history back from
 * compaction, for at most `maxOfflineMs`), and the slow upkeep of tombstones and conflicts.
 */
import { DEFAULT_SYNC_MAX_OFFLINE_MS } from '../../defaults.js';
import type { KeySpan } from '../kv/key-span.js';
import type { KvStore } from '../kv/kv-store.js';
import { type ApplyContext, type ApplyResult, applyChanges } from './apply.js';
import { type ChangeBatch, type ChangeFilter, readChanges } from './changes.js';
import { type Conflict, listConflicts, pruneConflicts } from './conflicts.js';
import { type PeerAck, readAck, readAcks, readApplied, readHub, writeAck, writeApplied, writeHub } from './peers.js';
import { applySnapshotPage, readSnapshotPage, type SnapshotApplyContext, type SnapshotPage } from './snapshot.js';
import { decodeKeyStamp, hlcOf, type SiteId } from './stamp.js';

/** Acknowledgements are stored at most this often per peer (a stale one only holds more history). */
const ACK_STORE_MS = 1000;
const UPKEEP_MS = 60_000;
const UPKEEP_PAGE = 1000;

export interface SyncStoreOptions {
  /** History a peer has not received is kept this long after it was last seen (default 30 days). */
  maxOfflineMs?: number;
  /**
   * An edge: its hub's acknowledgements hold history however long the hub is away (the edge's own
   * unsent writes are never dropped); before its first contact, nothing is compacted.
   */
  edge?: boolean;
}

export type ReadResult = ChangeBatch | { compacted: number };

export class SyncStore {
  readonly maxOfflineMs: number;
  private readonly acks = new Map<string, PeerAck>();
  private readonly stored = new Map<string, number>();
  /** The edge's hub, once known: its acknowledgements never expire. */
  hub: SiteId | undefined;
  private upkeepTimer: NodeJS.Timeout | undefined;
  private stampCursor: Buffer | undefined;

  private constructor(
    readonly kv: KvStore,
    private readonly options: SyncStoreOptions,
  ) {
    this.maxOfflineMs = options.maxOfflineMs ?? DEFAULT_SYNC_MAX_OFFLINE_MS;
    kv.historyFloor = () => this.historyFloor();
  }

  static async open(kv: KvStore, options: SyncStoreOptions = {}): Promise<SyncStore> {
    const store = new SyncStore(kv, options);
    // A damaged store still opens (each request gets DATA_LOSS): it has no sync state to load.
    if (kv.damaged) return store;
    const { acks, hub } = await kv.committer.run(async (b) => ({
      acks: await readAcks(b.ops.maps),
      hub: await readHub(b.ops.maps),
    }));
    for (const ack of acks) store.acks.set(ack.peer.toString('hex'), ack);
    if (hub) store.hub = Buffer.from(hub);
    return store;
  }

  get site(): SiteId {
    return this.kv.identity.site;
  }

  /** Starts the upkeep (every minute): tombstones and conflicts older than the retention window. */
  startUpkeep(): void {
    this.upkeepTimer = setInterval(() => this.upkeep().catch(() => {}), UPKEEP_MS);
    this.upkeepTimer.unref();
  }

  stop(): void {
    clearInterval(this.upkeepTimer);
  }

  /** The highest revision auto-compaction may compact to. */
  historyFloor(): number {
    let floor = Number.MAX_SAFE_INTEGER;
    if (this.options.edge) {
      // Until the hub has acknowledged something, every local write is still to send.
      const ack = this.hub && this.acks.get(this.hub.toString('hex'));
      if (!ack) return 0;
      floor = ack.acked + 1;
    }
    const now = Date.now();
    for (const ack of this.acks.values()) {
      if (this.hub?.equals(ack.peer) || now - ack.seenMs > this.maxOfflineMs) continue;
      floor = Math.min(floor, ack.acked + 1);
    }
    return floor;
  }

  /** Changes after `from` for a peer, or the compacted revision when its history is gone. */
  read(from: number, filter: ChangeFilter, maxBytes: number): Promise<ReadResult> {
    return this.kv.committer.run(async (b) => {
      if (from + 1 < b.compactRev) return { compacted: b.compactRev };
      return readChanges(b.ops, from, b.rev, filter, maxBytes, this.site);
    });
  }

  apply(batch: ChangeBatch, ctx: Omit<ApplyContext, 'clock'>): Promise<ApplyResult> {
    return this.kv.committer.run((b) => applyChanges(b, batch, { ...ctx, clock: this.kv.identity.clock }));
  }

  snapshotPage(span: KeySpan, start: Buffer): Promise<SnapshotPage> {
    return this.kv.committer.run((b) => readSnapshotPage(b.ops, span, start));
  }

  /** Merges a reset's page; the last one also sets the peer's cursor (in the same commit). */
  applySnapshot(
    page: SnapshotPage,
    to: number,
    last: boolean,
    ctx: Omit<SnapshotApplyContext, 'clock' | 'self'>,
  ): Promise<number> {
    return this.kv.committer.run(async (b) => {
      const n = await applySnapshotPage(b, page, { ...ctx, self: this.site, clock: this.kv.identity.clock });
      if (last) await writeApplied(b.ops.maps, ctx.hub, to);
      return n;
    });
  }

  /** The hub this store last synced with (an edge), if any. */
  async knownHub(): Promise<SiteId | undefined> {
    return this.hub;
  }

  /** Remembers the edge's hub (its acknowledgements then hold history however long it is away). */
  async pinHub(hub: SiteId): Promise<void> {
    if (this.hub?.equals(hub)) return;
    await this.kv.committer.run((b) => writeHub(b.ops.maps, hub));
    this.hub = hub;
  }

  /** The last revision of `peer`'s stream applied here. */
  applied(peer: SiteId): Promise<number> {
    return this.kv.committer.run((b) => readApplied(b.ops.maps, peer));
  }

  /** How far `peer` had acknowledged this site's stream, as stored. */
  storedAck(peer: SiteId): Promise<number> {
    return this.kv.committer.run(async (b) => (await readAck(b.ops.maps, peer))?.acked ?? 0);
  }

  /** Notes that `peer` has applied this site's stream up to `acked` (stored now and then). */
  acknowledged(peer: SiteId, acked: number): void {
    const id = peer.toString('hex');
    const ack: PeerAck = { peer, acked: Math.max(acked, this.acks.get(id)?.acked ?? 0), seenMs: Date.now() };
    this.acks.set(id, ack);
    const last = this.stored.get(id) ?? 0;
    if (ack.seenMs - last < ACK_STORE_MS) return;
    this.stored.set(id, ack.seenMs);
    this.kv.committer.run((b) => writeAck(b.ops.maps, ack)).catch(() => {});
  }

  /** Stores the peer's latest acknowledgement (at the end of a link). */
  async flushAck(peer: SiteId): Promise<void> {
    const ack = this.acks.get(peer.toString('hex'));
    if (ack) await this.kv.committer.run((b) => writeAck(b.ops.maps, ack));
  }

  /** Waits until a revision after `rev` is committed, or `ms` pass. */
  waitForCommit(rev: number, ms: number, signal: AbortSignal): Promise<void> {
    if (this.kv.hub.committedRev > rev || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.kv.hub.commitListeners.delete(check);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const check = (): void => {
        if (this.kv.hub.committedRev > rev) done();
      };
      const timer = setTimeout(done, ms);
      this.kv.hub.commitListeners.add(check);
      signal.addEventListener('abort', done);
    });
  }

  /** Takes a new identity (a hub found this store to be a restored copy). */
  renewIdentity(): Promise<void> {
    return this.kv.committer.run((b) => this.kv.identity.renew(b.ops.maps));
  }

  conflicts(sinceMs: number, limit: number): Promise<Conflict[]> {
    return this.kv.committer.run((b) => listConflicts(b.ops.maps, sinceMs, limit));
  }

  /**
   * Drops what the retention window no longer needs: conflicts older than it, and tombstones (the
   * stamps of deleted keys) older than it, and stamp rows later writes made stale — a page of the stamp map per run.
   */
  async upkeep(): Promise<void> {
    const horizonMs = Date.now() - this.maxOfflineMs;
    while ((await this.kv.committer.run((b) => pruneConflicts(b.ops.maps, horizonMs, UPKEEP_PAGE))) === UPKEEP_PAGE);
    this.stampCursor = await this.kv.committer.run(async (b) => {
      const rows = await b.ops.maps.range('sync_stamp', {
        start: this.stampCursor ?? Buffer.alloc(0),
        end: undefined,
        limit: UPKEEP_PAGE,
        reverse: false,
      });
      for (const [key, raw] of rows) {
        const row = decodeKeyStamp(raw);
        const record = await b.ops.get(key);
        // A tombstone past the window, or a row a later write of the key made stale.
        const drop =
          record === undefined ? row.stamp.hlc < hlcOf(horizonMs) : row.rev !== undefined && row.rev < record.modRev;
        if (drop) {
          await b.ops.maps.delete('sync_stamp', key);
        }
      }
      const last = rows[rows.length - 1];
      return rows.length < UPKEEP_PAGE || !last ? undefined : Buffer.concat([last[0], Buffer.of(0)]);
    });
  }
}
