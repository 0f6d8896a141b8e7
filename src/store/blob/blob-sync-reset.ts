/**
 * Two rare paths of blob sync (docs/sync.md "Blobs"), written once for every backend:
 * - **collisions**: two blobs stored before their sites took part in sync may share an id. They
 *   are told apart by origin (the site each was stored on); the last writer keeps the id, and a
 *   site holding the loser first moves it to a fresh fleet id (logged, so it travels too),
 *   remembering the move in `sync_rekey:` + id + origin → new id;
 * - **resets**: a peer whose cursor is older than the compacted log gets every blob's current
 *   state (the stamp map, in id order) instead, then the tail; an edge drops the synced blobs
 *   between two of the reset's ids that its hub no longer has, except its own unsent writes.
 */
import type { BlobEngineOps } from '../../backends/backend.js';
import type { SiteId, Stamp } from '../sync/stamp.js';
import { dropLarge, loadBlob } from './blob-store.js';
import type { BlobStampEntry, BlobSyncLog } from './blob-sync-log.js';
import { setLargeRef } from './large-blobs.js';
import { readU64, u64 } from './large-layout.js';

const REKEY_PREFIX = Buffer.from('sync_rekey:');
const EMPTY = Buffer.alloc(0);

/** A blob's state here: the stamp a change must beat, whether it exists, and where it came from. */
export interface LocalBlob {
  stamp: Stamp | undefined;
  exists: boolean;
  origin: SiteId | undefined;
}

export function sameOrigin(a: SiteId | undefined, b: SiteId | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}

export interface Rekeyed {
  from: number;
  to: number;
  origin: SiteId | undefined;
}

/** The server log's line for a moved blob (ids and sites only). */
export function rekeyLog(m: Rekeyed): [Record<string, unknown>, string] {
  return [
    { id: m.from, newId: m.to, origin: m.origin?.toString('hex') },
    'sync: a blob stored before sync lost its id to another site’s blob with the same id; it is kept under a new id',
  ];
}

/**
 * Moves blob `id` (a different blob that lost its id to an incoming one) to a fresh fleet id, in
 * the writing batch: its data is moved, not copied, and the move is logged (it travels).
 */
export async function rekey(ops: BlobEngineOps, log: BlobSyncLog, id: number, local: LocalBlob): Promise<Rekeyed> {
  const stored = (await loadBlob(ops, id))!;
  const to = (await log.reserve(ops))!;
  if (stored.large) {
    await ops.insertWithId(to, EMPTY, stored.metadata);
    await setLargeRef(ops, to, stored.large);
    await setLargeRef(ops, id, undefined);
  } else {
    await ops.insertWithId(to, stored.data!, stored.metadata);
  }
  await log.recordLocal(ops, to, 'put');
  await ops.maps.put('meta', Buffer.concat([REKEY_PREFIX, u64(id), local.origin ?? EMPTY]), u64(to));
  return { from: id, to, origin: local.origin };
}

/** Every blob moved to a new id here: (old id, origin) → new id. */
export async function listRekeyed(ops: BlobEngineOps): Promise<Rekeyed[]> {
  const end = Buffer.from(REKEY_PREFIX);
  end[end.length - 1]! += 1;
  const rows = await ops.maps.range('meta', { start: REKEY_PREFIX, end, limit: 100_000, reverse: false });
  return rows.map(([k, v]) => {
    const rest = k.subarray(REKEY_PREFIX.length);
    return { from: readU64(rest), to: readU64(v), origin: rest.length > 8 ? Buffer.from(rest.subarray(8)) : undefined };
  });
}

/** A page of the stamp map after id `after`, for a reset: each synced blob's latest change. */
export async function stampPage(
  ops: BlobEngineOps,
  log: BlobSyncLog,
  after: number,
  limit: number,
): Promise<{ id: number; latest: BlobStampEntry }[]> {
  const rows = await ops.maps.range('blob_stamp', {
    start: u64(after + 1),
    end: undefined,
    limit,
    reverse: false,
  });
  const out: { id: number; latest: BlobStampEntry }[] = [];
  for (const [key] of rows) {
    const id = readU64(key);
    out.push({ id, latest: (await log.stampOf(ops, id))! });
  }
  return out;
}

/**
 * An edge's side of a reset: drops the synced blobs with ids strictly between `after` and `before`
 * (the hub listed none there), except this site's own writes the hub has not applied (`acked`).
 * Answers whether data was discarded (collect after the commit).
 */
export async function sweep(
  ops: BlobEngineOps,
  log: BlobSyncLog,
  after: number,
  before: number,
  self: SiteId,
  acked: number,
): Promise<boolean> {
  if (before <= after + 1) return false;
  const rows = await ops.maps.range('blob_stamp', {
    start: u64(after + 1),
    end: u64(before),
    limit: Number.MAX_SAFE_INTEGER,
    reverse: false,
  });
  let discarded = false;
  for (const [key] of rows) {
    const id = readU64(key);
    const latest = (await log.stampOf(ops, id))!;
    if (latest.stamp.site.equals(self) && latest.seq > acked) continue;
    if (await ops.delete(id)) discarded = (await dropLarge(ops, id)) || discarded;
    await ops.maps.delete('blob_stamp', key);
    await ops.maps.delete('blob_log', u64(latest.seq));
  }
  return discarded;
}
