/** The part of a blob a Download (or `buffdb blob get --range`) serves (spec: blob-streams.md). */
import { outOfRange } from '../../errors.js';
import type { BlobId } from './blob-store.js';

export interface ServedRange {
  offset: number;
  /** Exclusive. */
  end: number;
}

/**
 * `length` undefined: to the end; past the end: clamped; `offset` equal to the size: an empty
 * range; `offset` past the end: OUT_OF_RANGE.
 */
export function servedRange(id: BlobId, size: number, offset: number, length: number | undefined): ServedRange {
  if (offset > size) throw outOfRange(`offset ${offset} is past the end of blob ${id} (${size} bytes)`);
  return { offset, end: length === undefined ? size : Math.min(size, offset + length) };
}
