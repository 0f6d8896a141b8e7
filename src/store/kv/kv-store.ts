/**
 * The KV store: buffdb's string key-value API and etcd's revisioned API over one key space,
 * written once for every backend. A buffdb Set is a revision like an etcd Put; both go through
 * the same group committer, so watchers see every write.
 */

import { randomBytes } from 'node:crypto';
import type { KvEngineOps, KvRecord, MaybePromise, StoreEngine } from '../../backends/backend.js';
import { keyNotFound, StoreError, status } from '../../errors.js';
import { dropKeys } from '../drop-keys.js';
import { GroupCommitter, type Reply, type Sequence } from '../group-commit.js';
import { then } from '../maybe-promise.js';
import { SiteIdentity } from '../sync/identity.js';
import { keepStampsOfDropped } from '../sync/key-stamps.js';
import { GetGroups } from './get-group.js';
import { decodeEvent, EVENT_HEAD_BYTES, historyKey } from './history.js';
import { readEvents } from './history-reads.js';
import {
  type CompactResult,
  DEFAULT_KV_LIMITS,
  type DeleteRangeArgs,
  type DeleteRangeResult,
  type KvLimits,
  type PutArgs,
  type PutResult,
  type RangeArgs,
  type RangeResult,
  type TxnArgs,
  type TxnResult,
} from './kv-api.js';
import * as kvOps from './kv-ops.js';
import { Leases } from './leases.js';
import { META } from './meta.js';
import type { MvccBatch } from './mvcc-batch.js';
import { RevisionEngine } from './revision-engine.js';
import { type Watcher, WatchHub, type WatchSink, type WatchSpec } from './watch-hub.js';

/** Keep the last N revisions, or history younger than `ageMs`; undefined: keep everything. */
export interface AutoCompact {
  revisions?: number;
  ageMs?: number;
}

export interface KvStoreOptions {
  /** Other processes may write the same store (the backend's `multiProcess` capability). */
  multiProcess?: boolean;
  readOnly?: boolean;
  limits?: Partial<KvLimits>;
  autoCompact?: AutoCompact;
  /** Run lease expiry and auto-compaction in the background (a server does; a one-shot CLI command does not). */
  background?: boolean;
  /** Where the store lives (sync/identity.ts): a store opened elsewhere takes a new sync identity. */
  fingerprint?: () => string | undefined;
}

const AUTO_COMPACT_CHECK_MS = 5_000;
/**
 * How often a store that other processes may write looks for their revisions while someone
 * watches (the CLI beside a server, or other servers on one database). Writes made through this
 * store reach watchers at once, without polling.
 */
const FOREIGN_POLL_MS = 250;
/** History events deleted per batch by compaction, so writers never wait long behind it. */
const COMPACT_PAGE = 5_000;

// Get and Set are the hot paths (a call per message): when the engine answers synchronously
// (SQLite, LMDB) they run without a closure or promise per step. Get: see get-group.ts.

const NOTHING = (): undefined => undefined;

/** Writes `value` under `k`, whose current record is `prev`: one revision. */
function putValue(b: MvccBatch, k: Buffer, value: string, prev: KvRecord | undefined): MaybePromise<void> {
  const written = b.mutate(() => b.put(k, Buffer.from(value, 'utf8'), 0n, prev));
  return written instanceof Promise ? written.then(NOTHING) : undefined;
}

/** buffdb Set: a Put with no lease, one revision. */
export function writeValue(b: MvccBatch, key: string, value: string): MaybePromise<void> {
  const k = Buffer.from(key, 'utf8');
  const prev = b.ops.get(k);
  return prev instanceof Promise ? prev.then((p) => putValue(b, k, value, p)) : putValue(b, k, value, prev);
}

/** buffdb Delete: NOT_FOUND when the key is missing, else one revision. */
export function deleteValue(b: MvccBatch, key: string): MaybePromise<void> {
  return then(b.ops.get(Buffer.from(key, 'utf8')), (prev) => {
    if (prev === undefined) throw keyNotFound(key);
    return b.mutate(() => b.delete(prev));
  });
}

export interface KvStatus {
  rev: number;
  compactRev: number;
  clusterId: bigint;
  memberId: bigint;
}

export class KvStore {
  readonly committer: GroupCommitter<MvccBatch>;
  readonly hub: WatchHub;
  readonly leases: Leases;
  private readonly gets: GetGroups;
  readonly limits: KvLimits;
  /** This store's sync site and clock: every write is stamped with them (docs/sync.md). */
  readonly identity = new SiteIdentity();
  /**
   * The highest revision auto-compaction may compact to: sync peers that have not received the
   * history above it yet hold it. Set by the sync layer.
   */
  historyFloor: (() => number) | undefined;
  private clusterId = 0n;
  private memberId = 0n;
  private compacting: Promise<void> | undefined;
  /** Set when the store's bookkeeping could not be read at open: requests then fail with it. */
  damaged: StoreError | undefined;
  private autoTimer: NodeJS.Timeout | undefined;
  private foreignTimer: NodeJS.Timeout | undefined;
  private unsubscribeForeign: (() => void) | undefined;
  /** Revisions sampled over time, for age-based auto-compaction. */
  private readonly samples: { at: number; rev: number }[] = [];

  private constructor(
    readonly engine: StoreEngine<KvEngineOps>,
    private readonly options: KvStoreOptions,
  ) {
    this.limits = { ...DEFAULT_KV_LIMITS, ...options.limits };
    this.hub = new WatchHub((fromRev, limit, onBound) =>
      this.committer.run(async (b) => {
        const bound = onBound(this.hub.committedRev);
        const events = await readEvents(b.ops, fromRev, bound, limit);
        return { events, bound, compactRev: b.compactRev };
      }),
    );
    this.committer = new GroupCommitter(
      new RevisionEngine(engine, this.hub, options.multiProcess ?? false, this.identity),
    );
    this.gets = new GetGroups(this.committer);
    this.leases = new Leases(
      (work) => this.committer.run(work),
      () => this.memberId,
    );
  }

  /** Opens the store over an engine: reads its revision and ids, loads leases, resumes compaction. */
  static async open(engine: StoreEngine<KvEngineOps>, options: KvStoreOptions = {}): Promise<KvStore> {
    const store = new KvStore(engine, options);
    await store.init();
    return store;
  }

  private async init(): Promise<void> {
    const readOnly = this.options.readOnly ?? false;
    let ids: { cluster: bigint; member: bigint; compact: number };
    try {
      ids = await this.readIds(readOnly);
    } catch (err) {
      // Damaged pages: serve anyway, so each request gets DATA_LOSS (and the other store keeps
      // working) instead of the whole server refusing to start.
      if (err instanceof StoreError && err.code === status.DATA_LOSS) {
        this.damaged = err;
        return;
      }
      throw err;
    }
    this.clusterId = ids.cluster;
    this.memberId = ids.member;
    if (readOnly) return;
    await this.leases.load();
    if (ids.compact > 0) this.schedulePhysicalCompaction(ids.compact);
    if (this.options.background) {
      this.leases.startExpiry();
      this.startAutoCompaction();
      if (this.options.multiProcess) this.followForeignCommits();
    }
  }

  /** The store's stable ids (made on first open) and its compaction revision. */
  private readIds(readOnly: boolean): Promise<{ cluster: bigint; member: bigint; compact: number }> {
    return this.committer.run(async (b) => {
      const read = async (name: Buffer): Promise<bigint> => {
        const raw = await b.ops.maps.get('meta', name);
        if (raw !== undefined) return raw.readBigUInt64BE(0);
        if (readOnly) return 0n;
        const fresh = randomBytes(8);
        fresh[0]! &= 0x7f;
        await b.ops.maps.put('meta', name, fresh);
        return fresh.readBigUInt64BE(0);
      };
      await this.identity.load(b.ops.maps, this.options.fingerprint?.(), readOnly);
      // The clock starts past the newest stamp, so it never goes back across a restart.
      const [newest] = await b.ops.maps.range('history', {
        start: historyKey(0, 0),
        end: undefined,
        limit: 1,
        reverse: true,
      });
      const stamp = newest && decodeEvent(newest[0], newest[1]).stamp;
      if (stamp) this.identity.clock.observe(stamp.hlc);
      return { cluster: await read(META.clusterId), member: await read(META.memberId), compact: b.compactRev };
    });
  }

  /**
   * Publishes other processes' revisions to watchers: an empty batch reads them back (see
   * RevisionEngine). Runs on the engine's hint, and every FOREIGN_POLL_MS while anyone watches.
   */
  private followForeignCommits(): void {
    const refresh = (): void => {
      if (this.hub.size > 0) this.committer.run(() => undefined).catch(() => {});
    };
    this.unsubscribeForeign = this.engine.onForeignCommit?.(refresh);
    this.foreignTimer = setInterval(refresh, FOREIGN_POLL_MS);
    this.foreignTimer.unref();
  }

  status(): KvStatus {
    return {
      rev: this.hub.committedRev,
      compactRev: this.hub.compactRev,
      clusterId: this.clusterId,
      memberId: this.memberId,
    };
  }

  // ---------------------------------------------------------------- buffdb's string API

  // Each passes the key it reads, so an engine may fetch a batch's keys at once (postgres).

  get(key: string, done: Reply<string>, seq?: Sequence): void {
    this.gets.get(key, done, seq);
  }

  set(key: string, value: string, done: Reply<void>, seq?: Sequence): void {
    this.committer.submitKeyed(writeValue, key, value, done, seq);
  }

  delete(key: string, done: Reply<void>, seq?: Sequence): void {
    this.committer.submit((b) => deleteValue(b, key), done, seq, key);
  }

  /** Promise forms, for callers that do one thing at a time (CLI, library). */
  getValue(key: string): Promise<string> {
    return this.gets.getValue(key);
  }

  setValue(key: string, value: string): Promise<void> {
    return this.committer.runKeyed(writeValue, key, value);
  }

  deleteKey(key: string): Promise<void> {
    return this.committer.run((b) => deleteValue(b, key), undefined, key);
  }

  // ---------------------------------------------------------------- etcd's API

  range(args: RangeArgs): Promise<RangeResult> {
    return this.committer.run((b) => kvOps.range(b, args));
  }

  put(args: PutArgs): Promise<PutResult> {
    return this.committer.run((b) => kvOps.put(b, args));
  }

  deleteRange(args: DeleteRangeArgs): Promise<DeleteRangeResult> {
    return this.committer.run((b) => kvOps.deleteRange(b, args));
  }

  txn(args: TxnArgs): Promise<TxnResult> {
    return this.committer.run((b) => kvOps.txn(b, args, this.limits));
  }

  /**
   * Compacts the history below `rev`: reads at older revisions and watches starting before it
   * fail with etcd's "compacted" error from now on; the space is reclaimed in the background
   * (`physical`: before answering).
   */
  async compact(rev: number, physical: boolean): Promise<CompactResult> {
    const result = await this.committer.run(async (b) => {
      // A store never compacted accepts Compact(0) as a no-op, as a fresh etcd does (its
      // compacted revision starts below 0).
      if (rev <= b.compactRev && !(rev === 0 && b.compactRev === 0)) throw kvOps.compactedError();
      if (rev > b.rev) throw kvOps.futureRevError();
      await b.setCompactRev(rev);
      return { rev: b.rev };
    });
    const done = this.schedulePhysicalCompaction(rev);
    if (physical) await done;
    return result;
  }

  /** Deletes history events below `rev`, a page per batch. */
  private schedulePhysicalCompaction(rev: number): Promise<void> {
    const previous = this.compacting ?? Promise.resolve();
    const run = previous.then(async () => {
      for (;;) {
        const deleted = await this.committer.run(async (b) => {
          const start = historyKey(0, 0);
          const page = { start, end: historyKey(rev, 0), limit: COMPACT_PAGE, reverse: false };
          // Only each event's head is needed (kind, stamp, key): engines that can cut values do.
          const { maps } = b.ops;
          const rows = await (maps.rangeHeads
            ? maps.rangeHeads('history', page, EVENT_HEAD_BYTES)
            : maps.range('history', page));
          await keepStampsOfDropped(b.ops, rows);
          await dropKeys(b.ops.maps, 'history', start, rows);
          return rows.length;
        });
        if (deleted < COMPACT_PAGE) return;
      }
    });
    // A failed physical compaction (store closing) is picked up again at the next open.
    this.compacting = run.catch(() => {});
    return run;
  }

  private startAutoCompaction(): void {
    const policy = this.options.autoCompact;
    if (!policy || (policy.revisions === undefined && policy.ageMs === undefined)) return;
    this.autoTimer = setInterval(() => {
      const now = Date.now();
      const rev = this.hub.committedRev;
      this.samples.push({ at: now, rev });
      let target = 0;
      if (policy.revisions !== undefined) target = rev - policy.revisions;
      if (policy.ageMs !== undefined) {
        // The newest sample at least `ageMs` old: history before it is older than the window.
        while (this.samples.length > 1 && now - this.samples[1]!.at >= policy.ageMs) this.samples.shift();
        const oldest = this.samples[0]!;
        const byAge = now - oldest.at >= policy.ageMs ? oldest.rev : 0;
        target = policy.revisions !== undefined ? Math.min(target, byAge) : byAge;
      }
      // Sync peers that have not received some history yet hold it (within --sync-max-offline).
      if (this.historyFloor) target = Math.min(target, this.historyFloor());
      if (target > this.hub.compactRev) this.compact(target, false).catch(() => {});
    }, AUTO_COMPACT_CHECK_MS);
    this.autoTimer.unref();
  }

  // ---------------------------------------------------------------- watch

  watch(spec: WatchSpec, sink: WatchSink): Watcher {
    return this.hub.add(spec, sink);
  }

  unwatch(w: Watcher): void {
    this.hub.remove(w);
  }

  /** Finishes queued work, then closes the engine. */
  async close(): Promise<void> {
    clearInterval(this.autoTimer);
    clearInterval(this.foreignTimer);
    this.unsubscribeForeign?.();
    this.leases.stop();
    await this.committer.drainAndClose();
    await this.engine.close();
  }
}
