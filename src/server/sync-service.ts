/** buffdb.sync.Sync: every server is a hub (Exchange); Status and Conflicts report this server's sync. */

import type { Readable } from 'node:stream';
import type {
  ServerDuplexStream,
  ServerUnaryCall,
  ServerWritableStream,
  sendUnaryData,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type * as pb from '../generated/sync.js';
import type { Rekeyed } from '../store/blob/blob-sync-reset.js';
import { BlobSyncStore } from '../store/blob/blob-sync-store.js';
import type { BuffDb } from '../store/buffdb.js';
import { blobIo } from '../sync/blob-link.js';
import { type BlobEdgeSync, serveBlobs } from '../sync/blob-sync.js';
import { callIo, type EdgeSync } from '../sync/edge.js';
import type { SyncHub } from '../sync/hub.js';
import type { MemoryBudget } from './memory-budget.js';
import { writable } from './query-service.js';
import { budgetedReads, toServiceError } from './stream-handler.js';

export interface SyncServiceOptions {
  /** The hub end of every edge's link (its `edges` are the links open now). */
  hub: SyncHub;
  /** This server's link to its hub (`--sync-to`), reported by Status. */
  edge?: EdgeSync;
  /** This server's blob link to its hub, reported by Status. */
  blobEdge?: BlobEdgeSync;
  /** Aborted at shutdown: ends every edge's link. */
  signal: AbortSignal;
  /** The server's memory budget: an edge's messages are read only while it has room. */
  budget: MemoryBudget;
  /** A blob from before sync was moved to a new id (it lost its id to another site's blob). */
  onRekey?: (moved: Rekeyed) => void;
}

const DEFAULT_CONFLICTS = 1000;

export async function syncStatus(
  db: BuffDb,
  hub: SyncHub,
  edge: EdgeSync | undefined,
  blobEdge?: BlobEdgeSync,
  blobs?: BlobSyncStore,
): Promise<pb.StatusResponse> {
  const s = edge?.stats;
  const b = blobEdge?.stats;
  const log = await blobs?.logMarks();
  return {
    edge: edge !== undefined,
    hub: edge?.hubAddress ?? '',
    connected: s?.connected ?? false,
    lastSuccessMs: BigInt(s?.lastSuccessMs ?? 0),
    waitingUp: BigInt(edge ? await edge.waitingUp() : 0),
    waitingDown: BigInt(s ? Math.max(0, s.peerRev - s.applied) : 0),
    bytesSent: BigInt(s?.bytesSent ?? 0),
    bytesReceived: BigInt(s?.bytesReceived ?? 0),
    conflicts: BigInt(s?.conflicts ?? 0),
    site: db.sync.site.toString('hex'),
    generation: BigInt(db.kv.identity.generation),
    lastError: edge?.lastError ?? '',
    edgesConnected: hub.edges.size,
    blobConnected: b?.connected ?? false,
    blobsSent: BigInt(b?.blobsSent ?? 0),
    blobsReceived: BigInt(b?.blobsReceived ?? 0),
    blobBytesSent: BigInt(b?.bytesSent ?? 0),
    blobBytesReceived: BigInt(b?.bytesReceived ?? 0),
    blobLastError: blobEdge?.lastError ?? '',
    blobLogLast: BigInt(log?.last ?? 0),
    blobLogCompacted: BigInt(log?.compacted ?? 0),
  };
}

/**
 * Reads a link's messages through the memory budget (ReadGate): each holds its size until the link
 * asks for the next one, so a peer that floods the link is held back by HTTP/2 flow control instead
 * of grpc-js taking in 16 messages of up to --max-message-size each.
 */
function budgeted<M>(call: Readable, budget: MemoryBudget, messages: AsyncIterator<M>): AsyncIterator<M> {
  const { mem, gate } = budgetedReads(call, budget, 'small');
  let held = 0;
  const done = (): void => {
    mem.release(held);
    held = 0;
  };
  return {
    next: async () => {
      done();
      const r = await messages.next();
      if (!r.done) held = gate.take();
      return r;
    },
    return: async (value?: unknown) => {
      done();
      return messages.return ? messages.return(value) : { done: true, value: value as M };
    },
  };
}

/** A bidi link handler: `serve` runs until the link ends, the call is cancelled or the server stops. */
function linkHandler<M>(
  shutdown: AbortSignal,
  serve: (call: ServerDuplexStream<M, M>, signal: AbortSignal) => Promise<void>,
): (call: ServerDuplexStream<M, M>) => Promise<void> {
  return async (call) => {
    const stop = new AbortController();
    const end = (): void => stop.abort();
    shutdown.addEventListener('abort', end);
    call.on('cancelled', end);
    try {
      await serve(call, stop.signal);
      if (!call.cancelled) call.end();
    } catch (err) {
      if (!call.cancelled && !stop.signal.aborted) call.emit('error', toServiceError(err));
      else call.end();
    } finally {
      shutdown.removeEventListener('abort', end);
    }
  };
}

export function syncService(db: BuffDb, options: SyncServiceOptions): UntypedServiceImplementation {
  const { hub, budget } = options;
  const blobs = new BlobSyncStore(db.blob, { maxOfflineMs: db.sync.maxOfflineMs, onRekey: options.onRekey });
  // One upkeep per server (the blob log's compaction and old tombstones).
  blobs.startUpkeep();
  options.signal.addEventListener('abort', () => blobs.stop());
  return {
    blobExchange: linkHandler<pb.BlobMessage>(options.signal, (call, signal) => {
      const io = blobIo(call);
      return serveBlobs(blobs, db.kv.identity.site, { ...io, messages: budgeted(call, budget, io.messages) }, signal);
    }),
    exchange: linkHandler<pb.SyncMessage>(options.signal, (call, signal) => {
      const io = callIo(call);
      return hub.serve({ ...io, messages: budgeted(call, budget, io.messages) }, signal);
    }),
    status: (
      _call: ServerUnaryCall<pb.StatusRequest, pb.StatusResponse>,
      callback: sendUnaryData<pb.StatusResponse>,
    ) => {
      syncStatus(db, hub, options.edge, options.blobEdge, blobs).then(
        (s) => callback(null, s),
        (err: unknown) => callback(toServiceError(err) as never),
      );
    },
    conflicts: async (call: ServerWritableStream<pb.ConflictsRequest, pb.Conflict>) => {
      try {
        const list = await db.sync.conflicts(Number(call.request.sinceMs), call.request.limit || DEFAULT_CONFLICTS);
        for (const c of list) {
          const ok = call.write({
            key: c.key,
            loserValue: c.loser ?? Buffer.alloc(0),
            loserDeleted: c.loser === undefined,
            loserHlc: BigInt(c.loserStamp.hlc),
            loserSite: c.loserStamp.site,
            winnerHlc: BigInt(c.winnerStamp.hlc),
            winnerSite: c.winnerStamp.site,
            resolvedMs: BigInt(c.atMs),
          });
          if (!ok) await writable(call);
        }
        call.end();
      } catch (err) {
        call.emit('error', toServiceError(err));
      }
    },
  };
}
