/**
 * A site's change stream is its KV history: every event carries its stamp, and whether it was made
 * here. A batch for a peer is read from the history after the peer's cursor, cut at a revision
 * boundary (a transaction travels whole), with superseded writes to a key coalesced into the last.
 */
import type { KvEngineOps } from '../../backends/backend.js';
import type { KvEvent } from '../kv/history.js';
import { readEvents } from '../kv/history-reads.js';
import { type SiteId, type Stamp, ZERO_STAMP } from './stamp.js';

/** One key's change as it travels: its value (or deleted) and the stamp of the write. */
export interface Change {
  key: Buffer;
  /** undefined: deleted. */
  value: Buffer | undefined;
  stamp: Stamp;
  /** Set by a hub that clamped the write's clock (the clock it was made with). */
  replaces?: number;
}

/** Which of this site's changes a peer gets. */
export interface ChangeFilter {
  /** Only writes made on this site (an edge sends its own writes; the hub has the rest). */
  localOnly: boolean;
  /** Never the peer's own writes back (unless the hub clamped their clock: the peer must learn it). */
  peer: SiteId | undefined;
  /** Only keys starting with one of these; empty: every key. */
  prefixes: readonly Buffer[];
}

export interface ChangeBatch {
  /** The sender's revision the batch follows (exclusive). */
  from: number;
  /** The sender's revision the batch reaches: the receiver's cursor once it is applied. */
  to: number;
  changes: Change[];
}

const PAGE_EVENTS = 1000;

export function matchesPrefixes(key: Buffer, prefixes: readonly Buffer[]): boolean {
  if (prefixes.length === 0) return true;
  for (const p of prefixes) if (key.length >= p.length && key.subarray(0, p.length).equals(p)) return true;
  return false;
}

function wanted(e: KvEvent, filter: ChangeFilter): boolean {
  if (filter.localOnly && !e.local) return false;
  if (filter.peer && e.stamp && e.replaces === undefined && e.stamp.site.equals(filter.peer)) return false;
  return matchesPrefixes(e.kv.key, filter.prefixes);
}

export function changeOf(e: KvEvent, self: SiteId): Change {
  return {
    key: e.kv.key,
    value: e.type === 'put' ? e.kv.value : undefined,
    // Events from before stamps existed count as older than any stamped write.
    stamp: e.stamp ?? { ...ZERO_STAMP, site: self },
    replaces: e.replaces,
  };
}

export function changeBytes(c: Change): number {
  return c.key.length + (c.value?.length ?? 0) + 32;
}

/**
 * Reads the changes after revision `from`, up to `to` (the last committed revision), about
 * `maxBytes` of them: whole revisions, the last write per key, filtered for the peer. The caller
 * has checked that `from` is not below the compacted revision.
 */
export async function readChanges(
  ops: KvEngineOps,
  from: number,
  to: number,
  filter: ChangeFilter,
  maxBytes: number,
  self: SiteId,
): Promise<ChangeBatch> {
  const last = new Map<string, KvEvent>();
  let bytes = 0;
  let reached = from;
  while (reached < to && bytes < maxBytes) {
    const events = await readEvents(ops, reached + 1, to, PAGE_EVENTS);
    if (events.length === 0) {
      reached = to;
      break;
    }
    for (const e of events) {
      const id = e.kv.key.toString('latin1');
      const before = last.get(id);
      if (before) bytes -= before.kv.key.length + before.kv.value.length + 32;
      last.delete(id); // re-inserted below: the map keeps the order of each key's last write
      last.set(id, e);
      bytes += e.kv.key.length + e.kv.value.length + 32;
    }
    reached = events[events.length - 1]!.kv.modRev;
  }
  const changes: Change[] = [];
  for (const e of last.values()) if (wanted(e, filter)) changes.push(changeOf(e, self));
  return { from, to: reached, changes };
}
