/**
 * Sync stamps: every write carries the hybrid-logical-clock time it was made at and the site that
 * made it. Concurrent writes to one key resolve by the larger stamp — the clock first, the site id
 * (bytes) to break a tie — so every site picks the same winner (docs/sync.md).
 */

/** A site id: 8 random bytes, made when a store first needs one (and anew for a copied store). */
export type SiteId = Buffer;
export const SITE_BYTES = 8;

export interface Stamp {
  /** Hybrid logical clock: milliseconds × 1024 + a counter (fits a double exactly until year 2248). */
  hlc: number;
  site: SiteId;
}

export const LOGICAL_BITS = 1024;

/** Orders two stamps: negative when `a` loses to `b`, 0 for the same write. */
export function compareStamps(a: Stamp, b: Stamp): number {
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1;
  return Buffer.compare(a.site, b.site);
}

/** The stamp of a write older than every synced write (a key written before the store had stamps). */
export const ZERO_STAMP: Stamp = { hlc: 0, site: Buffer.alloc(SITE_BYTES) };

const HIGH = 2 ** 32;

export function writeHlc(buf: Buffer, hlc: number, at: number): void {
  buf.writeUInt32BE(Math.floor(hlc / HIGH), at);
  buf.writeUInt32BE(hlc >>> 0, at + 4);
}

export function readHlc(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at) * HIGH + buf.readUInt32BE(at + 4);
}

/** 16 bytes: the clock, then the site. */
export function encodeStamp(s: Stamp): Buffer {
  const out = Buffer.allocUnsafe(8 + SITE_BYTES);
  writeStamp(out, s);
  return out;
}

function writeStamp(out: Buffer, s: Stamp): void {
  writeHlc(out, s.hlc, 0);
  s.site.copy(out, 8);
}

/**
 * A key's stamp row (`sync_stamp`): the stamp, then the revision of the write it belongs to. Rows
 * written before the revision was added are 16 bytes (`rev` undefined).
 */
export function encodeKeyStamp(s: Stamp, rev: number): Buffer {
  const out = Buffer.allocUnsafe(8 + SITE_BYTES + 8);
  writeStamp(out, s);
  writeHlc(out, rev, 8 + SITE_BYTES);
  return out;
}

export function decodeKeyStamp(raw: Buffer): { stamp: Stamp; rev: number | undefined } {
  return { stamp: decodeStamp(raw), rev: raw.length >= 8 + SITE_BYTES + 8 ? readHlc(raw, 8 + SITE_BYTES) : undefined };
}

export function decodeStamp(raw: Buffer, at = 0): Stamp {
  return { hlc: readHlc(raw, at), site: Buffer.from(raw.subarray(at + 8, at + 8 + SITE_BYTES)) };
}

/** Wall-clock milliseconds of a stamp's clock. */
export function hlcMs(hlc: number): number {
  return Math.floor(hlc / LOGICAL_BITS);
}

export function hlcOf(ms: number): number {
  return ms * LOGICAL_BITS;
}
