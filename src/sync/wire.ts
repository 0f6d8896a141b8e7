/** Change batches as they travel: a gzip'd ChangeList inside a Changes message (proto/sync.proto). */
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { invalidArgument } from '../errors.js';
import * as pb from '../generated/sync.js';
import type { Change, ChangeBatch } from '../store/sync/changes.js';
import type { SnapshotPage } from '../store/sync/snapshot.js';
import { SITE_BYTES } from '../store/sync/stamp.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);
/** A ChangeList larger than this (after gunzip) is refused: a batch is at most ~1 MiB plus one revision. */
const MAX_BATCH_BYTES = 256 * 1024 * 1024;

const EMPTY = Buffer.alloc(0);

function toPb(c: Change): pb.Change {
  return {
    key: c.key,
    value: c.value ?? EMPTY,
    deleted: c.value === undefined,
    hlc: BigInt(c.stamp.hlc),
    site: c.stamp.site,
    replacesHlc: BigInt(c.replaces ?? 0),
  };
}

function fromPb(c: pb.Change): Change {
  if (c.site.length !== SITE_BYTES) throw invalidArgument(`sync change with a site id of ${c.site.length} bytes`);
  if (c.hlc > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument('sync change with a clock out of range');
  return {
    key: c.key,
    value: c.deleted ? undefined : c.value,
    stamp: { hlc: Number(c.hlc), site: c.site },
    replaces: c.replacesHlc > 0n ? Number(c.replacesHlc) : undefined,
  };
}

async function pack(changes: Change[]): Promise<Buffer> {
  return gzipAsync(pb.ChangeList.encode({ changes: changes.map(toPb) }).finish());
}

async function unpack(gz: Buffer): Promise<Change[]> {
  let raw: Buffer;
  try {
    raw = await gunzipAsync(gz, { maxOutputLength: MAX_BATCH_BYTES });
  } catch (err) {
    throw invalidArgument(`sync batch is not valid gzip: ${(err as Error).message}`);
  }
  try {
    return pb.ChangeList.decode(raw).changes.map(fromPb);
  } catch (err) {
    throw invalidArgument(`sync batch is not a valid ChangeList: ${(err as Error).message}`);
  }
}

export async function encodeBatch(batch: ChangeBatch): Promise<pb.SyncMessage> {
  return {
    changes: {
      fromRevision: BigInt(batch.from),
      toRevision: BigInt(batch.to),
      gzip: await pack(batch.changes),
      snapshot: undefined,
    },
  };
}

export async function encodeSnapshotPage(page: SnapshotPage, to: number, last: boolean): Promise<pb.SyncMessage> {
  return {
    changes: {
      fromRevision: 0n,
      toRevision: BigInt(to),
      gzip: await pack(page.changes),
      snapshot: { start: page.start, end: page.end ?? EMPTY, last },
    },
  };
}

export type Incoming =
  | { kind: 'batch'; batch: ChangeBatch }
  | { kind: 'snapshot'; page: SnapshotPage; to: number; last: boolean };

export async function decodeChanges(msg: pb.Changes): Promise<Incoming> {
  const changes = await unpack(msg.gzip);
  const to = Number(msg.toRevision);
  if (msg.snapshot) {
    const { start, end, last } = msg.snapshot;
    return { kind: 'snapshot', page: { start, end: end.length > 0 ? end : undefined, changes }, to, last };
  }
  const from = Number(msg.fromRevision);
  if (to < from) throw invalidArgument(`sync batch reaches revision ${to} before it starts (${from})`);
  return { kind: 'batch', batch: { from, to, changes } };
}
