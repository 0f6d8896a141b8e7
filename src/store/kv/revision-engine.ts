/**
 * Wraps a backend's KV engine so that each batch runs on an MvccBatch: the revision is read when
 * the batch starts and stored before it commits, and the batch's revisions are published to the
 * watch hub right after the commit — before any request of the batch is answered, so an
 * acknowledged write is already visible to watchers.
 */
import type { KvEngineOps, StoreEngine } from '../../backends/backend.js';
import type { StoreError } from '../../errors.js';
import { readEvents } from './history-reads.js';
import { MvccBatch, type Revision, readRevisionState, type Stamper } from './mvcc-batch.js';
import type { WatchHub } from './watch-hub.js';

/** Groups events read back from the history into revisions. */
function byRevision(events: Awaited<ReturnType<typeof readEvents>>): Revision[] {
  const out: Revision[] = [];
  for (const e of events) {
    const last = out[out.length - 1];
    if (last && last.rev === e.kv.modRev) last.events.push(e);
    else out.push({ rev: e.kv.modRev, events: [e] });
  }
  return out;
}

export class RevisionEngine implements StoreEngine<MvccBatch> {
  /** Set by the first batch: until then the hub does not know the store's revision. */
  private started = false;

  constructor(
    readonly engine: StoreEngine<KvEngineOps>,
    private readonly hub: WatchHub,
    /** Other processes may write the store: their revisions are read back and published too. */
    private readonly multiProcess: boolean,
    private readonly stamper: Stamper,
  ) {}

  get sql() {
    return this.engine.sql;
  }

  mapError(err: unknown): StoreError {
    return this.engine.mapError(err);
  }

  async batch<T>(work: (b: MvccBatch) => Promise<T>, keys?: readonly string[]): Promise<T> {
    let written: Revision[] = [];
    let compactRev = 0;
    const result = await this.engine.batch(async (ops) => {
      const state = await readRevisionState(ops);
      if (!this.started) {
        this.hub.committedRev = state.rev;
        this.hub.compacted(state.compactRev);
        this.started = true;
      }
      const known = this.hub.committedRev;
      // Revisions another process committed since our last batch: publish them first, in order.
      const foreign =
        this.multiProcess && state.rev > known
          ? byRevision(await readEvents(ops, known + 1, state.rev, Number.MAX_SAFE_INTEGER))
          : [];
      const b = new MvccBatch(ops, state, this.stamper);
      const r = await work(b);
      await b.finish(state.rev);
      written = foreign.concat(b.written);
      compactRev = b.compactRev;
      return r;
    }, keys);
    this.hub.compacted(compactRev);
    this.hub.publish(written);
    return result;
  }

  close() {
    return this.engine.close();
  }
}
