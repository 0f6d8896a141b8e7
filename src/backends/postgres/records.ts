/** A kv_state row (key, value, create_rev, mod_rev, version, lease) as a KvRecord. */
import type { KvRecord } from '../backend.js';

export function toRecord(row: unknown[]): KvRecord {
  return {
    key: row[0] as Buffer,
    value: row[1] as Buffer,
    createRev: Number(row[2]),
    modRev: Number(row[3]),
    version: Number(row[4]),
    lease: BigInt(row[5] as bigint),
  };
}
