/**
 * The edge's end: `buffdb run --sync-to HOST:PORT` keeps one link to its hub, for ever. Reads and
 * writes never wait for it — local writes are in the history, durable with the write, until the
 * hub acknowledges them. A lost link is retried with exponential backoff and full jitter, capped at
 * 15 s (reconnect.ts) and re-armed by a timer (not by the next write), so an edge catches up within a
 * minute of its hub coming back; gRPC keepalive notices a silent dead link within ~20 s.
 */

import type { Duplex } from 'node:stream';
import {
  type ChannelCredentials,
  type ClientDuplexStream,
  credentials,
  Metadata,
  type ServerDuplexStream,
} from '@grpc/grpc-js';
import { DEFAULT_MAX_MESSAGE_SIZE } from '../defaults.js';
import * as pb from '../generated/sync.js';
import { readChanges } from '../store/sync/changes.js';
import type { SyncStore } from '../store/sync/sync-store.js';
import { firstMessage, PROTOCOL } from './hub.js';
import { LinkStats, type MessageIo, runLink } from './link.js';
import { ReconnectingLink } from './reconnect.js';

const KEEPALIVE_MS = 10_000;

export interface EdgeOptions {
  /** The hub's address, HOST:PORT. */
  hub: string;
  /** Keys that go up / come down (empty: every key). */
  pushPrefixes?: Buffer[];
  pullPrefixes?: Buffer[];
  credentials?: ChannelCredentials;
  /** Sent as `authorization: Bearer …` when the hub has auth on. */
  token?: string;
  /** Called on link state changes (for the log): never with keys, values or the token. */
  onEvent?: (event: 'connected' | 'disconnected' | 'new-identity' | 'reset', detail: string) => void;
}

/** A grpc-js bidi call (either end) as the link's message pair. */
export function callIo(
  call: ClientDuplexStream<pb.SyncMessage, pb.SyncMessage> | ServerDuplexStream<pb.SyncMessage, pb.SyncMessage>,
): MessageIo {
  const stream = call as unknown as Duplex;
  // A write racing the other end's close fails through its callback below; the stream's own
  // 'error' must not become an uncaught exception (the iterator sees the end of the call).
  stream.on('error', () => {});
  const closed = (): Error => new Error('the sync link closed');
  return {
    send: (msg) =>
      new Promise((resolve, reject) => {
        if (stream.destroyed || !stream.writable) {
          reject(closed());
          return;
        }
        const onClose = (): void => reject(closed());
        const ok = stream.write(msg as never, (err?: Error | null) => {
          if (err) reject(err);
        });
        if (ok) {
          resolve();
          return;
        }
        stream.once('close', onClose);
        stream.once('drain', () => {
          stream.off('close', onClose);
          resolve();
        });
      }),
    // Not destroyed when the peer's side ends: the call must still send its own end (the status).
    messages: stream.iterator({ destroyOnReturn: false }) as AsyncIterator<pb.SyncMessage>,
  };
}

/** A Sync client of the hub (keepalive on) and the metadata of its calls (the token). */
export function hubClient(options: Pick<EdgeOptions, 'hub' | 'credentials' | 'token'>): {
  client: pb.SyncClient;
  metadata: Metadata;
} {
  const client = new pb.SyncClient(options.hub, options.credentials ?? credentials.createInsecure(), {
    'grpc.keepalive_time_ms': KEEPALIVE_MS,
    'grpc.keepalive_timeout_ms': KEEPALIVE_MS,
    'grpc.keepalive_permit_without_calls': 1,
    // A batch is ~1 MiB, but one revision travels whole: allow what the hub's Kv allows.
    'grpc.max_receive_message_length': DEFAULT_MAX_MESSAGE_SIZE,
    'grpc.max_send_message_length': DEFAULT_MAX_MESSAGE_SIZE,
  });
  const metadata = new Metadata();
  if (options.token !== undefined) metadata.set('authorization', `Bearer ${options.token}`);
  return { client, metadata };
}

export class EdgeSync extends ReconnectingLink {
  stats = new LinkStats();

  constructor(
    readonly sync: SyncStore,
    private readonly options: EdgeOptions,
  ) {
    // After a link that worked ends, try again at once.
    super(0);
  }

  get hubAddress(): string {
    return this.options.hub;
  }

  protected ended(): void {
    if (this.stats.connected) this.options.onEvent?.('disconnected', this.lastError);
    this.stats.connected = false;
  }

  /** One connection: handshake, then the link until it fails. Returns whether the handshake worked. */
  protected async session(): Promise<boolean> {
    const { client, metadata } = hubClient(this.options);
    const call = client.exchange(metadata);
    const cancel = (): void => call.cancel();
    this.stopping.signal.addEventListener('abort', cancel);
    try {
      const io = callIo(call);
      const sync = this.sync;
      const known = await sync.knownHub();
      const applied = known ? await sync.applied(known) : 0;
      await io.send({
        hello: {
          protocol: PROTOCOL,
          site: sync.site,
          generation: BigInt(sync.kv.identity.generation),
          hubSite: known ?? Buffer.alloc(0),
          applied: BigInt(applied),
          revision: BigInt(sync.kv.hub.committedRev),
          pullPrefixes: this.options.pullPrefixes ?? [],
        },
      });
      const { welcome } = await firstMessage(io, 'Welcome');
      if (!welcome) throw new Error('the hub did not answer the Hello with a Welcome');
      if (welcome.newIdentity) {
        // The hub has more of this site's stream than this store: a restored or copied image.
        await sync.renewIdentity();
        this.options.onEvent?.('new-identity', sync.site.toString('hex'));
        return true;
      }
      const hub = Buffer.from(welcome.site);
      await sync.pinHub(hub);
      sync.kv.identity.clock.observe(Number(welcome.wallMs) * 1024);
      const stats = new LinkStats();
      stats.connected = true;
      stats.peerRev = Number(welcome.revision);
      stats.applied = known?.equals(hub) ? applied : await sync.applied(hub);
      stats.bytesSent = this.stats.bytesSent;
      stats.bytesReceived = this.stats.bytesReceived;
      stats.conflicts = this.stats.conflicts;
      stats.lastSuccessMs = Date.now();
      this.stats = stats;
      this.lastError = '';
      this.options.onEvent?.('connected', this.options.hub);
      if (welcome.reset) this.options.onEvent?.('reset', this.options.hub);
      // The hub's cursor for this site, or further: what it acknowledged under an earlier identity.
      const sendFrom = Math.max(Number(welcome.applied), await sync.storedAck(hub));
      await runLink(
        sync,
        io,
        {
          role: 'edge',
          peer: hub,
          filter: { localOnly: true, peer: undefined, prefixes: this.options.pushPrefixes ?? [] },
          sendFrom,
        },
        stats,
        this.stopping.signal,
      );
      return true;
    } finally {
      this.stopping.signal.removeEventListener('abort', cancel);
      call.cancel();
      client.close();
    }
  }

  /** Local changes the hub has not acknowledged (counted up to `limit`). */
  async waitingUp(limit = 1_000_000): Promise<number> {
    const from = this.stats.peerApplied || (await this.pushedFloor());
    return this.sync.kv.committer.run(async (b) => {
      if (from + 1 < b.compactRev) return 0;
      const batch = await readChanges(
        b.ops,
        from,
        b.rev,
        { localOnly: true, peer: undefined, prefixes: this.options.pushPrefixes ?? [] },
        limit * 64,
        this.sync.site,
      );
      return batch.changes.length;
    });
  }

  private async pushedFloor(): Promise<number> {
    const hub = await this.sync.knownHub();
    return hub ? this.sync.storedAck(hub) : 0;
  }
}
