/** Counters in a store's `meta` map: 8-byte big-endian numbers under short ASCII names. */
import type { MapOps, MaybePromise } from '../../backends/backend.js';

export const META = {
  /** The last committed store revision. */
  rev: Buffer.from('rev'),
  /** Revisions below this one are compacted. */
  compact: Buffer.from('compact'),
  /** Random ids that make etcd response headers stable across restarts. */
  clusterId: Buffer.from('cluster_id'),
  memberId: Buffer.from('member_id'),
  /** The last transaction commit log whose KV part is committed (replay skips it). */
  txlog: Buffer.from('txlog'),
} as const;

const HIGH = 2 ** 32;

export function encodeCounter(n: number): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeUInt32BE(Math.floor(n / HIGH), 0);
  out.writeUInt32BE(n >>> 0, 4);
  return out;
}

export function decodeCounter(raw: Buffer | undefined): number {
  return raw === undefined ? 0 : raw.readUInt32BE(0) * HIGH + raw.readUInt32BE(4);
}

export function readCounter(maps: MapOps, name: Buffer): MaybePromise<number> {
  const raw = maps.get('meta', name);
  return raw instanceof Promise ? raw.then(decodeCounter) : decodeCounter(raw);
}

export function writeCounter(maps: MapOps, name: Buffer, n: number): MaybePromise<void> {
  return maps.put('meta', name, encodeCounter(n));
}
