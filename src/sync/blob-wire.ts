/** Blob changes on the wire (buffdb.sync.BlobChange) and back, checked as they arrive. */
import { invalidArgument } from '../errors.js';
import * as pb from '../generated/sync.js';
import type { BlobOp } from '../store/blob/blob-sync-log.js';
import type { BlobChange } from '../store/blob/blob-sync-store.js';
import { SITE_BYTES } from '../store/sync/stamp.js';

const OP_TO_PB: Record<BlobChange['op'], pb.BlobOp> = {
  none: pb.BlobOp.BLOB_OP_NONE,
  put: pb.BlobOp.BLOB_OP_PUT,
  meta: pb.BlobOp.BLOB_OP_META,
  delete: pb.BlobOp.BLOB_OP_DELETE,
};
const PB_TO_OP = new Map<pb.BlobOp, BlobOp | 'none'>(
  Object.entries(OP_TO_PB).map(([op, v]) => [v, op as BlobOp | 'none']),
);
const EMPTY = Buffer.alloc(0);

export function toPb(c: BlobChange): pb.BlobChange {
  return {
    seq: BigInt(c.seq),
    id: BigInt(c.id),
    op: OP_TO_PB[c.op],
    hlc: BigInt(c.stamp.hlc),
    site: c.stamp.site,
    hasMetadata: c.metadata !== null,
    metadata: c.metadata ?? '',
    size: BigInt(c.size),
    sha256: c.sha256,
    isInline: c.inline !== undefined,
    inlineData: c.inline ?? EMPTY,
    origin: c.origin ?? EMPTY,
    replaces: BigInt(c.replaces ?? 0),
    reset: c.resetAfter !== undefined,
    resetAfter: BigInt(c.resetAfter ?? 0),
  };
}

export function fromPb(c: pb.BlobChange): BlobChange {
  const op = PB_TO_OP.get(c.op);
  if (op === undefined) throw invalidArgument(`blob sync: unknown op ${c.op}`);
  if (c.site.length !== SITE_BYTES) throw invalidArgument(`blob sync: a site id of ${c.site.length} bytes`);
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  if (c.origin.length !== 0 && c.origin.length !== SITE_BYTES)
    throw invalidArgument('blob sync: an origin is a site id');
  if (c.id < 1n || c.id > max || c.hlc > max || c.size > max || c.seq > max || c.replaces > max || c.resetAfter > max) {
    throw invalidArgument('blob sync: a change with a number out of range');
  }
  if (op !== 'none' && op !== 'delete' && c.sha256.length !== 32) {
    throw invalidArgument('blob sync: a change without a SHA-256');
  }
  return {
    seq: Number(c.seq),
    id: Number(c.id),
    op,
    stamp: { hlc: Number(c.hlc), site: Buffer.from(c.site) },
    metadata: c.hasMetadata ? c.metadata : null,
    size: Number(c.size),
    sha256: Buffer.from(c.sha256),
    inline: c.isInline ? Buffer.from(c.inlineData) : undefined,
    origin: c.origin.length === 0 ? undefined : Buffer.from(c.origin),
    replaces: c.replaces === 0n ? undefined : Number(c.replaces),
    resetAfter: c.reset ? Number(c.resetAfter) : undefined,
  };
}
