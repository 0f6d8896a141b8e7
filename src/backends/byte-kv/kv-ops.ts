/** KvOps and MapOps over the overlay of one batch (layout: ./layout.ts). */
import { createHash } from 'node:crypto';
import type { KvEngineOps, KvRecord, MapName, MapOps, RangeQuery } from '../backend.js';
import {
  asBuffer,
  decodeRecord,
  encodeRecord,
  isLongStoredKey,
  MAP_TAG,
  storedKey,
  TAG,
  tagged,
  unwrapLong,
  wrapLong,
} from './layout.js';
import type { Overlay } from './overlay.js';
import { countUserKeys, take, userEntries } from './scan.js';

/**
 * buffdb 0.1 stored LMDB keys longer than the engine's limit (at least 511 bytes) under their
 * SHA-256 alone, so their text is lost. They stay where they are and are found by exact key: a get
 * falls back to them, a put or delete moves them to the current layout. Ranges cannot list them.
 */
const LEGACY_HASHED_MIN = 510;

function legacyHashedKey(key: Buffer): Buffer {
  return tagged(TAG.legacyHashed, createHash('sha256').update(key).digest());
}

/** A long key's entry holds the full key in front of the payload. */
function readEntry(stored: Buffer, raw: Uint8Array, prefix: number): { key: Buffer; payload: Buffer } | undefined {
  if (!isLongStoredKey(stored, prefix)) return { key: stored.subarray(1), payload: asBuffer(raw) };
  return unwrapLong(asBuffer(raw));
}

/** Reads and writes one entry of a user key under `tag`, long or not. */
class TaggedEntries {
  constructor(
    private readonly o: Overlay,
    private readonly prefix: number,
  ) {}

  get(tag: number, key: Buffer): Buffer | undefined {
    const stored = storedKey(tag, key, this.prefix);
    const raw = this.o.get(stored);
    if (raw === undefined) return undefined;
    const entry = readEntry(stored, raw, this.prefix)!;
    // A long key's entry is found by its hash; the full key settles it.
    return entry.key.equals(key) ? entry.payload : undefined;
  }

  put(tag: number, key: Buffer, payload: Buffer): void {
    const stored = storedKey(tag, key, this.prefix);
    this.o.put(stored, isLongStoredKey(stored, this.prefix) ? wrapLong(key, payload) : payload);
  }

  delete(tag: number, key: Buffer): void {
    this.o.put(storedKey(tag, key, this.prefix), null);
  }
}

export class ByteMapOps implements MapOps {
  private readonly entries: TaggedEntries;

  constructor(
    private readonly o: Overlay,
    private readonly names: readonly MapName[],
  ) {
    this.entries = new TaggedEntries(o, o.engine.longKeyPrefix);
  }

  private tag(map: MapName): number {
    if (!this.names.includes(map)) throw new Error(`no map ${map} in this store`);
    return MAP_TAG[map];
  }

  get(map: MapName, key: Buffer): Buffer | undefined {
    return this.entries.get(this.tag(map), key);
  }

  put(map: MapName, key: Buffer, value: Buffer): void {
    this.entries.put(this.tag(map), key, value);
  }

  delete(map: MapName, key: Buffer): void {
    this.entries.delete(this.tag(map), key);
  }

  range(map: MapName, q: RangeQuery): [Buffer, Buffer][] {
    return take(userEntries(this.o, this.tag(map), q.start, q.end, q.reverse, q.limit), q.limit);
  }
}

export class ByteKvOps implements KvEngineOps {
  private readonly entries: TaggedEntries;

  constructor(
    private readonly o: Overlay,
    readonly maps: MapOps,
    /** The store still holds buffdb 0.1 entries under hashed keys. */
    private readonly legacyHashed: boolean,
  ) {
    this.entries = new TaggedEntries(o, o.engine.longKeyPrefix);
  }

  get(key: Buffer): KvRecord | undefined {
    const raw = this.entries.get(TAG.record, key);
    if (raw !== undefined) return decodeRecord(key, raw);
    if (this.legacyHashed && key.length >= LEGACY_HASHED_MIN) {
      const value = this.o.get(legacyHashedKey(key));
      // As every key of an upgraded store: revision 1, version 1.
      if (value !== undefined) return { key, value: asBuffer(value), createRev: 1, modRev: 1, version: 1, lease: 0n };
    }
    return undefined;
  }

  put(record: KvRecord): void {
    this.entries.put(TAG.record, record.key, encodeRecord(record));
    this.dropLegacy(record.key);
  }

  delete(key: Buffer): void {
    this.entries.delete(TAG.record, key);
    this.dropLegacy(key);
  }

  private dropLegacy(key: Buffer): void {
    if (!this.legacyHashed || key.length < LEGACY_HASHED_MIN) return;
    const legacy = legacyHashedKey(key);
    if (this.o.get(legacy) !== undefined) this.o.put(legacy, null);
  }

  range(q: RangeQuery, keysOnly: boolean): KvRecord[] {
    const entries = take(userEntries(this.o, TAG.record, q.start, q.end, q.reverse, q.limit), q.limit);
    return entries.map(([key, raw]) => decodeRecord(key, raw, !keysOnly));
  }

  count(start: Buffer, end: Buffer | undefined): number {
    return countUserKeys(this.o, TAG.record, start, end);
  }
}
