/**
 * The sending half of a blob link: offers this site's blob changes after the peer's cursor — the
 * change, then the data the peer asks for from the offset it already holds, in chunks read as they
 * go — and, when the peer's cursor is older than the compacted log, a reset first: every blob's
 * current state, then the tail (docs/sync.md "Blobs"). Each acknowledgement is noted (it lets the
 * log be compacted).
 */
import { failedPrecondition } from '../errors.js';
import type * as pb from '../generated/sync.js';
import type { BlobChange, BlobSyncStore, Outgoing } from '../store/blob/blob-sync-store.js';
import { wantedBy } from '../store/blob/blob-sync-store.js';
import { CHUNK_SIZE } from '../store/blob/large-layout.js';
import { SITE_BYTES } from '../store/sync/stamp.js';
import type { BlobIo, BlobLinkPlan, BlobLinkStats } from './blob-link.js';
import { toPb } from './blob-wire.js';

/** Log entries read per page. */
const PAGE = 64;
/** Changes that need no data in flight at once (a slow link is not one round trip per blob). */
const WINDOW = 32;
/** With nothing to send, the sender looks again at least this often (other processes' writes). */
const IDLE_POLL_MS = 2000;
const EMPTY = Buffer.alloc(0);

/** The peer's answers (BlobWant, BlobAck) to the sender, in order. */
export class Replies {
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

function noop(seq: number, resetAfter?: number): BlobChange {
  return {
    seq,
    id: resetAfter === undefined ? 1 : Number.MAX_SAFE_INTEGER,
    op: 'none',
    stamp: { hlc: 0, site: Buffer.alloc(SITE_BYTES) },
    metadata: null,
    size: 0,
    sha256: EMPTY,
    inline: undefined,
    origin: undefined,
    resetAfter,
  };
}

export class BlobSender {
  /** The last sequence of this site's log the peer has applied (as far as this link knows). */
  acked: number;

  constructor(
    private readonly sync: BlobSyncStore,
    private readonly io: BlobIo,
    private readonly plan: BlobLinkPlan,
    private readonly stats: BlobLinkStats,
    private readonly replies: Replies,
    private readonly signal: AbortSignal,
  ) {
    this.acked = plan.sendFrom;
  }

  /** Checks the peer's answer; a change of a reset (but its last) does not move the peer's cursor. */
  private expectAck(reply: pb.BlobMessage, change: Pick<BlobChange, 'seq' | 'resetAfter' | 'op'>): void {
    const { seq } = change;
    if (reply.ack?.seq !== BigInt(seq)) {
      throw failedPrecondition(
        `blob sync: change ${seq} sent, ${reply.ack ? `${reply.ack.seq} acknowledged` : 'no ack'}`,
      );
    }
    if (seq <= this.acked || (change.resetAfter !== undefined && change.op !== 'none')) return;
    this.acked = seq;
    this.sync.acknowledged(this.plan.peer, seq).catch(() => {});
  }

  async run(): Promise<void> {
    let cursor = this.plan.sendFrom;
    await this.sync.acknowledged(this.plan.peer, cursor, true);
    if (await this.sync.needsReset(cursor)) cursor = await this.reset();
    while (!this.signal.aborted) {
      const { entries, last } = await this.sync.read(cursor, PAGE);
      if (entries.length === 0) {
        if (last <= cursor) await this.sync.waitForChange(IDLE_POLL_MS, this.signal);
        cursor = Math.max(cursor, last);
        continue;
      }
      const sent = await this.sendAll(
        entries.map((entry) => async () => {
          const out = wantedBy(entry, this.plan.filter) ? await this.sync.outgoing(entry) : undefined;
          cursor = entry.seq;
          return out;
        }),
      );
      if (this.signal.aborted) return;
      if (!sent) {
        // Nothing here for the peer: move its cursor past these, so it is not offered them again.
        await this.post(noop(cursor));
      }
    }
  }

  /** The peer's cursor is older than the compacted log: every blob's current state, then the tail. */
  private async reset(): Promise<number> {
    const seq = (await this.sync.read(Number.MAX_SAFE_INTEGER - 1, 1)).last;
    const filter = { localOnly: this.plan.filter.localOnly, peer: undefined };
    let after = 0;
    let previous = 0;
    while (!this.signal.aborted) {
      const page = await this.sync.resetPage(after, previous, seq, filter);
      if (page.last === after) break;
      await this.sendAll(page.outgoing.map((out) => async () => out));
      after = page.last;
      previous = page.previous;
    }
    if (this.signal.aborted) return seq;
    await this.post(noop(seq, previous));
    return seq;
  }

  /** Sends a change that needs no answer but its acknowledgement, and waits for it. */
  private async post(change: BlobChange): Promise<void> {
    const reply = this.replies.next();
    this.io.post({ change: toPb(change) });
    this.expectAck(await reply, change);
  }

  /**
   * Sends each change in turn; answers whether any was sent. Changes that carry all they need
   * (deletes, inline blobs) go without waiting for each answer, up to WINDOW at a time; one whose
   * data may be wanted goes once every answer before it is in.
   */
  private async sendAll(next: (() => Promise<Outgoing | undefined>)[]): Promise<boolean> {
    let sent = false;
    const unanswered: BlobChange[] = [];
    const answered = async (max: number): Promise<void> => {
      while (unanswered.length > max) {
        this.expectAck(await this.replies.next(), unanswered.shift()!);
        this.stats.blobsSent++;
      }
    };
    for (const read of next) {
      if (this.signal.aborted) return sent;
      const out = await read();
      if (out && out.reader === undefined) {
        await this.io.send({ change: toPb(out.change) });
        this.stats.bytesSent += out.change.inline?.length ?? 0;
        unanswered.push(out.change);
        await answered(WINDOW - 1);
        sent = true;
      } else if (out) {
        try {
          await answered(0);
          await this.offer(out.change, out.reader);
        } finally {
          out.reader?.close();
        }
        sent = true;
      }
    }
    await answered(0);
    return sent;
  }

  /** Offers one change; sends the data the peer wants; resolves once the peer has committed it. */
  private async offer(
    change: BlobChange,
    reader: { read(offset: number, length: number): Promise<Buffer> } | undefined,
  ): Promise<void> {
    let reply = this.replies.next();
    await this.io.send({ change: toPb(change) });
    this.stats.bytesSent += change.inline?.length ?? 0;
    const first = await reply;
    if (first.want) {
      if (first.want.seq !== BigInt(change.seq) || !reader) {
        throw failedPrecondition(`blob sync: data of change ${first.want.seq} wanted while offering ${change.seq}`);
      }
      reply = this.replies.next();
      for (let at = Number(first.want.offset); at < change.size; ) {
        const data = await reader.read(at, Math.min(CHUNK_SIZE, change.size - at));
        await this.io.send({ data: { seq: BigInt(change.seq), offset: BigInt(at), data } });
        this.stats.bytesSent += data.length;
        at += data.length;
      }
      this.expectAck(await reply, change);
    } else {
      this.expectAck(first, change);
    }
    this.stats.blobsSent++;
  }
}
