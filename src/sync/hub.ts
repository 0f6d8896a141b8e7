/**
 * The hub's end of a link: every buffdb server is a hub to the edges that connect. It checks the
 * edge's Hello — a store that is a restored or copied image of a site the hub already knows more of
 * is told to take a new identity — answers Welcome, then runs the link: the edge's changes are
 * applied (clamping clocks too far ahead), and the edge gets every change not its own, within its
 * pull prefixes, from its cursor (or a snapshot first when that is older than the history kept).
 */
import { invalidArgument } from '../errors.js';
import type * as pb from '../generated/sync.js';
import { SITE_BYTES } from '../store/sync/stamp.js';
import type { SyncStore } from '../store/sync/sync-store.js';
import { LinkStats, type MessageIo, runLink } from './link.js';

export const PROTOCOL = 1;
/** An edge that sends no Hello within this long is dropped. */
const HELLO_TIMEOUT_MS = 30_000;

export async function firstMessage<M = pb.SyncMessage>(io: { messages: AsyncIterator<M> }, what: string): Promise<M> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(invalidArgument(`sync: no ${what} within ${HELLO_TIMEOUT_MS / 1000} s`)),
      HELLO_TIMEOUT_MS,
    );
  });
  try {
    const next = await Promise.race([io.messages.next(), timeout]);
    if (next.done) throw invalidArgument(`sync: the stream ended before the ${what}`);
    return next.value;
  } finally {
    clearTimeout(timer);
  }
}

export class SyncHub {
  /** Links open now, by edge site (hex). */
  readonly edges = new Map<string, LinkStats>();

  constructor(readonly sync: SyncStore) {}

  async serve(io: MessageIo, signal: AbortSignal): Promise<void> {
    const { hello } = await firstMessage(io, 'Hello');
    if (!hello) throw invalidArgument('sync: the first message of a link must be Hello');
    if (hello.protocol !== PROTOCOL) {
      throw invalidArgument(`sync: protocol ${hello.protocol} is not supported (this hub speaks ${PROTOCOL})`);
    }
    if (hello.site.length !== SITE_BYTES) throw invalidArgument(`sync: a site id is ${SITE_BYTES} bytes`);
    const edge = Buffer.from(hello.site);
    const self = this.sync.site;
    if (edge.equals(self)) throw invalidArgument('sync: an edge cannot sync with itself');
    const applied = await this.sync.applied(edge);
    const welcome: pb.Welcome = {
      site: self,
      applied: BigInt(applied),
      revision: BigInt(this.sync.kv.hub.committedRev),
      wallMs: BigInt(Date.now()),
      newIdentity: applied > Number(hello.revision),
      reset: false,
    };
    if (welcome.newIdentity) {
      await io.send({ welcome });
      return;
    }
    // A cursor into another hub's stream (this hub was restored or replaced) counts for nothing.
    const sameHub = hello.hubSite.length === 0 || hello.hubSite.equals(self);
    const from = sameHub ? Number(hello.applied) : 0;
    welcome.reset = from + 1 < this.sync.kv.hub.compactRev;
    await io.send({ welcome });
    const stats = new LinkStats();
    stats.connected = true;
    stats.applied = applied;
    const id = edge.toString('hex');
    this.edges.set(id, stats);
    this.sync.acknowledged(edge, from);
    try {
      await runLink(
        this.sync,
        io,
        {
          role: 'hub',
          peer: edge,
          filter: { localOnly: false, peer: edge, prefixes: hello.pullPrefixes },
          sendFrom: from,
        },
        stats,
        signal,
      );
    } finally {
      if (this.edges.get(id) === stats) this.edges.delete(id);
    }
  }
}
