/** Reads from the history: events for watchers, and key states at an old revision. */
import type { KvEngineOps, KvRecord } from '../../backends/backend.js';
import { decodeEvent, historyKey, type KvEvent } from './history.js';
import { inSpan, type KeySpan } from './key-span.js';

/** Events of revisions `[fromRev, toRev]` in order, at most about `limit` (whole revisions). */
export async function readEvents(ops: KvEngineOps, fromRev: number, toRev: number, limit: number): Promise<KvEvent[]> {
  if (fromRev > toRev) return [];
  const rows = await ops.maps.range('history', {
    start: historyKey(fromRev, 0),
    end: historyKey(toRev + 1, 0),
    limit,
    reverse: false,
  });
  const events = rows.map(([key, value]) => decodeEvent(key, value));
  if (rows.length < limit || events.length === 0) return events;
  // Cut at a revision boundary: a watcher gets all events of a revision together.
  const last = events[events.length - 1]!.kv.modRev;
  const firstOfLast = events.findIndex((e) => e.kv.modRev === last);
  if (firstOfLast > 0) return events.slice(0, firstOfLast);
  // One revision larger than the page: read it whole.
  const rest = await ops.maps.range('history', {
    start: historyKey(last, events.length),
    end: historyKey(last + 1, 0),
    limit: Number.MAX_SAFE_INTEGER,
    reverse: false,
  });
  return events.concat(rest.map(([key, value]) => decodeEvent(key, value)));
}

const PAGE = 1000;

/** Every current record in `span`, in key order, read in pages. */
export async function readAllCurrent(ops: KvEngineOps, span: KeySpan, keysOnly: boolean): Promise<KvRecord[]> {
  const out: KvRecord[] = [];
  let start = span.start;
  for (;;) {
    const page = await ops.range({ start, end: span.end, limit: PAGE, reverse: false }, keysOnly);
    out.push(...page);
    if (page.length < PAGE) return out;
    start = Buffer.concat([page[page.length - 1]!.key, Buffer.of(0)]);
  }
}

/**
 * The records of `span` as they were at revision `rev` (older than `currentRev`, not compacted),
 * in key order: the current records of keys untouched since `rev`, and for keys written after
 * it, the state their first later event replaced.
 */
export async function readAtRevision(
  ops: KvEngineOps,
  span: KeySpan,
  rev: number,
  currentRev: number,
): Promise<KvRecord[]> {
  const before = new Map<string, KvRecord | undefined>();
  for (let from = rev + 1; from <= currentRev; ) {
    const events = await readEvents(ops, from, currentRev, PAGE);
    if (events.length === 0) break;
    for (const e of events) {
      if (!inSpan(e.kv.key, span)) continue;
      const id = e.kv.key.toString('latin1');
      if (!before.has(id)) before.set(id, e.prev);
    }
    from = events[events.length - 1]!.kv.modRev + 1;
  }
  const current = await readAllCurrent(ops, span, false);
  const out = current.filter((r) => !before.has(r.key.toString('latin1')));
  for (const state of before.values()) if (state) out.push(state);
  out.sort((a, b) => Buffer.compare(a.key, b.key));
  return out;
}
