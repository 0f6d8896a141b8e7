/**
 * The BLOB store's side of sync (docs/sync.md "Blobs"): fleet-unique blob ids, and a change log
 * written in the same commit as every blob write, which a peer reads from its cursor.
 *
 *   blob_log:   seq (8)             → id (8) + op (1) + hlc (8) + site (8) + local (1) [+ replaces (8)]
 *   blob_stamp: id (8)              → seq (8) + op (1) + hlc (8) + site (8) [+ origin (8)]
 *               (each synced blob's latest change; origin: the site a blob stored before sync came from)
 *   meta:       'sync_floor'        → the first fleet id (the store takes part in sync since then)
 *               'sync_seq'          → the last sequence handed out
 *               'sync_max_id'       → the largest blob id handed out or received
 *               'sync_in:' + site   → the last sequence of that peer's log applied here
 *               'sync_hub'          → an edge's hub (its site id)
 *               'sync_site'         → the site whose node tag the ids carry (for writers without the KV store)
 *               'sync_backfill'     → the last id the backfill of blobs from before sync has logged
 *               'sync_out:' + site  → how far that peer has applied this log (8) + when it said so (8, ms)
 *               'sync_compacted'    → entries up to this sequence are compacted
 *               'sync_rekey:' + id + origin → the id a blob stored before sync now has (it lost its id)
 *
 * The log keeps one entry per blob: a newer change of a blob removes its older entry, so a peer
 * that was away gets each blob's latest state once.
 */
import type { BlobEngineOps } from '../../backends/backend.js';
import { HybridClock } from '../sync/clock.js';
import { decodeStamp, encodeStamp, type SiteId, type Stamp } from '../sync/stamp.js';
import { readU64, u64 } from './large-layout.js';

export type BlobOp = 'put' | 'meta' | 'delete';
const OPS: readonly BlobOp[] = ['put', 'meta', 'delete'];

/** What stamps the BLOB store's writes: the KV store's sync identity (its site and clock). */
export interface BlobStamper {
  readonly site: SiteId;
  readonly clock: { tick(): number; observe(hlc: number): void; limit(): number };
}

export interface BlobLogEntry {
  seq: number;
  id: number;
  op: BlobOp;
  stamp: Stamp;
  /** Made on this site (not received from a peer). */
  local: boolean;
  /** A hub clamped the change's clock: the clock it was made with (sent back to its site). */
  replaces?: number;
}

/** A blob's latest change. */
export interface BlobStampEntry {
  seq: number;
  op: BlobOp;
  stamp: Stamp;
  /** A blob stored before sync: the site it was stored on (undefined: born with a fleet id). */
  origin: SiteId | undefined;
}

/** Fleet ids: the low 21 bits name the node, the bits above count up (docs/sync.md "Blob ids"). */
export const ID_SLOT = 2 ** 21;

/** A node's 21-bit tag, from its site id (random bytes). */
export function nodeTag(site: SiteId): number {
  return site.readUIntBE(0, 3) >>> 3;
}

/** The first fleet id above `maxId`, for the node tagged `tag`. */
export function nextFleetId(maxId: number, tag: number): number {
  return (Math.floor(maxId / ID_SLOT) + 1) * ID_SLOT + tag;
}

const META = {
  floor: Buffer.from('sync_floor'),
  seq: Buffer.from('sync_seq'),
  maxId: Buffer.from('sync_max_id'),
  hub: Buffer.from('sync_hub'),
  site: Buffer.from('sync_site'),
} as const;
const inKey = (peer: SiteId): Buffer => Buffer.concat([Buffer.from('sync_in:'), peer]);

async function counter(ops: BlobEngineOps, key: Buffer): Promise<number> {
  const raw = await ops.maps.get('meta', key);
  return raw === undefined ? 0 : readU64(raw);
}

function encodeEntry(e: Omit<BlobLogEntry, 'seq'>): Buffer {
  const parts = [u64(e.id), Buffer.of(OPS.indexOf(e.op)), encodeStamp(e.stamp), Buffer.of(e.local ? 1 : 0)];
  if (e.replaces !== undefined) parts.push(u64(e.replaces));
  return Buffer.concat(parts);
}

export function decodeEntry(seq: number, raw: Buffer): BlobLogEntry {
  const entry: BlobLogEntry = {
    seq,
    id: readU64(raw),
    op: OPS[raw[8]!]!,
    stamp: decodeStamp(raw, 9),
    local: raw[25] === 1,
  };
  if (raw.length >= 34) entry.replaces = readU64(raw.subarray(26));
  return entry;
}

/** What a change says of a blob's origin: keep the blob's, or set it (undefined: a fleet-born blob). */
export type OriginUpdate = { keep: true } | { keep: false; origin: SiteId | undefined };
const KEEP: OriginUpdate = { keep: true };

export class BlobSyncLog {
  /** Once known to take part (it never stops). */
  private joined = false;
  private readonly listeners = new Set<() => void>();
  /** Stamps writes made without the KV store (the CLI on the BLOB store file alone). */
  private readonly ownClock = new HybridClock();

  constructor(readonly stamper: BlobStamper | undefined) {}

  /**
   * Who stamps this store's writes: the KV store's identity, or — opened alone — the site it
   * stored when it joined, with a clock moved past the newest change logged.
   */
  private async identity(ops: BlobEngineOps): Promise<BlobStamper | undefined> {
    if (this.stamper) return this.stamper;
    const site = await ops.maps.get('meta', META.site);
    if (site === undefined) return undefined;
    const [newest] = await ops.maps.range('blob_log', {
      start: Buffer.alloc(0),
      end: undefined,
      limit: 1,
      reverse: true,
    });
    if (newest) this.ownClock.observe(decodeEntry(readU64(newest[0]), newest[1]).stamp.hlc);
    return { site: Buffer.from(site), clock: this.ownClock };
  }

  /** Called (after the writing batch is queued) whenever the log grows. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The first fleet id, once this store takes part in sync; undefined before. */
  async floor(ops: BlobEngineOps): Promise<number | undefined> {
    const raw = await ops.maps.get('meta', META.floor);
    if (raw !== undefined) this.joined = true;
    return raw === undefined ? undefined : readU64(raw);
  }

  /** Whether new blobs get fleet ids (read from the store until it is known to be so). */
  async participating(ops: BlobEngineOps): Promise<boolean> {
    return this.joined || (await this.floor(ops)) !== undefined;
  }

  /** Makes this store a sync participant: ids handed out from now on are fleet ids. */
  async join(ops: BlobEngineOps): Promise<void> {
    if (this.stamper === undefined) return;
    const site = await ops.maps.get('meta', META.site);
    if (!site?.equals(this.stamper.site)) await ops.maps.put('meta', META.site, this.stamper.site);
    if (await this.participating(ops)) return;
    const top = Math.max(await this.maxId(ops), await counter(ops, META.maxId));
    await ops.maps.put('meta', META.floor, u64((Math.floor(top / ID_SLOT) + 1) * ID_SLOT));
    this.joined = true;
  }

  /** The largest id handed out so far (a reserved id counts: it is marked used). */
  private async maxId(ops: BlobEngineOps): Promise<number> {
    return (await ops.reserveId()) - 1;
  }

  /**
   * A fresh fleet id, marked used (a transaction stores its blob under it at commit), or undefined
   * when the store does not take part in sync (then the engine's own ids go on: 1, 2, 3, …).
   */
  async reserve(ops: BlobEngineOps): Promise<number | undefined> {
    const identity = (await this.participating(ops)) ? await this.identity(ops) : undefined;
    if (identity === undefined) return undefined;
    const top = Math.max(await this.maxId(ops), await counter(ops, META.maxId));
    const id = nextFleetId(top, nodeTag(identity.site));
    await ops.maps.put('meta', META.maxId, u64(id));
    return id;
  }

  /** Stores a new blob (under a fleet id when participating, logged); answers its id. */
  async insert(ops: BlobEngineOps, data: Uint8Array, metadata: string | null): Promise<number> {
    const id = await this.reserve(ops);
    if (id === undefined) return ops.insert(data, metadata);
    await ops.insertWithId(id, data, metadata);
    await this.recordLocal(ops, id, 'put');
    return id;
  }

  /**
   * Logs a local write of blob `id` (in the writing batch). Blobs from before the store took part
   * (ids below the floor, never received) stay local: their ids are not fleet-unique.
   */
  async recordLocal(ops: BlobEngineOps, id: number, op: BlobOp): Promise<void> {
    const floor = await this.floor(ops);
    if (floor === undefined) return;
    if (id < floor && (await this.stampOf(ops, id)) === undefined) return;
    if (op !== 'delete' && (await ops.get(id)) === undefined) return; // a no-op update of a missing blob
    const identity = await this.identity(ops);
    if (identity === undefined) return;
    const stamp = { hlc: identity.clock.tick(), site: identity.site };
    await this.record(ops, { id, op, stamp, local: true });
  }

  /** This site's id, once it takes part (the origin of the blobs it stored before sync). */
  async site(ops: BlobEngineOps): Promise<SiteId | undefined> {
    return (await this.identity(ops))?.site;
  }

  /** A fresh local stamp (the backfill of blobs stored before sync). */
  async tick(ops: BlobEngineOps): Promise<Stamp | undefined> {
    const identity = await this.identity(ops);
    return identity && { hlc: identity.clock.tick(), site: identity.site };
  }

  /** Appends a change (replacing the blob's older entry); answers its sequence. */
  async record(ops: BlobEngineOps, entry: Omit<BlobLogEntry, 'seq'>, origin: OriginUpdate = KEEP): Promise<number> {
    const seq = (await counter(ops, META.seq)) + 1;
    await ops.maps.put('meta', META.seq, u64(seq));
    const before = await this.stampOf(ops, entry.id);
    if (before) await ops.maps.delete('blob_log', u64(before.seq));
    await ops.maps.put('blob_log', u64(seq), encodeEntry(entry));
    const kept = origin.keep ? before?.origin : origin.origin;
    const stampParts = [u64(seq), Buffer.of(OPS.indexOf(entry.op)), encodeStamp(entry.stamp)];
    if (kept) stampParts.push(kept);
    await ops.maps.put('blob_stamp', u64(entry.id), Buffer.concat(stampParts));
    if (entry.id > (await counter(ops, META.maxId))) await ops.maps.put('meta', META.maxId, u64(entry.id));
    for (const listener of this.listeners) setImmediate(listener);
    return seq;
  }

  async stampOf(ops: BlobEngineOps, id: number): Promise<BlobStampEntry | undefined> {
    const raw = await ops.maps.get('blob_stamp', u64(id));
    if (raw === undefined) return undefined;
    const origin = raw.length >= 33 ? Buffer.from(raw.subarray(25, 33)) : undefined;
    return { seq: readU64(raw), op: OPS[raw[8]!]!, stamp: decodeStamp(raw, 9), origin };
  }

  /** Entries after sequence `after`, oldest first. */
  async read(ops: BlobEngineOps, after: number, limit: number): Promise<BlobLogEntry[]> {
    const rows = await ops.maps.range('blob_log', { start: u64(after + 1), end: undefined, limit, reverse: false });
    return rows.map(([k, v]) => decodeEntry(readU64(k), v));
  }

  lastSeq(ops: BlobEngineOps): Promise<number> {
    return counter(ops, META.seq);
  }

  /** The last sequence of `peer`'s log applied here. */
  applied(ops: BlobEngineOps, peer: SiteId): Promise<number> {
    return counter(ops, inKey(peer));
  }

  async setApplied(ops: BlobEngineOps, peer: SiteId, seq: number): Promise<void> {
    await ops.maps.put('meta', inKey(peer), u64(seq));
  }

  /** An edge's hub, once it has connected. */
  async hub(ops: BlobEngineOps): Promise<SiteId | undefined> {
    const raw = await ops.maps.get('meta', META.hub);
    return raw === undefined ? undefined : Buffer.from(raw);
  }

  async setHub(ops: BlobEngineOps, hub: SiteId): Promise<void> {
    await ops.maps.put('meta', META.hub, hub);
  }
}
