import type { MapName, MapOps } from '../backends/backend.js';

/**
 * Deletes `rows`, which a range read found to be every key of `map` in `[start, end)`: one range
 * delete on engines that have it (a B-tree drops whole pages), else key by key.
 */
export async function dropKeys(
  maps: MapOps,
  map: MapName,
  rows: readonly (readonly [Buffer, ...unknown[]])[],
  start: Buffer,
  end: Buffer,
): Promise<void> {
  if (rows.length === 0) return;
  if (maps.deleteRange) await maps.deleteRange(map, start, end);
  else for (const [key] of rows) await maps.delete(map, key);
}
