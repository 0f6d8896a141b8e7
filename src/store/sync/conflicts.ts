/**
 * Losing values of concurrent writes, kept in the `sync_conflict` map (ordered by when they were
 * resolved) for `buffdb sync conflicts`, and dropped after the history retention window.
 */
import { randomBytes } from 'node:crypto';
import type { MapOps } from '../../backends/backend.js';
import { decodeCounter, encodeCounter } from '../kv/meta.js';
import type { Stamp } from './stamp.js';

export interface Conflict {
  key: Buffer;
  /** The value that lost; undefined: the losing write was a delete. */
  loser: Buffer | undefined;
  loserStamp: Stamp;
  winnerStamp: Stamp;
  /** Wall-clock ms it was resolved here. */
  atMs: number;
}

interface Stored {
  key: string;
  loser: string | null;
  loserStamp: [number, string];
  winnerStamp: [number, string];
}

const stampOut = (s: Stamp): [number, string] => [s.hlc, s.site.toString('hex')];
const stampIn = ([hlc, site]: [number, string]): Stamp => ({ hlc, site: Buffer.from(site, 'hex') });

export function recordConflict(maps: MapOps, c: Conflict) {
  const stored: Stored = {
    key: c.key.toString('base64'),
    loser: c.loser === undefined ? null : c.loser.toString('base64'),
    loserStamp: stampOut(c.loserStamp),
    winnerStamp: stampOut(c.winnerStamp),
  };
  return maps.put(
    'sync_conflict',
    Buffer.concat([encodeCounter(c.atMs), randomBytes(4)]),
    Buffer.from(JSON.stringify(stored)),
  );
}

/** Conflicts resolved at or after `sinceMs`, oldest first, at most `limit`. */
export async function listConflicts(maps: MapOps, sinceMs: number, limit: number): Promise<Conflict[]> {
  const rows = await maps.range('sync_conflict', {
    start: encodeCounter(sinceMs),
    end: undefined,
    limit,
    reverse: false,
  });
  return rows.map(([k, v]) => {
    const s = JSON.parse(v.toString('utf8')) as Stored;
    return {
      key: Buffer.from(s.key, 'base64'),
      loser: s.loser === null ? undefined : Buffer.from(s.loser, 'base64'),
      loserStamp: stampIn(s.loserStamp),
      winnerStamp: stampIn(s.winnerStamp),
      atMs: decodeCounter(k.subarray(0, 8)),
    };
  });
}

/** Drops conflicts resolved before `beforeMs`, a page at a time; returns how many. */
export async function pruneConflicts(maps: MapOps, beforeMs: number, page: number): Promise<number> {
  const rows = await maps.range('sync_conflict', {
    start: encodeCounter(0),
    end: encodeCounter(beforeMs),
    limit: page,
    reverse: false,
  });
  for (const [k] of rows) await maps.delete('sync_conflict', k);
  return rows.length;
}
