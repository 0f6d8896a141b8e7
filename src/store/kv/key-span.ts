/** Key ranges as etcd gives them, normalised to `[start, end)` in byte order. */

/** `[start, end)`; `end` undefined: every key from `start` on. */
export interface KeySpan {
  start: Buffer;
  end: Buffer | undefined;
}

const ZERO = Buffer.of(0);

/** The smallest key after `key`: the end of the one-key span `[key, key\0)`. */
export function successor(key: Buffer): Buffer {
  return Buffer.concat([key, ZERO]);
}

/** The span of exactly one key. */
export function singleKey(key: Buffer): KeySpan {
  return { start: key, end: successor(key) };
}

/**
 * etcd's (key, range_end) pair: an empty range_end is the key alone, `\0` is every key from
 * `key` on (with an empty or `\0` key: every key), anything else is `[key, range_end)`.
 */
export function etcdSpan(key: Buffer, rangeEnd: Buffer): KeySpan {
  if (rangeEnd.length === 0) return singleKey(key);
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start: key, end: undefined };
  return { start: key, end: rangeEnd };
}

/** The end of the span of every key starting with `prefix` (etcd's prefix range end). */
export function prefixEnd(prefix: Buffer): Buffer | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i]!++;
      return end;
    }
  }
  return undefined;
}

export function prefixSpan(prefix: Buffer): KeySpan {
  return { start: prefix, end: prefixEnd(prefix) };
}

export function inSpan(key: Buffer, span: KeySpan): boolean {
  return Buffer.compare(key, span.start) >= 0 && (span.end === undefined || Buffer.compare(key, span.end) < 0);
}

/** Whether the span holds no key at all (end at or before start). */
export function isEmptySpan(span: KeySpan): boolean {
  return span.end !== undefined && Buffer.compare(span.end, span.start) <= 0;
}

/** Whether two spans share a key. */
export function spansOverlap(a: KeySpan, b: KeySpan): boolean {
  const aBeforeB = a.end !== undefined && Buffer.compare(a.end, b.start) <= 0;
  const bBeforeA = b.end !== undefined && Buffer.compare(b.end, a.start) <= 0;
  return !aBeforeB && !bBeforeA;
}
