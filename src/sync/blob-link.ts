/**
 * One blob link (buffdb.sync.Sync/BlobExchange, beside the KV link so blob data never holds KV
 * changes back), the same on both ends once the handshake is done: a sender that offers this
 * site's blob changes after the peer's cursor one at a time — the change, then the data the peer
 * asks for from the offset it already holds, in chunks read as they go — and a receiver that
 * applies the peer's changes, keeping partial data durable so a cut link resumes where it stopped.
 */
import type { Duplex } from 'node:stream';
import type { ClientDuplexStream, ServerDuplexStream } from '@grpc/grpc-js';
import { invalidArgument } from '../errors.js';
import type * as pb from '../generated/sync.js';
import {
  type BlobChange,
  type BlobFilter,
  type BlobSyncStore,
  type ReceiveContext,
  tooLarge,
} from '../store/blob/blob-sync-store.js';
import type { Upload } from '../store/blob/upload.js';
import type { SiteId } from '../store/sync/stamp.js';
import { BlobSender, Replies } from './blob-send.js';
import { fromPb } from './blob-wire.js';

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
  /** The hub clamps far-future stamps; an edge drops, in a reset, what its hub no longer has. */
  clamp: boolean;
  edge: boolean;
  /** Told when the peer starts sending a reset (for the log). */
  onReset?: () => void;
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
  const sender = new BlobSender(sync, io, plan, stats, replies, stop.signal);
  const ctx: ReceiveContext = { clamp: plan.clamp, acked: plan.edge ? () => sender.acked : undefined };
  const fail = (err: unknown): never => {
    stop.abort();
    replies.fail(err as Error);
    throw err;
  };
  try {
    await Promise.all([
      sender.run().catch(fail),
      receiveChanges(sync, io, plan.peer, ctx, stats, replies, plan.onReset).then(() => {
        stop.abort();
        replies.fail(new Error('blob sync: the peer ended the link'));
      }, fail),
    ]);
  } finally {
    signal.removeEventListener('abort', onAbort);
    await sync.flushAck(plan.peer).catch(() => {});
  }
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
  ctx: ReceiveContext,
  stats: BlobLinkStats,
  replies: Replies,
  onReset: (() => void) | undefined,
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
        const change = sync.clamped(fromPb(msg.change), ctx);
        if (change.resetAfter === 0) onReset?.();
        stats.bytesReceived += change.inline?.length ?? 0;
        if ((await sync.receive(peer, change, ctx)) === 'done') {
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
