/**
 * The slow side of blob sync (docs/sync.md "Blobs"), one page per batch so writers never wait long
 * and memory stays bounded:
 * - the backfill: blobs stored before the store took part in sync get a log entry (stamped now,
 *   keeping their ids), so they travel like every other blob; its progress is stored with each page,
 *   so a crash mid-backfill resumes where it stopped, logging nothing twice;
 * - compaction: log entries every known peer has applied are dropped (a peer not seen for
 *   `maxOfflineMs` no longer counts; an edge's hub always does), and so, once older than that
 *   window, are the tombstones of deleted blobs; a peer whose cursor is older than the compacted
 *   log gets a reset (its current state, then the tail).
 */
import type { BlobEngineOps } from '../../backends/backend.js';
import { dropKeys } from '../drop-keys.js';
import { hlcOf, type SiteId } from '../sync/stamp.js';
import type { BlobSyncLog } from './blob-sync-log.js';
import { readU64, u64 } from './large-layout.js';

/** Ids (or log entries) handled per batch. */
export const UPKEEP_PAGE = 500;

const BACKFILL = Buffer.from('sync_backfill');
const COMPACTED = Buffer.from('sync_compacted');
const OUT_PREFIX = Buffer.from('sync_out:');
const outKey = (peer: SiteId): Buffer => Buffer.concat([OUT_PREFIX, peer]);
const DONE = Number.MAX_SAFE_INTEGER;

async function readCounter(ops: BlobEngineOps, key: Buffer): Promise<number> {
  const raw = await ops.maps.get('meta', key);
  return raw === undefined ? 0 : readU64(raw);
}

/**
 * Logs the next page of blobs stored before sync (ids below the floor without a log entry).
 * Answers whether more remain.
 */
export async function backfillPage(ops: BlobEngineOps, log: BlobSyncLog): Promise<boolean> {
  const floor = await log.floor(ops);
  const site = await log.site(ops);
  if (floor === undefined || site === undefined) return false;
  const after = await readCounter(ops, BACKFILL);
  if (after === DONE) return false;
  const ids = (await ops.ids(after, UPKEEP_PAGE)).filter((id) => id < floor);
  for (const id of ids) {
    if ((await log.stampOf(ops, id)) !== undefined) continue; // written (so logged) since it joined
    const stamp = (await log.tick(ops))!;
    await log.record(ops, { id, op: 'put', stamp, local: true }, { keep: false, origin: site });
  }
  const more = ids.length === UPKEEP_PAGE;
  await ops.maps.put('meta', BACKFILL, u64(more ? ids[ids.length - 1]! : DONE));
  return more;
}

export interface BlobPeerAck {
  peer: SiteId;
  /** The last sequence of this site's log the peer has applied. */
  acked: number;
  seenMs: number;
}

export async function readBlobAck(ops: BlobEngineOps, peer: SiteId): Promise<BlobPeerAck | undefined> {
  const raw = await ops.maps.get('meta', outKey(peer));
  if (raw === undefined) return undefined;
  return { peer, acked: readU64(raw), seenMs: readU64(raw.subarray(8)) };
}

export async function writeBlobAck(ops: BlobEngineOps, ack: BlobPeerAck): Promise<void> {
  const before = await readBlobAck(ops, ack.peer);
  const acked = Math.max(ack.acked, before?.acked ?? 0);
  await ops.maps.put('meta', outKey(ack.peer), Buffer.concat([u64(acked), u64(ack.seenMs)]));
}

async function readBlobAcks(ops: BlobEngineOps): Promise<BlobPeerAck[]> {
  const end = Buffer.from(OUT_PREFIX);
  end[end.length - 1]! += 1;
  const rows = await ops.maps.range('meta', { start: OUT_PREFIX, end, limit: 10_000, reverse: false });
  return rows.map(([k, v]) => ({
    peer: Buffer.from(k.subarray(OUT_PREFIX.length)),
    acked: readU64(v),
    seenMs: readU64(v.subarray(8)),
  }));
}

/** Entries up to this sequence are compacted (a peer behind it gets a reset). */
export function compactedSeq(ops: BlobEngineOps): Promise<number> {
  return readCounter(ops, COMPACTED);
}

/**
 * The last sequence every peer that counts has applied: peers seen within `maxOfflineMs`, and an
 * edge's hub however long it is away. No peer yet: nothing is compacted.
 */
async function compactableSeq(ops: BlobEngineOps, log: BlobSyncLog, maxOfflineMs: number): Promise<number> {
  const hub = await log.hub(ops);
  const now = Date.now();
  let floor = Number.MAX_SAFE_INTEGER;
  let counted = 0;
  for (const ack of await readBlobAcks(ops)) {
    if (!hub?.equals(ack.peer) && now - ack.seenMs > maxOfflineMs) continue;
    floor = Math.min(floor, ack.acked);
    counted++;
  }
  if (hub && !(await readBlobAck(ops, hub))) return 0;
  return counted === 0 ? 0 : floor;
}

/**
 * One page of compaction: drops log entries up to what every peer that counts has applied.
 * Answers whether more remain.
 */
export async function compactPage(ops: BlobEngineOps, log: BlobSyncLog, maxOfflineMs: number): Promise<boolean> {
  const upTo = Math.min(await compactableSeq(ops, log, maxOfflineMs), await log.lastSeq(ops));
  const from = await compactedSeq(ops);
  if (upTo <= from) return false;
  const start = u64(from + 1);
  const rows = await ops.maps.range('blob_log', { start, end: u64(upTo + 1), limit: UPKEEP_PAGE, reverse: false });
  await dropKeys(ops.maps, 'blob_log', start, rows);
  const more = rows.length === UPKEEP_PAGE;
  await ops.maps.put('meta', COMPACTED, u64(more ? readU64(rows[rows.length - 1]![0]) : upTo));
  return more;
}

/**
 * Tombstones older than the window whose log entries are already compacted (their deletes were
 * applied by every peer that counts), a page of the stamp map per call from `after`. Answers
 * where the next page starts, undefined at the end.
 */
export async function dropTombstones(
  ops: BlobEngineOps,
  log: BlobSyncLog,
  maxOfflineMs: number,
  after: number,
): Promise<number | undefined> {
  const compacted = await compactedSeq(ops);
  const horizon = hlcOf(Date.now() - maxOfflineMs);
  const rows = await ops.maps.range('blob_stamp', {
    start: u64(after + 1),
    end: undefined,
    limit: UPKEEP_PAGE,
    reverse: false,
  });
  for (const [key] of rows) {
    const id = readU64(key);
    const latest = await log.stampOf(ops, id);
    if (latest?.op === 'delete' && latest.seq <= compacted && latest.stamp.hlc < horizon) {
      await ops.maps.delete('blob_stamp', key);
    }
  }
  return rows.length === UPKEEP_PAGE ? readU64(rows[rows.length - 1]![0]) : undefined;
}
