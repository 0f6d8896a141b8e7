/**
 * Where a key's sync stamp lives. A local put's stamp is only in its history event, so the hot path
 * writes nothing more than an etcd revision does; a received write and every delete (whose stamp is
 * the key's tombstone) also write the key's stamp row, tagged with the revision it belongs to. When
 * compaction drops a key's last event, its stamp moves to the row.
 */
import type { KvEngineOps, KvRecord } from '../../backends/backend.js';
import { eventStamp, historyKey, historyKeyRev, localPutOf } from '../kv/history.js';
import { decodeKeyStamp, encodeKeyStamp, type Stamp, ZERO_STAMP } from './stamp.js';

/**
 * The stamp of a key's last write, from its stamp row `raw` and its current `record`: the row when
 * it belongs to the record's revision (a received write, a delete, or a compacted local put), else
 * the record's history event (a local put, stamped only there — see MvccBatch).
 */
export async function keyStamp(
  ops: KvEngineOps,
  record: KvRecord | undefined,
  raw: Buffer | undefined,
): Promise<Stamp | undefined> {
  const row = raw ? decodeKeyStamp(raw) : undefined;
  if (!record || row?.rev === record.modRev) return row?.stamp;
  // A local revision's events share one stamp, so its first event has it.
  const event = await ops.maps.get('history', historyKey(record.modRev, 0));
  const stamped = event ? eventStamp(event) : undefined;
  if (stamped?.local) return stamped.stamp;
  // A key written before stamps existed counts as older than any synced write.
  return row?.stamp ?? ZERO_STAMP;
}

/**
 * Called by compaction with the history events it drops (whole, or their heads: EVENT_HEAD_BYTES):
 * a local put that is still its key's last write leaves its stamp in the key's row. (Received
 * writes and deletes wrote the row already.) Keys are looked up in key order, so the lookups walk
 * the key index instead of jumping around it; only their revisions are read where the engine can.
 */
export async function keepStampsOfDropped(ops: KvEngineOps, events: readonly [Buffer, Buffer][]): Promise<void> {
  const puts: { key: Buffer; stamp: Stamp; rev: number }[] = [];
  for (const [at, raw] of events) {
    const put = localPutOf(raw);
    if (!put) continue;
    // A key longer than the head holds: read the whole event for it.
    const key = put.key ?? localPutOf((await ops.maps.get('history', at))!)!.key!;
    puts.push({ key, stamp: put.stamp, rev: historyKeyRev(at) });
  }
  puts.sort((a, b) => Buffer.compare(a.key, b.key));
  for (const put of puts) {
    const modRev = ops.modRevOf ? await ops.modRevOf(put.key) : (await ops.get(put.key))?.modRev;
    if (modRev === put.rev) await ops.maps.put('sync_stamp', put.key, encodeKeyStamp(put.stamp, put.rev));
  }
}
