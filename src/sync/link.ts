/**
 * One sync link, the same on both ends once the handshake is done: a sender that streams this
 * site's changes after the peer's cursor — one batch in flight, the next sent only after the peer
 * acknowledged the last (and read meanwhile when there is a backlog), so an interrupted link
 * re-sends at most one batch and nothing buffers without bound (two batches at most) — and a receiver that applies the peer's batches and acknowledges each once it is
 * committed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition, invalidArgument } from '../errors.js';
import type * as pb from '../generated/sync.js';
import { prefixSpan } from '../store/kv/key-span.js';
import { type Change, type ChangeFilter, changeBytes } from '../store/sync/changes.js';
import type { SiteId } from '../store/sync/stamp.js';
import type { ReadResult, SyncStore } from '../store/sync/sync-store.js';
import { decodeChanges, encodeBatch, encodeSnapshotPage } from './wire.js';

/** Raw change bytes per batch (before gzip). */
export const BATCH_BYTES = 1024 * 1024;
/** A batch that only moves the peer's cursor (every change filtered out) waits this long for company. */
const EMPTY_BATCH_MS = 1000;
/** With nothing to send, the sender looks again at least this often. */
const IDLE_POLL_MS = 5000;
/**
 * Batching by time: a batch smaller than LINGER_BYTES waits this long for more writes first, so a
 * burst goes in fewer batches and writes superseded within the wait are coalesced.
 */
const LINGER_MS = 50;
const LINGER_BYTES = 64 * 1024;

/** Waits `ms`, or less if `signal` aborts first. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal }).catch(() => {});
}

/** The messages of one link (a gRPC bidi call on either end). */
export interface MessageIo {
  /** Resolves once the message is handed on (waits while the transport is full). */
  send(msg: pb.SyncMessage): Promise<void>;
  messages: AsyncIterator<pb.SyncMessage>;
}

export interface LinkPlan {
  role: 'hub' | 'edge';
  peer: SiteId;
  /** What of this site's stream the peer gets. */
  filter: ChangeFilter;
  /** The peer has applied this site's stream up to this revision. */
  sendFrom: number;
}

export class LinkStats {
  connected = false;
  lastSuccessMs = 0;
  bytesSent = 0;
  bytesReceived = 0;
  changesSent = 0;
  changesReceived = 0;
  conflicts = 0;
  /** The peer's newest revision seen (its Welcome, its batches). */
  peerRev = 0;
  /** How far the peer has applied this site's stream. */
  peerApplied = 0;
  /** How far this site has applied the peer's stream. */
  applied = 0;
}

class Acks {
  private waiter: ((rev: number) => void) | undefined;
  private failed: ((err: Error) => void) | undefined;

  wait(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.failed = reject;
    });
  }

  take(rev: number): void {
    const w = this.waiter;
    if (!w) throw invalidArgument('sync: an acknowledgement for nothing sent');
    this.waiter = undefined;
    w(rev);
  }

  fail(err: Error): void {
    this.failed?.(err);
    this.waiter = undefined;
  }
}

/** Runs the link until the peer ends it, `signal` aborts, or an error (thrown). */
export async function runLink(
  sync: SyncStore,
  io: MessageIo,
  plan: LinkPlan,
  stats: LinkStats,
  signal: AbortSignal,
): Promise<void> {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  signal.addEventListener('abort', onAbort);
  const acks = new Acks();
  stats.peerApplied = plan.sendFrom;
  const fail = (err: unknown): never => {
    stop.abort();
    acks.fail(err as Error);
    throw err;
  };
  try {
    // The peer ending its side ends the link: an acknowledgement still awaited will not come.
    const peerEnded = new Error('the sync peer ended the link');
    await Promise.all([
      send(sync, io, plan, stats, acks, stop.signal).catch((err: unknown) =>
        err === peerEnded ? undefined : fail(err),
      ),
      receive(sync, io, plan, stats, acks).then(() => {
        stop.abort();
        acks.fail(peerEnded);
      }, fail),
    ]);
  } finally {
    signal.removeEventListener('abort', onAbort);
    await sync.flushAck(plan.peer).catch(() => {});
  }
}

function lingerable(changes: readonly Change[]): boolean {
  let bytes = 0;
  for (const c of changes) {
    bytes += changeBytes(c);
    if (bytes >= LINGER_BYTES) return false;
  }
  return true;
}

async function send(
  sync: SyncStore,
  io: MessageIo,
  plan: LinkPlan,
  stats: LinkStats,
  acks: Acks,
  signal: AbortSignal,
): Promise<void> {
  let cursor = plan.sendFrom;
  let emptySince = 0;
  const ship = async (msg: pb.SyncMessage, changes: number): Promise<number> => {
    const ack = acks.wait();
    // If the send fails, the link is failing anyway: the acknowledgement will never come.
    ack.catch(() => {});
    await io.send(msg);
    stats.bytesSent += (msg.changes?.gzip.length ?? 0) + 32;
    stats.changesSent += changes;
    return ack;
  };
  // With a backlog, the next batch is read while the peer applies the last one (sent only after its ack).
  let prefetched: Promise<ReadResult> | undefined;
  while (!signal.aborted) {
    const read = await (prefetched ?? sync.read(cursor, plan.filter, BATCH_BYTES));
    prefetched = undefined;
    if ('compacted' in read) {
      cursor = await sendSnapshot(sync, plan, ship);
      continue;
    }
    if (read.to === cursor) {
      await sync.waitForCommit(cursor, IDLE_POLL_MS, signal);
      continue;
    }
    if (read.changes.length === 0) {
      // Only the cursor moves: send that now and then, not after every filtered commit.
      const now = Date.now();
      if (emptySince === 0) emptySince = now;
      if (now - emptySince < EMPTY_BATCH_MS) {
        await sync.waitForCommit(read.to, EMPTY_BATCH_MS - (now - emptySince), signal);
        if (Date.now() - emptySince < EMPTY_BATCH_MS) continue;
      }
    }
    emptySince = 0;
    let batch = read;
    if (read.changes.length > 0 && lingerable(read.changes)) {
      await pause(LINGER_MS, signal);
      const again = await sync.read(cursor, plan.filter, BATCH_BYTES);
      if (!('compacted' in again)) batch = again;
    }
    const shipped = ship(await encodeBatch(batch), batch.changes.length);
    if (!lingerable(batch.changes)) {
      prefetched = sync.read(batch.to, plan.filter, BATCH_BYTES);
      prefetched.catch(() => {}); // a failing link ends the loop; the read's error goes with it
    }
    const acked = await shipped;
    if (acked !== batch.to) throw failedPrecondition(`sync: revision ${batch.to} sent, ${acked} acknowledged`);
    cursor = batch.to;
    stats.peerApplied = cursor;
    stats.lastSuccessMs = Date.now();
    sync.acknowledged(plan.peer, cursor);
  }
}

/** Sends this site's current state to a peer whose cursor is older than the history kept. */
async function sendSnapshot(
  sync: SyncStore,
  plan: LinkPlan,
  ship: (msg: pb.SyncMessage, changes: number) => Promise<number>,
): Promise<number> {
  const at = sync.kv.hub.committedRev;
  const spans =
    plan.filter.prefixes.length === 0 ? [prefixSpan(Buffer.alloc(0))] : plan.filter.prefixes.map(prefixSpan);
  for (let i = 0; i < spans.length; i++) {
    const span = spans[i]!;
    let start = span.start;
    for (;;) {
      const page = await sync.snapshotPage(span, start);
      const last = i === spans.length - 1 && page.end === span.end;
      await ship(await encodeSnapshotPage(page, at, last), page.changes.length);
      if (page.end === span.end || page.end === undefined) break;
      start = page.end;
    }
  }
  return at;
}

async function receive(sync: SyncStore, io: MessageIo, plan: LinkPlan, stats: LinkStats, acks: Acks): Promise<void> {
  for (;;) {
    const next = await io.messages.next();
    if (next.done) return;
    const msg = next.value;
    if (msg.ack) {
      acks.take(Number(msg.ack.revision));
      continue;
    }
    if (!msg.changes) throw invalidArgument('sync: expected Changes or Ack after the handshake');
    stats.bytesReceived += msg.changes.gzip.length + 32;
    const incoming = await decodeChanges(msg.changes);
    if (incoming.kind === 'batch') {
      const result = await sync.apply(incoming.batch, {
        peer: plan.peer,
        peerSeen: stats.peerApplied,
        clampClocks: plan.role === 'hub',
        self: plan.role === 'edge' ? sync.site : undefined,
      });
      stats.conflicts += result.conflicts;
      stats.changesReceived += incoming.batch.changes.length;
    } else {
      await sync.applySnapshot(incoming.page, incoming.to, incoming.last, {
        hub: plan.peer,
        hubSeen: stats.peerApplied,
        dropMissing: plan.role === 'edge',
      });
      stats.changesReceived += incoming.page.changes.length;
    }
    const to = Number(msg.changes.toRevision);
    if (incoming.kind === 'batch' || incoming.last) stats.applied = Math.max(stats.applied, to);
    stats.peerRev = Math.max(stats.peerRev, to);
    stats.lastSuccessMs = Date.now();
    await io.send({ ack: { revision: msg.changes.toRevision, wallMs: BigInt(Date.now()) } });
  }
}
