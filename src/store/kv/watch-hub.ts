/**
 * Watchers: every committed revision is pushed to the watchers whose span it touches, in order,
 * with no gap and no duplicate. A watcher whose consumer cannot keep up (its sink says it is full)
 * stops receiving live events and later catches up from the history, so a slow watcher never
 * blocks writers or other watchers and the hub never buffers for it without bound.
 */
import { asStoreError, type StoreError } from '../../errors.js';
import type { KvEvent } from './history.js';
import { inSpan, type KeySpan } from './key-span.js';
import type { Revision } from './mvcc-batch.js';

export interface WatchSpec {
  span: KeySpan;
  /** First revision to deliver; 0: the next one committed. */
  startRev: number;
  noPut: boolean;
  noDelete: boolean;
}

export interface WatchSink {
  /**
   * The watcher's events of one or more consecutive revisions (whole revisions, in order). Returns
   * false when the consumer is full: the hub then holds back until `resume()`.
   */
  deliver(events: KvEvent[]): boolean;
  /** The history the watcher needs is compacted: it ends here (etcd cancels it with compact_revision). */
  compacted(compactRev: number): void;
  /** The watcher could not go on (its history read failed: the store is closing, an engine error). */
  failed(err: StoreError): void;
}

/** Reads committed history for a catching-up watcher: events of `[fromRev, bound]`, `bound` set by the hub. */
export type HistoryReader = (
  fromRev: number,
  limit: number,
  onBound: (committedRev: number) => number,
) => Promise<{ events: KvEvent[]; bound: number; compactRev: number }>;

type State = 'live' | 'behind' | 'catching-up' | 'closed';

/** Live revisions held for a catching-up watcher while it reads history (beyond this it reads again). */
const CATCH_UP_BUFFER_EVENTS = 10_000;
const HISTORY_PAGE = 1000;

export class Watcher {
  state: State = 'live';
  /** The first revision this watcher has not been given yet. */
  nextRev = 0;
  /** While catching up: live revisions above the history read's bound, in order. */
  buffered: Revision[] | undefined;
  bufferedEvents = 0;

  constructor(
    readonly spec: WatchSpec,
    readonly sink: WatchSink,
  ) {}

  matches(e: KvEvent): boolean {
    // A sync tombstone for a key this store did not have changes nothing a watcher sees.
    if (e.type === 'delete' && e.prev === undefined) return false;
    if (e.type === 'put' ? this.spec.noPut : this.spec.noDelete) return false;
    return inSpan(e.kv.key, this.spec.span);
  }
}

export class WatchHub {
  private readonly watchers = new Set<Watcher>();
  /** The last revision published (committed). */
  committedRev = 1;
  compactRev = 0;

  /** Called after each batch that committed revisions (sync senders wake on it). */
  readonly commitListeners = new Set<() => void>();

  constructor(private readonly readHistory: HistoryReader) {}

  get size(): number {
    return this.watchers.size;
  }

  /** Watchers by state: live, held back for a full consumer (`behind`), reading history. */
  states(): Record<Exclude<State, 'closed'>, number> {
    const counts = { live: 0, behind: 0, 'catching-up': 0 };
    for (const w of this.watchers) if (w.state !== 'closed') counts[w.state]++;
    return counts;
  }

  /** Starts a watcher; a start revision below the compaction revision is answered with `compacted`. */
  add(spec: WatchSpec, sink: WatchSink): Watcher {
    const w = new Watcher(spec, sink);
    if (spec.startRev > 0 && spec.startRev < this.compactRev) {
      w.state = 'closed';
      sink.compacted(this.compactRev);
      return w;
    }
    this.watchers.add(w);
    w.nextRev = spec.startRev > 0 ? spec.startRev : this.committedRev + 1;
    if (w.nextRev <= this.committedRev) this.catchUp(w);
    return w;
  }

  remove(w: Watcher): void {
    w.state = 'closed';
    w.buffered = undefined;
    this.watchers.delete(w);
  }

  /** The consumer of a `behind` watcher has room again. */
  resume(w: Watcher): void {
    if (w.state === 'behind') this.catchUp(w);
  }

  /** Committed revisions, in order (called right after each commit, before its requests are answered). */
  publish(revisions: Revision[]): void {
    if (revisions.length === 0) return;
    this.committedRev = revisions[revisions.length - 1]!.rev;
    for (const listener of this.commitListeners) listener();
    for (const w of this.watchers) {
      if (w.state === 'live') this.deliverLive(w, revisions);
      else if (w.state === 'catching-up' && w.buffered) {
        for (const r of revisions) w.bufferedEvents += r.events.length;
        if (w.bufferedEvents > CATCH_UP_BUFFER_EVENTS) {
          w.buffered = undefined;
          w.bufferedEvents = 0;
        } else w.buffered.push(...revisions);
      }
    }
  }

  /** Notes a new compaction revision; watchers that still need older history end when they next read it. */
  compacted(rev: number): void {
    this.compactRev = Math.max(this.compactRev, rev);
  }

  private deliverLive(w: Watcher, revisions: Revision[]): void {
    const out: KvEvent[] = [];
    for (const r of revisions) {
      if (r.rev < w.nextRev) continue;
      for (const e of r.events) if (w.matches(e)) out.push(e);
      w.nextRev = r.rev + 1;
    }
    if (out.length > 0 && !w.sink.deliver(out)) w.state = 'behind';
  }

  /** Reads history from `w.nextRev` until the watcher is level with the hub, then makes it live. */
  private catchUp(w: Watcher): void {
    w.state = 'catching-up';
    const step = async (): Promise<void> => {
      while (w.state === 'catching-up') {
        const { events, bound, compactRev } = await this.readHistory(w.nextRev, HISTORY_PAGE, (committed) => {
          // From this moment live revisions above `committed` are kept for the watcher.
          w.buffered = [];
          w.bufferedEvents = 0;
          return committed;
        });
        if (w.state !== 'catching-up') return;
        if (w.nextRev < compactRev) {
          this.remove(w);
          w.sink.compacted(compactRev);
          return;
        }
        const complete = events.length < HISTORY_PAGE;
        const matching = events.filter((e) => w.matches(e));
        w.nextRev = complete ? bound + 1 : events[events.length - 1]!.kv.modRev + 1;
        if (matching.length > 0 && !w.sink.deliver(matching)) {
          w.state = 'behind';
          w.buffered = undefined;
          return;
        }
        if (!complete || !w.buffered) continue;
        // Level with the read's bound: what was published meanwhile is in the buffer, in order.
        const buffered = w.buffered;
        w.buffered = undefined;
        w.state = 'live';
        this.deliverLive(w, buffered);
        return;
      }
    };
    step().catch((err: unknown) => {
      if (w.state === 'closed') return;
      this.remove(w);
      w.sink.failed(asStoreError(err));
    });
  }
}
