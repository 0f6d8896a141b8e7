/**
 * Both ends of the blob link (docs/sync.md "Blobs"). The hub answers an edge's BlobHello with its
 * site and how far it has applied the edge's blob log, then relays every blob change not made by
 * that edge. The edge (`--sync-to`) keeps a BlobExchange call open beside its KV link, for ever,
 * sending its own blob changes: a lost call is retried with backoff and jitter, like the KV link.
 */
import type { ChannelCredentials } from '@grpc/grpc-js';
import { invalidArgument } from '../errors.js';
import type { BlobSyncStore } from '../store/blob/blob-sync-store.js';
import { SITE_BYTES, type SiteId } from '../store/sync/stamp.js';
import { type BlobIo, BlobLinkStats, blobIo, runBlobLink } from './blob-link.js';
import { hubClient } from './edge.js';
import { firstMessage, PROTOCOL } from './hub.js';
import { ReconnectingLink } from './reconnect.js';

/** The hub's end of one edge's blob link. */
export async function serveBlobs(sync: BlobSyncStore, self: SiteId, io: BlobIo, signal: AbortSignal): Promise<void> {
  const { hello } = await firstMessage(io, 'BlobHello');
  if (!hello) throw invalidArgument('blob sync: the first message of a link must be BlobHello');
  if (hello.protocol !== PROTOCOL) {
    throw invalidArgument(`blob sync: protocol ${hello.protocol} is not supported (this hub speaks ${PROTOCOL})`);
  }
  if (hello.site.length !== SITE_BYTES) throw invalidArgument(`blob sync: a site id is ${SITE_BYTES} bytes`);
  const edge = Buffer.from(hello.site);
  if (edge.equals(self)) throw invalidArgument('blob sync: an edge cannot sync with itself');
  // From the first edge on, this store hands out fleet ids; its blobs from before get logged.
  await sync.join();
  void sync.backfill().catch(() => {});
  io.post({ welcome: { site: self, applied: BigInt(await sync.applied(edge)) } });
  // A cursor into another hub's log (this hub was restored or replaced) counts for nothing.
  const sameHub = hello.hubSite.length === 0 || hello.hubSite.equals(self);
  const stats = new BlobLinkStats();
  stats.connected = true;
  await runBlobLink(
    sync,
    io,
    {
      peer: edge,
      filter: { localOnly: false, peer: edge },
      sendFrom: sameHub ? Number(hello.applied) : 0,
      clamp: true,
      edge: false,
    },
    stats,
    signal,
  );
}

export interface BlobEdgeOptions {
  hub: string;
  /** This site (read at each connection: a store may take a new identity). */
  site: () => SiteId;
  credentials?: ChannelCredentials;
  token?: string;
  /** Called when a working blob link is lost (for the log): never with blob data or the token. */
  onLost?: (error: string) => void;
  /** Called when the hub starts a reset (this site was away longer than the hub keeps its blob log). */
  onReset?: () => void;
}

/** The edge's blob link to its hub, kept open for as long as the server runs. */
export class BlobEdgeSync extends ReconnectingLink {
  stats = new BlobLinkStats();

  constructor(
    readonly sync: BlobSyncStore,
    private readonly options: BlobEdgeOptions,
  ) {
    // After a link that worked ends, wait the shortest backoff before the next.
    super(1);
  }

  protected ended(linked: boolean): void {
    if (linked && !this.stopping.signal.aborted) this.options.onLost?.(this.lastError);
    this.stats.connected = false;
  }

  /** One BlobExchange call; answers whether the handshake worked. */
  protected async session(): Promise<boolean> {
    await this.sync.join();
    void this.sync.backfill().catch(() => {});
    const { client, metadata } = hubClient(this.options);
    const call = client.blobExchange(metadata);
    const cancel = (): void => call.cancel();
    this.stopping.signal.addEventListener('abort', cancel);
    let linked = false;
    try {
      const io = blobIo(call);
      const known = await this.sync.hub();
      io.post({
        hello: {
          protocol: PROTOCOL,
          site: this.options.site(),
          hubSite: known ?? Buffer.alloc(0),
          applied: BigInt(known ? await this.sync.applied(known) : 0),
        },
      });
      const { welcome } = await firstMessage(io, 'BlobWelcome');
      if (!welcome) throw new Error('the hub did not answer the BlobHello with a BlobWelcome');
      const hub = Buffer.from(welcome.site);
      if (!known?.equals(hub)) await this.sync.setHub(hub);
      linked = true;
      const stats = new BlobLinkStats();
      stats.connected = true;
      stats.bytesSent = this.stats.bytesSent;
      stats.bytesReceived = this.stats.bytesReceived;
      this.stats = stats;
      this.lastError = '';
      await runBlobLink(
        this.sync,
        io,
        {
          peer: hub,
          filter: { localOnly: true, peer: undefined },
          sendFrom: Number(welcome.applied),
          clamp: false,
          edge: true,
          onReset: this.options.onReset,
        },
        stats,
        this.stopping.signal,
      );
      return true;
    } catch (err) {
      this.lastError = (err as Error).message.split('\n')[0] ?? '';
      return linked;
    } finally {
      this.stopping.signal.removeEventListener('abort', cancel);
      call.cancel();
      client.close();
    }
  }
}
