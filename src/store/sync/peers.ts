/**
 * What a site remembers of each sync peer, in the `sync_peer` map:
 * - `in:<site>`: the last revision of the peer's stream applied here — written in the same commit
 *   as the changes, so a batch is applied exactly once;
 * - `out:<site>`: how far the peer has acknowledged this site's stream, and when it was last seen
 *   (history it still needs is kept, for at most --sync-max-offline).
 */
import type { MapOps } from '../../backends/backend.js';
import { decodeCounter, encodeCounter } from '../kv/meta.js';
import type { SiteId } from './stamp.js';

const inKey = (peer: SiteId): Buffer => Buffer.concat([Buffer.from('in:'), peer]);
const outKey = (peer: SiteId): Buffer => Buffer.concat([Buffer.from('out:'), peer]);
const OUT_PREFIX = Buffer.from('out:');

export async function readApplied(maps: MapOps, peer: SiteId): Promise<number> {
  return decodeCounter(await maps.get('sync_peer', inKey(peer)));
}

export function writeApplied(maps: MapOps, peer: SiteId, rev: number) {
  return maps.put('sync_peer', inKey(peer), encodeCounter(rev));
}

export interface PeerAck {
  peer: SiteId;
  /** The last revision of this site's stream the peer has applied. */
  acked: number;
  /** Wall-clock ms the peer last acknowledged. */
  seenMs: number;
}

export async function readAck(maps: MapOps, peer: SiteId): Promise<PeerAck | undefined> {
  const raw = await maps.get('sync_peer', outKey(peer));
  if (raw === undefined) return undefined;
  return { peer, acked: decodeCounter(raw.subarray(0, 8)), seenMs: decodeCounter(raw.subarray(8, 16)) };
}

export function writeAck(maps: MapOps, ack: PeerAck) {
  return maps.put('sync_peer', outKey(ack.peer), Buffer.concat([encodeCounter(ack.acked), encodeCounter(ack.seenMs)]));
}

/** Every peer that has acknowledged this site's stream. */
export async function readAcks(maps: MapOps): Promise<PeerAck[]> {
  const end = Buffer.from(OUT_PREFIX);
  end[end.length - 1]! += 1;
  const rows = await maps.range('sync_peer', {
    start: OUT_PREFIX,
    end,
    limit: Number.MAX_SAFE_INTEGER,
    reverse: false,
  });
  return rows.map(([k, v]) => ({
    peer: Buffer.from(k.subarray(OUT_PREFIX.length)),
    acked: decodeCounter(v.subarray(0, 8)),
    seenMs: decodeCounter(v.subarray(8, 16)),
  }));
}

const HUB_KEY = Buffer.from('hub');

/** An edge's hub (its site id), once it has connected. */
export function readHub(maps: MapOps) {
  return maps.get('sync_peer', HUB_KEY);
}

export function writeHub(maps: MapOps, hub: SiteId) {
  return maps.put('sync_peer', HUB_KEY, hub);
}
