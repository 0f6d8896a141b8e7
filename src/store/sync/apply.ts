/**
 * Applies a batch of a peer's changes: once (the peer's cursor is stored in the same commit, so a
 * re-sent batch is recognised), all together (one revision: a reader sees all of a transaction's
 * writes or none), each key by last-writer-wins on stamps. Writes that lose are kept as conflicts.
 */
import type { KvEngineOps, KvRecord } from '../../backends/backend.js';
import { failedPrecondition } from '../../errors.js';
import type { MvccBatch, Origin } from '../kv/mvcc-batch.js';
import type { Change, ChangeBatch } from './changes.js';
import type { HybridClock } from './clock.js';
import { type Conflict, recordConflict } from './conflicts.js';
import { keyStamp } from './key-stamps.js';
import { readApplied, writeApplied } from './peers.js';
import { compareStamps, type SiteId, type Stamp } from './stamp.js';

export interface ApplyContext {
  /** The site that sent the batch (its stream's cursor is kept under its id). */
  peer: SiteId;
  /** How far the peer has applied this site's stream: later local writes are news to it. */
  peerSeen: number;
  /** The hub clamps stamps further ahead of its clock than the skew bound (docs/sync.md). */
  clampClocks: boolean;
  /**
   * An edge: only its own writes can be unknown to the hub (everything else came from it); a
   * hub: any write the peer has not been sent yet.
   */
  self: SiteId | undefined;
  clock: HybridClock;
}

export interface ApplyResult {
  /** The batch was applied before (a re-send after a lost acknowledgement). */
  duplicate: boolean;
  /** Keys changed here. */
  applied: number;
  conflicts: number;
}

interface Plan {
  change: Change;
  record: KvRecord | undefined;
  origin: Origin;
}

export async function applyChanges(b: MvccBatch, batch: ChangeBatch, ctx: ApplyContext): Promise<ApplyResult> {
  const { maps } = b.ops;
  const cursor = await readApplied(maps, ctx.peer);
  if (batch.to <= cursor) return { duplicate: true, applied: 0, conflicts: 0 };
  // A peer new here (or under a new identity) may start where its own records say the hub was.
  if (cursor > 0 && batch.from > cursor) {
    throw failedPrecondition(`sync batch after revision ${batch.from} does not follow revision ${cursor} applied here`);
  }
  const plans: Plan[] = [];
  const conflicts: Conflict[] = [];
  const now = Date.now();
  let newest = 0;
  for (const change of batch.changes) {
    let stamp: Stamp = change.stamp;
    let replaces = change.replaces;
    if (ctx.clampClocks && stamp.hlc > ctx.clock.limit()) {
      replaces = stamp.hlc;
      stamp = { hlc: ctx.clock.limit(), site: stamp.site };
    }
    newest = Math.max(newest, stamp.hlc);
    const { record, stamp: local } = await localState(b.ops, change.key);
    const order = local ? compareStamps(stamp, local) : 1;
    // The hub clamped this site's own write: take the clamped stamp, so every site agrees.
    const clampedOwn =
      change.replaces !== undefined && local?.hlc === change.replaces && local.site.equals(change.stamp.site);
    if (order === 0) continue; // the same write, received again by another route
    if (order > 0 || clampedOwn) {
      plans.push({ change, record, origin: { stamp, replaces } });
      if (!clampedOwn && local && record && unseen(record, local, stamp, ctx)) {
        conflicts.push({ key: change.key, loser: record.value, loserStamp: local, winnerStamp: stamp, atMs: now });
      }
    } else if (local) {
      conflicts.push({ key: change.key, loser: change.value, loserStamp: stamp, winnerStamp: local, atMs: now });
    }
  }
  if (plans.length > 0) {
    await b.mutate(async () => {
      for (const { change, record, origin } of plans) await writeChange(b, change, record, origin);
    });
  }
  for (const c of conflicts) await recordConflict(maps, c);
  await writeApplied(maps, ctx.peer, batch.to);
  ctx.clock.observe(newest);
  return { duplicate: false, applied: plans.length, conflicts: conflicts.length };
}

/** A key's state here: its record, and the stamp a change must beat (undefined: never written). */
export async function localState(
  ops: KvEngineOps,
  key: Buffer,
): Promise<{ record: KvRecord | undefined; stamp: Stamp | undefined }> {
  const record = await ops.get(key);
  return { record, stamp: await keyStamp(ops, record, await ops.maps.get('sync_stamp', key)) };
}

/** Writes a peer's change with its stamp: a put, a delete, or a tombstone for a key not here. */
export function writeChange(b: MvccBatch, change: Change, record: KvRecord | undefined, origin: Origin) {
  if (change.value !== undefined) return b.put(change.key, change.value, 0n, record, origin);
  if (record) return b.delete(record, origin);
  return b.markDeleted(change.key, origin);
}

/** Whether the local write an incoming one replaces was unknown to the peer (a concurrent write). */
function unseen(record: KvRecord, local: Stamp, incoming: Stamp, ctx: ApplyContext): boolean {
  if (local.site.equals(incoming.site) || record.modRev <= ctx.peerSeen) return false;
  return ctx.self === undefined || local.site.equals(ctx.self);
}
