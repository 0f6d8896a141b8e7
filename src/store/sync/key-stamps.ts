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
 * Called by compaction with the history events it drops: a local put that is still its key's last
 * write leaves its stamp in the key's row. (Received writes and deletes wrote the row already.)
 * Keys are looked up in key order, so the lookups walk the key index instead of jumping around it.
 */
export async function keepStampsOfDropped(ops: KvEngineOps, events: readonly [Buffer, Buffer][]): Promise<void> {
  const puts: { key: Buffer; stamp: Stamp; rev: number }[] = [];
  for (const [key, raw] of events) {
    const put = localPutOf(raw);
    if (put) puts.push({ key: put.key, stamp: put.stamp, rev: historyKeyRev(key) });
  }
  puts.sort((a, b) => Buffer.compare(a.key, b.key));
  for (const put of puts) {
    const record = await ops.get(put.key);
    if (record?.modRev === put.rev) await ops.maps.put('sync_stamp', record.key, encodeKeyStamp(put.stamp, put.rev));
  }
}
