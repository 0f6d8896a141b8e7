/**
 * The change history of the KV store: one event per key written, stored in the `history` map under
 * (revision, sub-index). Written once for every backend; the engine sees only bytes.
 *
 * Every event carries the key's state before it (`prev`, when the key existed). That makes a read
 * at an old revision, watch `prev_kv` and compaction need no lookups: a key's state at revision R
 * is the `prev` of its first event after R (or its current record when it has none), and
 * compacting to C simply drops every event below C.
 */
import type { KvRecord } from '../../backends/backend.js';
import { decodeStamp, readHlc, SITE_BYTES, type Stamp, writeHlc } from '../sync/stamp.js';

export type EventType = 'put' | 'delete';

export interface KvEvent {
  type: EventType;
  /** The key's state after the event; for a delete, only `key` and `modRev` (= the revision) are set. */
  kv: KvRecord;
  /** Position of the event inside its revision (0, 1, …). */
  sub: number;
  /** The state this event replaced; undefined when the key did not exist. */
  prev: KvRecord | undefined;
  /** When and where the write was made (sync: the last writer wins); absent in old stores' events. */
  stamp?: Stamp;
  /** Made on this site (not received from a sync peer): what an edge sends to its hub. */
  local?: boolean;
  /** The hub clamped the stamp of a write made with a clock too far ahead: its original clock. */
  replaces?: number;
}

/** Format 1 (no stamp) is still read; format 2 adds the sync stamp. */
const FORMAT_V1 = 1;
const FORMAT = 2;
const TYPE_PUT = 0;
const TYPE_DELETE = 1;
const FLAG_PREV = 2;
const FLAG_LOCAL = 4;
const FLAG_STAMP = 8;
/** format, flags, createRev, version, lease, prevRev, prevCreateRev, prevVersion, prevLease, key and value lengths. */
const HEADER_V1 = 1 + 1 + 7 * 8 + 4 + 4;
/** … then the stamp's clock and site and the clamped-from clock. */
const HEADER_FULL = HEADER_V1 + 8 + SITE_BYTES + 8;

const HIGH = 2 ** 32;

function writeU64(buf: Buffer, n: number, at: number): void {
  buf.writeUInt32BE(Math.floor(n / HIGH), at);
  buf.writeUInt32BE(n >>> 0, at + 4);
}

function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at) * HIGH + buf.readUInt32BE(at + 4);
}

/** History map key: revision (8 bytes) then sub-index (4 bytes), big-endian, so keys sort by both. */
export function historyKey(rev: number, sub: number): Buffer {
  const key = Buffer.allocUnsafe(12);
  writeU64(key, rev, 0);
  key.writeUInt32BE(sub, 8);
  return key;
}

export function historyKeyRev(key: Buffer): number {
  return readU64(key, 0);
}

export function encodeEvent(event: KvEvent): Buffer {
  const { kv, prev } = event;
  const isPut = event.type === 'put';
  const value = isPut ? kv.value : EMPTY;
  const prevValue = prev ? prev.value : EMPTY;
  const out = Buffer.allocUnsafe(HEADER_FULL + kv.key.length + value.length + prevValue.length);
  out[0] = FORMAT;
  const { stamp } = event;
  out[1] =
    (isPut ? TYPE_PUT : TYPE_DELETE) |
    (prev ? FLAG_PREV : 0) |
    (event.local ? FLAG_LOCAL : 0) |
    (stamp ? FLAG_STAMP : 0);
  writeU64(out, isPut ? kv.createRev : 0, 2);
  writeU64(out, isPut ? kv.version : 0, 10);
  out.writeBigInt64BE(isPut ? kv.lease : 0n, 18);
  writeU64(out, prev ? prev.modRev : 0, 26);
  writeU64(out, prev ? prev.createRev : 0, 34);
  writeU64(out, prev ? prev.version : 0, 42);
  out.writeBigInt64BE(prev ? prev.lease : 0n, 50);
  out.writeUInt32BE(kv.key.length, 58);
  out.writeUInt32BE(value.length, 62);
  writeHlc(out, stamp ? stamp.hlc : 0, HEADER_V1);
  if (stamp) stamp.site.copy(out, HEADER_V1 + 8);
  else out.fill(0, HEADER_V1 + 8, HEADER_V1 + 8 + SITE_BYTES);
  writeHlc(out, event.replaces ?? 0, HEADER_V1 + 8 + SITE_BYTES);
  let at = HEADER_FULL;
  at += kv.key.copy(out, at);
  at += value.copy(out, at);
  prevValue.copy(out, at);
  return out;
}

/** The stamp of a stored event and whether it was made on this site, without decoding the rest. */
export function eventStamp(raw: Buffer): { stamp: Stamp; local: boolean } | undefined {
  if (raw[0] !== FORMAT || !(raw[1]! & FLAG_STAMP)) return undefined;
  return { stamp: decodeStamp(raw, HEADER_V1), local: (raw[1]! & FLAG_LOCAL) !== 0 };
}

/**
 * What compaction reads of each event it drops (MapOps.rangeHeads): the header and a key of up to
 * 256 bytes — not the value and previous value, most of an event's bytes.
 */
export const EVENT_HEAD_BYTES = HEADER_FULL + 256;

/**
 * The key and stamp of a local put's event, read without decoding the rest (compaction checks each
 * event it drops); undefined for deletes, received writes and events without a stamp. `raw` may
 * be the event's head only: `key` is then undefined when the head ends inside the key.
 */
export function localPutOf(raw: Buffer): { key: Buffer | undefined; stamp: Stamp } | undefined {
  const flags = raw[1]!;
  if (raw[0] !== FORMAT || (flags & 1) !== TYPE_PUT || !(flags & FLAG_LOCAL) || !(flags & FLAG_STAMP)) return undefined;
  const keyEnd = HEADER_FULL + raw.readUInt32BE(58);
  return {
    key: keyEnd <= raw.length ? raw.subarray(HEADER_FULL, keyEnd) : undefined,
    stamp: decodeStamp(raw, HEADER_V1),
  };
}

/** The event stored under history key `key` (whose revision becomes `kv.modRev`). */
export function decodeEvent(key: Buffer, raw: Buffer): KvEvent {
  if (raw[0] !== FORMAT && raw[0] !== FORMAT_V1) throw new Error(`history event in an unknown format (${raw[0]})`);
  const header = raw[0] === FORMAT ? HEADER_FULL : HEADER_V1;
  const flags = raw[1]!;
  const keyLength = raw.readUInt32BE(58);
  const valueLength = raw.readUInt32BE(62);
  const keyBytes = raw.subarray(header, header + keyLength);
  const isPut = (flags & 1) === TYPE_PUT;
  const rev = historyKeyRev(key);
  const prev: KvRecord | undefined =
    flags & FLAG_PREV
      ? {
          key: keyBytes,
          value: raw.subarray(header + keyLength + valueLength),
          createRev: readU64(raw, 34),
          modRev: readU64(raw, 26),
          version: readU64(raw, 42),
          lease: raw.readBigInt64BE(50),
        }
      : undefined;
  const replaces = flags & FLAG_STAMP ? readHlc(raw, HEADER_V1 + 8 + SITE_BYTES) : 0;
  return {
    type: isPut ? 'put' : 'delete',
    sub: key.readUInt32BE(8),
    prev,
    stamp: flags & FLAG_STAMP ? decodeStamp(raw, HEADER_V1) : undefined,
    local: (flags & FLAG_LOCAL) !== 0,
    replaces: replaces || undefined,
    kv: isPut
      ? {
          key: keyBytes,
          value: raw.subarray(header + keyLength, header + keyLength + valueLength),
          createRev: readU64(raw, 2),
          modRev: rev,
          version: readU64(raw, 10),
          lease: raw.readBigInt64BE(18),
        }
      : tombstone(keyBytes, rev),
  };
}

export const EMPTY = Buffer.alloc(0);

/** The record of a deleted key as events carry it: the key and the revision of the delete. */
export function tombstone(key: Buffer, rev: number): KvRecord {
  return { key, value: EMPTY, createRev: 0, modRev: rev, version: 0, lease: 0n };
}
