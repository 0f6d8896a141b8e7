/**
 * One blob link (buffdb.sync.Sync/BlobExchange, beside the KV link so blob data never holds KV
 * changes back), the same on both ends once the handshake is done: a sender that offers this
 * site's blob changes after the peer's cursor one at a time — the change, then the data the peer
 * asks for from the offset it already holds, in chunks read as they go — and a receiver that
 * applies the peer's changes, keeping partial data durable so a cut link resumes where it stopped.
 */
import type { Duplex } from 'node:stream';
import type { ClientDuplexStream, ServerDuplexStream } from '@grpc/grpc-js';
import { failedPrecondition, invalidArgument } from '../errors.js';
import * as pb from '../generated/sync.js';
import type { BlobOp } from '../store/blob/blob-sync-log.js';
import {
  type BlobChange,
  type BlobFilter,
  type BlobSyncStore,
  tooLarge,
  wantedBy,
} from '../store/blob/blob-sync-store.js';
import { CHUNK_SIZE } from '../store/blob/large-layout.js';
import type { Upload } from '../store/blob/upload.js';
import { SITE_BYTES, type SiteId } from '../store/sync/stamp.js';

/** Log entries read per page. */
const PAGE = 64;
/** Changes that need no data in flight at once (a slow link is not one round trip per blob). */
const WINDOW = 32;
/** With nothing to send, the sender looks again at least this often (other processes' writes). */
const IDLE_POLL_MS = 2000;

export interface BlobIo {
  /** Resolves once the message is handed on (waits while the transport is full): data. */
  send(msg: pb.BlobMessage): Promise<void>;
  /**
   * Sends without waiting: the small answers of a receiver, which must go on reading while its
   * own sender's data fills the transport (or two senders would wait on each other for ever).
   */
  post(msg: pb.BlobMessage): void;
  messages: AsyncIterator<pb.BlobMessage>;
}

/** A grpc-js BlobExchange call (either end) as a BlobIo. */
export function blobIo(
  call: ClientDuplexStream<pb.BlobMessage, pb.BlobMessage> | ServerDuplexStream<pb.BlobMessage, pb.BlobMessage>,
): BlobIo {
  const stream = call as unknown as Duplex;
  return {
    send: (msg) =>
      new Promise((resolve, reject) => {
        if (stream.write(msg, (err?: Error | null) => (err ? reject(err) : undefined))) resolve();
        else stream.once('drain', resolve);
      }),
    post: (msg) => void stream.write(msg),
    // Not destroyed when the peer's side ends: the call must still send its own end (the status).
    messages: stream.iterator({ destroyOnReturn: false }) as AsyncIterator<pb.BlobMessage>,
  };
}

export class BlobLinkStats {
  connected = false;
  blobsSent = 0;
  blobsReceived = 0;
  /** Blob data bytes sent and received (chunks and inline data). */
  bytesSent = 0;
  bytesReceived = 0;
  /** Changes passed over: blobs larger than this backend holds. */
  skipped = 0;
}

export interface BlobLinkPlan {
  peer: SiteId;
  filter: BlobFilter;
  /** The peer has applied this site's blob log up to this sequence. */
  sendFrom: number;
}

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

function toPb(c: BlobChange): pb.BlobChange {
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
  };
}

function fromPb(c: pb.BlobChange): BlobChange {
  const op = PB_TO_OP.get(c.op);
  if (op === undefined) throw invalidArgument(`blob sync: unknown op ${c.op}`);
  if (c.site.length !== SITE_BYTES) throw invalidArgument(`blob sync: a site id of ${c.site.length} bytes`);
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  if (c.id < 1n || c.id > max || c.hlc > max || c.size > max || c.seq > max) {
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
  };
}

/** The peer's answers (BlobWant, BlobAck) to the sender, in order. */
class Replies {
  private readonly queue: pb.BlobMessage[] = [];
  private waiter: { resolve: (m: pb.BlobMessage) => void; reject: (e: Error) => void } | undefined;
  private error: Error | undefined;

  /** The next answer (a link that fails first rejects it: awaited or not, that is no unhandled rejection). */
  next(): Promise<pb.BlobMessage> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    const next = this.error
      ? Promise.reject(this.error)
      : new Promise<pb.BlobMessage>((resolve, reject) => {
          this.waiter = { resolve, reject };
        });
    next.catch(() => {});
    return next;
  }

  push(m: pb.BlobMessage): void {
    const w = this.waiter;
    this.waiter = undefined;
    if (w) w.resolve(m);
    else this.queue.push(m);
  }

  fail(err: Error): void {
    this.error = err;
    this.waiter?.reject(err);
    this.waiter = undefined;
  }
}

/** Runs the link until the peer ends it, `signal` aborts, or an error (thrown). */
export async function runBlobLink(
  sync: BlobSyncStore,
  io: BlobIo,
  plan: BlobLinkPlan,
  stats: BlobLinkStats,
  signal: AbortSignal,
): Promise<void> {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  signal.addEventListener('abort', onAbort);
  const replies = new Replies();
  const fail = (err: unknown): never => {
    stop.abort();
    replies.fail(err as Error);
    throw err;
  };
  try {
    await Promise.all([
      sendChanges(sync, io, plan, stats, replies, stop.signal).catch(fail),
      receiveChanges(sync, io, plan.peer, stats, replies).then(() => {
        stop.abort();
        replies.fail(new Error('blob sync: the peer ended the link'));
      }, fail),
    ]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

function expectAck(reply: pb.BlobMessage, seq: number): void {
  if (reply.ack?.seq !== BigInt(seq)) {
    throw failedPrecondition(
      `blob sync: change ${seq} sent, ${reply.ack ? `${reply.ack.seq} acknowledged` : 'no ack'}`,
    );
  }
}

async function sendChanges(
  sync: BlobSyncStore,
  io: BlobIo,
  plan: BlobLinkPlan,
  stats: BlobLinkStats,
  replies: Replies,
  signal: AbortSignal,
): Promise<void> {
  let cursor = plan.sendFrom;
  while (!signal.aborted) {
    const { entries, last } = await sync.read(cursor, PAGE);
    if (entries.length === 0) {
      if (last <= cursor) await sync.waitForChange(IDLE_POLL_MS, signal);
      cursor = Math.max(cursor, last);
      continue;
    }
    let sent = false;
    // Changes that carry all they need (deletes, inline blobs) go without waiting for each answer,
    // up to WINDOW at a time; one whose data may be wanted goes once every answer before it is in.
    const unanswered: number[] = [];
    const answered = async (max: number): Promise<void> => {
      while (unanswered.length > max) {
        expectAck(await replies.next(), unanswered.shift()!);
        stats.blobsSent++;
      }
    };
    for (const entry of entries) {
      if (signal.aborted) return;
      const out = wantedBy(entry, plan.filter) ? await sync.outgoing(entry) : undefined;
      if (out && out.reader === undefined) {
        await io.send({ change: toPb(out.change) });
        stats.bytesSent += out.change.inline?.length ?? 0;
        unanswered.push(out.change.seq);
        await answered(WINDOW - 1);
        sent = true;
      } else if (out) {
        try {
          await answered(0);
          await offer(io, out.change, out.reader, stats, replies);
        } finally {
          out.reader?.close();
        }
        sent = true;
      }
      cursor = entry.seq;
    }
    await answered(0);
    if (!sent) {
      // Nothing here for the peer: move its cursor past these, so it is not offered them again.
      const reply = replies.next();
      io.post({ change: toPb(noop(cursor)) });
      expectAck(await reply, cursor);
    }
  }
}

function noop(seq: number): BlobChange {
  return {
    seq,
    id: 1,
    op: 'none',
    stamp: { hlc: 0, site: Buffer.alloc(SITE_BYTES) },
    metadata: null,
    size: 0,
    sha256: EMPTY,
    inline: undefined,
  };
}

/** Offers one change; sends the data the peer wants; resolves once the peer has committed it. */
async function offer(
  io: BlobIo,
  change: BlobChange,
  reader: { read(offset: number, length: number): Promise<Buffer> } | undefined,
  stats: BlobLinkStats,
  replies: Replies,
): Promise<void> {
  let reply = replies.next();
  await io.send({ change: toPb(change) });
  stats.bytesSent += change.inline?.length ?? 0;
  const first = await reply;
  if (first.want) {
    if (first.want.seq !== BigInt(change.seq) || !reader) {
      throw failedPrecondition(`blob sync: data of change ${first.want.seq} wanted while offering ${change.seq}`);
    }
    reply = replies.next();
    for (let at = Number(first.want.offset); at < change.size; ) {
      const data = await reader.read(at, Math.min(CHUNK_SIZE, change.size - at));
      await io.send({ data: { seq: BigInt(change.seq), offset: BigInt(at), data } });
      stats.bytesSent += data.length;
      at += data.length;
    }
    expectAck(await reply, change.seq);
  } else {
    expectAck(first, change.seq);
  }
  stats.blobsSent++;
}

interface Receiving {
  change: BlobChange;
  upload: Upload;
  received: number;
}

async function receiveChanges(
  sync: BlobSyncStore,
  io: BlobIo,
  peer: SiteId,
  stats: BlobLinkStats,
  replies: Replies,
): Promise<void> {
  let current: Receiving | undefined;
  const ack = (seq: number): void => io.post({ ack: { seq: BigInt(seq) } });
  const finish = async (r: Receiving): Promise<void> => {
    current = undefined;
    await r.upload.end();
    stats.blobsReceived++;
    ack(r.change.seq);
  };
  try {
    for (;;) {
      const next = await io.messages.next();
      if (next.done) return;
      const msg = next.value;
      if (msg.want || msg.ack) {
        replies.push(msg);
      } else if (msg.change) {
        if (current) throw invalidArgument(`blob sync: a change while the data of ${current.change.seq} is due`);
        const change = fromPb(msg.change);
        stats.bytesReceived += change.inline?.length ?? 0;
        if ((await sync.receive(peer, change)) === 'done') {
          if (change.op !== 'none') stats.blobsReceived++;
          ack(change.seq);
          continue;
        }
        let upload: Upload;
        try {
          upload = await sync.receiveData(peer, change);
        } catch (err) {
          if (!tooLarge(err)) throw err;
          await sync.passOver(peer, change);
          stats.skipped++;
          ack(change.seq);
          continue;
        }
        current = { change, upload, received: upload.header.offset };
        if (current.received === change.size) await finish(current);
        else io.post({ want: { seq: BigInt(change.seq), offset: BigInt(current.received) } });
      } else if (msg.data) {
        const r = current;
        if (!r || msg.data.seq !== BigInt(r.change.seq) || msg.data.offset !== BigInt(r.received)) {
          throw invalidArgument(`blob sync: data at ${msg.data.offset} of change ${msg.data.seq} was not asked for`);
        }
        await r.upload.write(msg.data.data);
        r.received += msg.data.data.length;
        stats.bytesReceived += msg.data.data.length;
        if (r.received >= r.change.size) await finish(r);
      } else {
        throw invalidArgument('blob sync: expected BlobChange, BlobWant, BlobData or BlobAck after the handshake');
      }
    }
  } finally {
    if (current) await sync.interrupted(current.upload).catch(() => {});
  }
}
