/**
 * Ordered reads of user keys under one tag, on top of the overlay's stored-key scans: undoes the
 * long-key storage of ./layout.ts. Stored keys sort like user keys except inside a group of long
 * keys sharing one truncated prefix (those come in hash order), so each group is read whole and
 * sorted by full key before it is handed on.
 */
import { asBuffer, isLongStoredKey, storedRange, unwrapLong } from './layout.js';
import type { Overlay } from './overlay.js';

export type Entry = [key: Buffer, payload: Buffer];

/** Entries of `tag` whose user keys are in `[start, end)`, in user-key order (or reversed). */
export function* userEntries(
  o: Overlay,
  tag: number,
  start: Buffer,
  end: Buffer | undefined,
  reverse: boolean,
  hint: number,
): Generator<Entry> {
  const prefix = o.engine.longKeyPrefix;
  const { lo, hi, filter } = storedRange(tag, start, end, prefix);
  const inRange = (key: Buffer): boolean =>
    !filter || (Buffer.compare(key, start) >= 0 && (end === undefined || Buffer.compare(key, end) < 0));
  let group: Entry[] = [];
  let groupPrefix: Buffer | undefined;
  function* flush(): Generator<Entry> {
    group.sort(reverse ? (a, b) => Buffer.compare(b[0], a[0]) : (a, b) => Buffer.compare(a[0], b[0]));
    for (const entry of group) if (inRange(entry[0])) yield entry;
    group = [];
    groupPrefix = undefined;
  }
  for (const [stored, raw] of o.scan(lo, hi, reverse, hint)) {
    if (isLongStoredKey(stored, prefix)) {
      const head = stored.subarray(0, 1 + prefix);
      if (groupPrefix !== undefined && !head.equals(groupPrefix)) yield* flush();
      groupPrefix = head;
      const { key, payload } = unwrapLong(asBuffer(raw));
      group.push([key, payload]);
      continue;
    }
    if (group.length > 0) yield* flush();
    const key = stored.subarray(1);
    if (inRange(key)) yield [key, asBuffer(raw)];
  }
  if (group.length > 0) yield* flush();
}

/** Up to `limit` entries of userEntries. */
export function take<T>(entries: Iterable<T>, limit: number): T[] {
  const out: T[] = [];
  if (limit <= 0) return out;
  for (const entry of entries) {
    out.push(entry);
    if (out.length >= limit) break;
  }
  return out;
}

/** Number of user keys of `tag` in `[start, end)`: counts stored keys, unless a bound is a long key. */
export function countUserKeys(o: Overlay, tag: number, start: Buffer, end: Buffer | undefined): number {
  const { lo, hi, filter } = storedRange(tag, start, end, o.engine.longKeyPrefix);
  if (!filter) return o.count(lo, hi);
  let n = 0;
  for (const _ of userEntries(o, tag, start, end, false, 1000)) n++;
  return n;
}
