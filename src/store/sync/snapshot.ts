/**
 * A reset, for a peer whose cursor is older than the history kept (away longer than
 * --sync-max-offline): the hub sends its current state — records and tombstones with their stamps —
 * page by page in key order, then the changes after the revision the snapshot started at. The
 * receiver merges each page by last-writer-wins and drops the keys of the page's range the hub no
 * longer has (deleted there, tombstone since forgotten) — except its own writes the hub has not
 * received yet, which go up as usual: nothing resurrected, nothing of its own lost.
 */
import type { KvEngineOps } from '../../backends/backend.js';
import type { KeySpan } from '../kv/key-span.js';
import { inSpan, successor } from '../kv/key-span.js';
import type { MvccBatch, Origin } from '../kv/mvcc-batch.js';
import { localState, writeChange } from './apply.js';
import type { Change } from './changes.js';
import type { HybridClock } from './clock.js';
import { keyStamp } from './key-stamps.js';
import { compareStamps, decodeKeyStamp, type SiteId, ZERO_STAMP } from './stamp.js';

export interface SnapshotPage {
  /** The keys `[start, end)` the page covers; `end` undefined: to the last key. */
  start: Buffer;
  end: Buffer | undefined;
  changes: Change[];
}

const PAGE_KEYS = 1000;

/** The page of `span` from `start`: current records and tombstones with their stamps. */
export async function readSnapshotPage(ops: KvEngineOps, span: KeySpan, start: Buffer): Promise<SnapshotPage> {
  const records = await ops.range({ start, end: span.end, limit: PAGE_KEYS, reverse: false }, false);
  const full = records.length === PAGE_KEYS;
  const end = full ? successor(records[records.length - 1]!.key) : span.end;
  const rows = await ops.maps.range('sync_stamp', { start, end, limit: Number.MAX_SAFE_INTEGER, reverse: false });
  const stampRows = new Map(rows.map(([key, raw]) => [key.toString('latin1'), raw]));
  const changes: Change[] = [];
  for (const r of records) {
    const id = r.key.toString('latin1');
    const stamp = (await keyStamp(ops, r, stampRows.get(id))) ?? ZERO_STAMP;
    stampRows.delete(id);
    changes.push({ key: r.key, value: r.value, stamp });
  }
  // The rest are tombstones: keys deleted, their stamp kept.
  for (const [key, raw] of rows) {
    if (stampRows.has(key.toString('latin1')))
      changes.push({ key, value: undefined, stamp: decodeKeyStamp(raw).stamp });
  }
  return { start, end, changes };
}

export interface SnapshotApplyContext {
  hub: SiteId;
  self: SiteId;
  /** The hub has applied this site's stream up to here: later own writes are not there yet. */
  hubSeen: number;
  /** An edge drops the keys the hub no longer has; a hub receiving an edge's snapshot only merges. */
  dropMissing: boolean;
  clock: HybridClock;
}

/** Merges one snapshot page into the store (one revision). Returns the keys changed. */
export async function applySnapshotPage(b: MvccBatch, page: SnapshotPage, ctx: SnapshotApplyContext): Promise<number> {
  const span: KeySpan = { start: page.start, end: page.end };
  const incoming = new Map(page.changes.map((c) => [c.key.toString('latin1'), c]));
  const writes: (() => unknown)[] = [];
  let newest = 0;
  for (const c of page.changes) {
    newest = Math.max(newest, c.stamp.hlc);
    const { record, stamp: local } = await localState(b.ops, c.key);
    if (local && compareStamps(c.stamp, local) <= 0) continue;
    writes.push(() => writeChange(b, c, record, { stamp: c.stamp }));
  }
  // Local keys of the range the hub no longer has.
  const mine = !ctx.dropMissing
    ? []
    : await b.ops.range({ start: span.start, end: span.end, limit: Number.MAX_SAFE_INTEGER, reverse: false }, true);
  for (const record of mine) {
    if (!inSpan(record.key, span) || incoming.has(record.key.toString('latin1'))) continue;
    // Read whole (the range above was keys only): the delete's history event keeps the value.
    const { record: current, stamp } = await localState(b.ops, record.key);
    const local = stamp ?? ZERO_STAMP;
    if (!current || (local.site.equals(ctx.self) && current.modRev > ctx.hubSeen)) continue; // not sent yet: it goes up
    const origin: Origin = { stamp: { hlc: local.hlc + 1, site: ctx.hub } };
    writes.push(() => b.delete(current, origin));
  }
  if (writes.length > 0) {
    await b.mutate(async () => {
      for (const write of writes) await write();
    });
  }
  ctx.clock.observe(newest);
  return writes.length;
}
