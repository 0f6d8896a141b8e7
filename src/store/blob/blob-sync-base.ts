/**
 * The bookkeeping side of blob sync over one BLOB store (docs/sync.md "Blobs"): joining, the
 * backfill of blobs stored before, each peer's cursors and acknowledgements, and the upkeep that
 * compacts the log and drops old tombstones. The transfer side is BlobSyncStore.
 */
import type { BlobEngineOps } from '../../backends/backend.js';
import { DEFAULT_SYNC_MAX_OFFLINE_MS } from '../../defaults.js';
import type { SiteId } from '../sync/stamp.js';
import type { BlobStore } from './blob-store.js';
import type { BlobLogEntry } from './blob-sync-log.js';
import { listRekeyed, type Rekeyed } from './blob-sync-reset.js';
import {
  backfillPage,
  compactedSeq,
  compactPage,
  dropTombstones,
  readBlobAck,
  writeBlobAck,
} from './blob-sync-upkeep.js';

export interface BlobSyncOptions {
  /** How long a peer that is away still holds back compaction (default 30 days). */
  maxOfflineMs?: number;
  /** Called after a blob from before sync lost its id to another and was moved to a new one. */
  onRekey?: (moved: Rekeyed) => void;
}

/** Acknowledgements are stored at most this often per peer (a stale one only holds more log). */
const ACK_STORE_MS = 1000;
const UPKEEP_MS = 60_000;
/** After an acknowledgement is stored, the log is compacted this much later (one run per burst). */
const COMPACT_DELAY_MS = 1000;

export class BlobSyncBase {
  private backfilling: Promise<void> | undefined;
  /** The compaction scheduled and not yet started. */
  private compacting: NodeJS.Timeout | undefined;
  private readonly acks = new Map<string, { acked: number; storedMs: number; timer: NodeJS.Timeout | undefined }>();
  private upkeepTimer: NodeJS.Timeout | undefined;
  private tombstoneCursor: number | undefined;
  readonly maxOfflineMs: number;

  constructor(
    readonly store: BlobStore,
    protected readonly options: BlobSyncOptions = {},
  ) {
    this.maxOfflineMs = options.maxOfflineMs ?? DEFAULT_SYNC_MAX_OFFLINE_MS;
  }

  protected get log() {
    return this.store.syncLog;
  }

  protected run<T>(work: (ops: BlobEngineOps) => Promise<T>): Promise<T> {
    return this.store.committer.run(work);
  }

  /** This store takes part in sync from now on: new blobs get fleet ids (then `backfill`). */
  join(): Promise<void> {
    return this.run((ops) => this.log.join(ops));
  }

  /**
   * Logs the blobs stored before the store took part, page by page (resuming where a crash
   * stopped it), so they travel too.
   */
  backfill(): Promise<void> {
    this.backfilling ??= (async () => {
      try {
        while (await this.backfillStep());
      } finally {
        this.backfilling = undefined;
      }
    })();
    return this.backfilling;
  }

  /** One page of the backfill (one commit); answers whether more remain. */
  backfillStep(): Promise<boolean> {
    return this.run((ops) => backfillPage(ops, this.log));
  }

  /** Starts the upkeep (every minute): log compaction and old tombstones. */
  startUpkeep(): void {
    this.upkeepTimer = setInterval(() => this.upkeep().catch(() => {}), UPKEEP_MS);
    this.upkeepTimer.unref();
  }

  stop(): void {
    clearInterval(this.upkeepTimer);
    clearTimeout(this.compacting);
  }

  /** Compacts what every peer that counts has applied; drops a page of old tombstones. */
  async upkeep(): Promise<void> {
    await this.compact();
    const from = this.tombstoneCursor ?? 0;
    this.tombstoneCursor = await this.run((ops) => dropTombstones(ops, this.log, this.maxOfflineMs, from));
  }

  /** The log's last sequence, and up to which sequence it is compacted. */
  logMarks(): Promise<{ compacted: number; last: number }> {
    return this.run(async (ops) => ({ compacted: await compactedSeq(ops), last: await this.log.lastSeq(ops) }));
  }

  /** The log entries kept (tests: the log shrinks once compacted). */
  logEntries(): Promise<number> {
    return this.run(
      async (ops) =>
        (await ops.maps.range('blob_log', { start: Buffer.alloc(0), end: undefined, limit: 1e9, reverse: false }))
          .length,
    );
  }

  /** Blobs from before sync moved to a new id here (they lost their id to another site's). */
  rekeyed(): Promise<Rekeyed[]> {
    return this.run((ops) => listRekeyed(ops));
  }

  /** Notes that `peer` has applied this site's log up to `seq` (stored now and then). */
  async acknowledged(peer: SiteId, seq: number, force = false): Promise<void> {
    const id = peer.toString('hex');
    const now = Date.now();
    const known = this.acks.get(id);
    const acked = Math.max(seq, known?.acked ?? 0);
    if (!force && known && now - known.storedMs < ACK_STORE_MS) {
      known.acked = acked;
      // Stored a moment later, so the last acknowledgement of a burst does not wait for the link's end.
      known.timer ??= setTimeout(
        () => {
          known.timer = undefined;
          this.acknowledged(peer, known.acked, true).catch(() => {});
        },
        ACK_STORE_MS - (now - known.storedMs),
      );
      known.timer.unref();
      return;
    }
    clearTimeout(known?.timer);
    this.acks.set(id, { acked, storedMs: now, timer: undefined });
    await this.run((ops) => writeBlobAck(ops, { peer, acked, seenMs: now }));
    // What every peer has applied need not wait for the next upkeep (compacted at most once a second).
    this.compactSoon();
  }

  /**
   * A compaction once no other is pending. Pending ends when the run starts, not when it ends: an
   * acknowledgement stored while a run reads the acknowledgements schedules the next run, instead
   * of waiting for the upkeep a minute later. Two runs may overlap; each page is one batch that
   * reads the compacted mark, so they cannot drop an entry twice.
   */
  private compactSoon(): void {
    if (this.compacting) return;
    this.compacting = setTimeout(() => {
      this.compacting = undefined;
      this.compact().catch(() => {});
    }, COMPACT_DELAY_MS);
    this.compacting.unref();
  }

  /** Drops the log entries every peer that counts has applied. */
  async compact(): Promise<void> {
    while (await this.run((ops) => compactPage(ops, this.log, this.maxOfflineMs)));
  }

  /** Stores the peer's latest acknowledgement (at the end of a link). */
  flushAck(peer: SiteId): Promise<void> {
    const known = this.acks.get(peer.toString('hex'));
    return known ? this.acknowledged(peer, known.acked, true) : Promise.resolve();
  }

  /** How far `peer` has applied this site's log, as stored. */
  storedAck(peer: SiteId): Promise<number> {
    return this.run(async (ops) => (await readBlobAck(ops, peer))?.acked ?? 0);
  }

  /** Whether a peer at `cursor` needs a reset (the log after it is partly compacted). */
  needsReset(cursor: number): Promise<boolean> {
    return this.run(async (ops) => cursor < (await compactedSeq(ops)));
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
}
