import type { MapName, MapOps } from '../backends/backend.js';

const ZERO_BYTE = Buffer.from([0]);

/**
 * Deletes `rows`: the keys a range read of `map` from `start` found, in key order, i.e. every key
 * from `start` through the last of them. One range delete, up to just past that last key, on
 * engines that have it (a B-tree drops whole pages); else key by key.
 */
export async function dropKeys(
  maps: MapOps,
  map: MapName,
  start: Buffer,
  rows: readonly (readonly [Buffer, ...unknown[]])[],
): Promise<void> {
  const last = rows[rows.length - 1];
  if (last === undefined) return;
  if (maps.deleteRange) await maps.deleteRange(map, start, Buffer.concat([last[0], ZERO_BYTE]));
  else for (const [key] of rows) await maps.delete(map, key);
}
