/**
 * Upgrade of a KV store written by buffdb 0.1, at open, in the same commit as the layout version:
 * every 'k' + UTF-8 key → UTF-8 value entry becomes a current record at revision 1, version 1 (as
 * SQLite's upgrade does), and the old entry goes. One commit means the batch holds every old entry
 * in memory until it is written (a store of a few GB needs that much memory once, at its upgrade).
 *
 * 0.1 stored LMDB keys longer than its key limit under 'h' + SHA-256 of the key, with the value
 * alone: the key's text was stored nowhere, so it cannot be recovered. Those entries are kept
 * as they are and stay reachable by their exact key (./kv-ops.ts: a get falls back to them, a put
 * or delete moves them to the current layout); ranges and counts cannot list them.
 */
import type { KvEngineOps } from '../backend.js';
import { asBuffer, TAG } from './layout.js';
import type { Overlay } from './overlay.js';

export function upgradeLegacyKv(o: Overlay, ops: KvEngineOps): void {
  const lo = Buffer.of(TAG.legacyRecord);
  const hi = Buffer.of(TAG.legacyRecord + 1);
  for (const [old, value] of o.engine.scan(lo, hi, false, 1000)) {
    ops.put({ key: old.subarray(1), value: asBuffer(value), createRev: 1, modRev: 1, version: 1, lease: 0n });
    o.put(old, null);
  }
}
