/**
 * The byte layout of a RocksDB or LMDB store file, shared by both engines.
 *
 * Every stored key starts with a tag byte naming what it holds, so no key is empty (neither engine
 * allows that) and nothing collides: current KV records, each named map, blob data and metadata,
 * counters. Under one tag, stored keys sort as the user's keys do (tag + key bytes, memcmp), so a
 * range of user keys is a range of stored keys.
 *
 * Long keys: an engine may limit key size (LMDB). A key longer than the engine's `longKeyPrefix`
 * is stored under tag + its first `longKeyPrefix` bytes + its SHA-256, and its entry's value
 * starts with the full key. Such entries still sort by their prefix, so only the entries that share
 * one truncated prefix (a "group") come out of the engine in hash order; scans re-sort each group
 * by full key (./scan.ts). The stored key's length says which form an entry has: a plain stored
 * key is at most 1 + longKeyPrefix bytes, a long one exactly 1 + longKeyPrefix + 32.
 */
import { createHash } from 'node:crypto';
import type { KvRecord, MapName } from '../backend.js';

export const TAG = {
  /** Current KV records: tag + key → record (encodeRecord). */
  record: 0x4b, // 'K'
  /** buffdb 0.1 KV entries: 'k' + UTF-8 key → UTF-8 value (upgraded at open, ./upgrade.ts). */
  legacyRecord: 0x6b, // 'k'
  /** buffdb 0.1 keys too long for LMDB: 'h' + SHA-256 of the key → value; the key itself is lost. */
  legacyHashed: 0x68, // 'h'
  /** Blob data: 'd' + 8-byte big-endian id → bytes. */
  blobData: 0x64, // 'd'
  /** Blob metadata: 'm' + 8-byte big-endian id → encodeMeta (its presence = the blob exists). */
  blobMeta: 0x6d, // 'm'
  /** Counters: '#' + ASCII name → 8 bytes big-endian. */
  counter: 0x23, // '#'
} as const;

/** One tag per named map (the KV file's and the BLOB file's maps never share a file). */
export const MAP_TAG: Record<MapName, number> = {
  meta: 0x4d, // 'M'
  history: 0x48, // 'H'
  lease: 0x4c, // 'L'
  lease_key: 0x50, // 'P'
  chunk: 0x43, // 'C'
  large: 0x47, // 'G'
  upload: 0x55, // 'U'
  sync_stamp: 0x53, // 'S'
  sync_peer: 0x45, // 'E'
  sync_conflict: 0x46, // 'F'
  blob_log: 0x42, // 'B'
  blob_stamp: 0x54, // 'T'
};

/** The layout version, in the `#format` counter. buffdb 0.1 wrote none. */
export const FORMAT = 2;
export const COUNTER = {
  format: Buffer.from('#format'),
  /** The last blob id handed out: a persisted counter, never a scan. */
  lastBlobId: Buffer.from('#last-blob-id'),
  /** LMDB: bumped by every commit (../lmdb/lmdb-backend.ts). */
  generation: Buffer.from('#generation'),
} as const;

const HASH_BYTES = 32;

/** A Uint8Array as a Buffer over the same memory (no copy). The one place buffers are re-viewed. */
export function asBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

export function readU64(raw: Uint8Array | undefined): bigint {
  return raw === undefined ? 0n : asBuffer(raw).readBigUInt64BE(0);
}

export function u64(n: bigint): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64BE(n);
  return out;
}

/** tag + bytes, in one allocation. */
export function tagged(tag: number, bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(bytes.length + 1);
  out[0] = tag;
  bytes.copy(out, 1);
  return out;
}

/** The stored key of user key `key` under `tag` (plain, or prefix + hash when long). */
export function storedKey(tag: number, key: Buffer, longKeyPrefix: number): Buffer {
  if (key.length <= longKeyPrefix) return tagged(tag, key);
  const out = Buffer.allocUnsafe(1 + longKeyPrefix + HASH_BYTES);
  out[0] = tag;
  key.copy(out, 1, 0, longKeyPrefix);
  createHash('sha256')
    .update(key)
    .digest()
    .copy(out, 1 + longKeyPrefix);
  return out;
}

export function isLongStoredKey(stored: Buffer, longKeyPrefix: number): boolean {
  return stored.length > 1 + longKeyPrefix;
}

/** The value stored for a long key: 4-byte key length, the key, then the payload. */
export function wrapLong(key: Buffer, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + key.length + payload.length);
  out.writeUInt32BE(key.length, 0);
  key.copy(out, 4);
  payload.copy(out, 4 + key.length);
  return out;
}

export function unwrapLong(raw: Buffer): { key: Buffer; payload: Buffer } {
  const length = raw.readUInt32BE(0);
  return { key: raw.subarray(4, 4 + length), payload: raw.subarray(4 + length) };
}

/**
 * The stored range holding the user keys `[start, end)` under `tag`. Exact unless a bound is
 * longer than `longKeyPrefix`: then it is widened to that bound's whole group, and `filter` says
 * so — the caller drops keys outside `[start, end)` by comparing full keys.
 */
export function storedRange(
  tag: number,
  start: Buffer,
  end: Buffer | undefined,
  longKeyPrefix: number,
): { lo: Buffer; hi: Buffer; filter: boolean } {
  const lo = tagged(tag, start.length > longKeyPrefix ? start.subarray(0, longKeyPrefix) : start);
  let hi: Buffer;
  if (end === undefined) hi = Buffer.of(tag + 1);
  else if (end.length <= longKeyPrefix) hi = tagged(tag, end);
  else {
    // Above every stored key of the group: its prefix followed by more 0xff bytes than a hash has.
    hi = Buffer.alloc(1 + longKeyPrefix + HASH_BYTES + 1, 0xff);
    hi[0] = tag;
    end.copy(hi, 1, 0, longKeyPrefix);
  }
  return { lo, hi, filter: start.length > longKeyPrefix || (end !== undefined && end.length > longKeyPrefix) };
}

// ------------------------------------------------------------------ KV records

const FLAG_LEASE = 1;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, n: number, at: number): number {
  while (n >= 0x80) {
    // `& 0x7f` is right above 2^32 too: ToInt32 keeps the low bits.
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[at++] = n;
  return at;
}

/**
 * A record as stored: a flag byte, createRev, modRev and version as varints (a few bytes each),
 * the lease (8 bytes, only when set), then the value. The key is the stored key's (or, for a long
 * key, in front of this: wrapLong).
 */
export function encodeRecord(r: KvRecord): Buffer {
  const hasLease = r.lease !== 0n;
  const header = 1 + varintSize(r.createRev) + varintSize(r.modRev) + varintSize(r.version) + (hasLease ? 8 : 0);
  const out = Buffer.allocUnsafe(header + r.value.length);
  out[0] = hasLease ? FLAG_LEASE : 0;
  let at = writeVarint(out, r.createRev, 1);
  at = writeVarint(out, r.modRev, at);
  at = writeVarint(out, r.version, at);
  if (hasLease) at = out.writeBigInt64BE(r.lease, at);
  r.value.copy(out, at);
  return out;
}

const EMPTY = Buffer.alloc(0);

/** `withValue` false: the value is left empty (keys-only reads). */
export function decodeRecord(key: Buffer, raw: Buffer, withValue = true): KvRecord {
  let at = 1;
  const next = (): number => {
    let n = 0;
    let scale = 1;
    let byte: number;
    do {
      byte = raw[at++]!;
      n += (byte & 0x7f) * scale;
      scale *= 0x80;
    } while (byte & 0x80);
    return n;
  };
  const createRev = next();
  const modRev = next();
  const version = next();
  let lease = 0n;
  if (raw[0]! & FLAG_LEASE) {
    lease = raw.readBigInt64BE(at);
    at += 8;
  }
  return { key, value: withValue ? raw.subarray(at) : EMPTY, createRev, modRev, version, lease };
}

// ------------------------------------------------------------------ blobs

export function blobKey(tag: number, id: number): Buffer {
  const out = Buffer.allocUnsafe(9);
  out[0] = tag;
  out.writeBigUInt64BE(BigInt(id), 1);
  return out;
}

// Metadata record: one flag byte keeps null and "" apart.
const META_NULL = 0;
const META_TEXT = 1;

export function encodeMeta(metadata: string | null): Buffer {
  if (metadata === null) return Buffer.of(META_NULL);
  const text = Buffer.from(metadata, 'utf8');
  const out = Buffer.allocUnsafe(text.length + 1);
  out[0] = META_TEXT;
  text.copy(out, 1);
  return out;
}

export function decodeMeta(raw: Uint8Array): string | null {
  if (raw[0] === META_NULL) return null;
  return asBuffer(raw).toString('utf8', 1);
}
