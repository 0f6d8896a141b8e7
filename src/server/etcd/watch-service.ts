/**
 * etcdserverpb.Watch: many watchers on one bidi stream, each a watcher of the store's watch hub
 * (which replays history, keeps order and holds back for slow consumers). This file only maps
 * requests to hub watchers and hub deliveries to responses:
 *  - requests are handled in arrival order and their answers (created, canceled) written in that
 *    order, each `created` before any event of its watcher;
 *  - one response per delivery (whole revisions), split into fragments when the watcher asked and
 *    the response is large;
 *  - when the gRPC write buffer is full, a watcher's sink says so and the hub holds it back; on
 *    'drain' the held-back watchers resume from the history. The stream never buffers more than
 *    one delivery per watcher beyond the buffer, however slow the client.
 */
import type { ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { type StoreError, status } from '../../errors.js';
import * as pb from '../../generated/etcd/etcdserverpb/rpc.js';
import { Event } from '../../generated/etcd/mvccpb/kv.js';
import type { KvEvent } from '../../store/kv/history.js';
import { etcdSpan, isEmptySpan } from '../../store/kv/key-span.js';
import { ERR_COMPACTED } from '../../store/kv/kv-ops.js';
import type { KvStore } from '../../store/kv/kv-store.js';
import type { Watcher } from '../../store/kv/watch-hub.js';
import { DecodeFailure } from '../codec.js';
import { header, type OpenStreams, safeNumber, serviceError, trackStream } from './common.js';
import { watchEvent } from './convert.js';

export interface WatchOptions {
  /** Responses of at least this many bytes are split for watchers that asked (etcd: max request bytes + 512 KiB). */
  fragmentBytes: number;
  /** How often watchers that asked for progress notifications get one when idle (etcd: 10 minutes). */
  progressNotifyIntervalMs: number;
  streams: OpenStreams;
}

interface Entry {
  id: bigint;
  /** Set right after `created` is written. */
  watcher: Watcher | undefined;
  prevKv: boolean;
  fragment: boolean;
  progressNotify: boolean;
  /** Events went out since the last progress tick (then no notification is due). */
  active: boolean;
}

type Call = ServerDuplexStream<pb.WatchRequest | DecodeFailure, pb.WatchResponse>;

const BASE: pb.WatchResponse = {
  header: undefined,
  watchId: 0n,
  created: false,
  canceled: false,
  compactRevision: 0n,
  cancelReason: '',
  fragment: false,
  events: [],
};

/** Bytes a repeated message field adds: tag, length prefix, body. */
const fieldBytes = (n: number): number => 1 + (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4) + n;

/** etcd's fragmenting: parts of at most `limit` bytes (a part holds at least one event). */
export function fragments(res: pb.WatchResponse, limit: number): pb.WatchResponse[] {
  if (res.events.length < 2) return [res];
  const eventBytes = res.events.map((e) => fieldBytes(Event.encode(e).finish().length));
  const base = pb.WatchResponse.encode({ ...res, events: [] }).finish().length + 2;
  if (eventBytes.reduce((a, b) => a + b, base) < limit) return [res];
  const parts: pb.WatchResponse[] = [];
  let start = 0;
  while (start < res.events.length) {
    let end = start + 1;
    let size = base + eventBytes[start]!;
    while (end < res.events.length && size + eventBytes[end]! < limit) size += eventBytes[end++]!;
    parts.push({ ...res, events: res.events.slice(start, end), fragment: end < res.events.length });
    start = end;
  }
  return parts;
}

class WatchStream {
  private readonly entries = new Map<bigint, Entry>();
  private nextId = 0n;
  /** The gRPC write buffer is full: wait for 'drain'. */
  private blocked = false;
  /** Watchers the hub holds back until 'drain'. */
  private readonly held = new Set<Entry>();
  private closed = false;
  private ticker: NodeJS.Timeout | undefined;

  constructor(
    private readonly kv: KvStore,
    private readonly call: Call,
    private readonly options: WatchOptions,
  ) {
    call.on('data', (req: pb.WatchRequest | DecodeFailure) => this.onRequest(req));
    call.on('drain', () => this.onDrain());
    // A client that half-closes keeps its watchers (as etcd): the stream ends when the client cancels.
    call.on('end', () => {});
    for (const event of ['cancelled', 'error', 'close']) call.once(event, () => this.close());
    trackStream(options.streams, call);
  }

  private send(res: pb.WatchResponse): void {
    if (this.closed) return;
    if (!this.call.write(res) && !this.blocked) {
      this.blocked = true;
      // Stop reading requests too: control answers wait for room like everything else.
      this.call.pause();
    }
  }

  private onDrain(): void {
    this.blocked = false;
    this.call.resume();
    const held = [...this.held];
    this.held.clear();
    for (const e of held) if (this.entries.get(e.id) === e && e.watcher) this.kv.hub.resume(e.watcher);
  }

  private onRequest(req: pb.WatchRequest | DecodeFailure): void {
    if (this.closed) return;
    if (req instanceof DecodeFailure && req.code === status.PERMISSION_DENIED) {
      // A create request the caller may not make (auth interceptor): refused as etcd refuses it.
      this.refuse(`rpc error: code = PermissionDenied desc = ${req.message}`);
    } else if (req instanceof DecodeFailure) {
      this.call.emit('error', serviceError(req));
      this.close();
    } else if (req.createRequest) this.create(req.createRequest);
    else if (req.cancelRequest) this.cancel(req.cancelRequest.watchId);
    else if (req.progressRequest) this.progress();
    // An empty request is ignored, as etcd does.
  }

  /** The answer to a create request that makes no watcher. */
  private refuse(reason: string): void {
    this.send({ ...BASE, header: header(this.kv), watchId: -1n, created: true, canceled: true, cancelReason: reason });
  }

  private create(c: pb.WatchCreateRequest): void {
    const refuse = (reason: string) => this.refuse(reason);
    // An empty key is the smallest key, "\0" (etcd).
    const span = etcdSpan(c.key.length === 0 ? Buffer.of(0) : c.key, c.rangeEnd);
    if (c.startRevision < 0n) {
      refuse(ERR_COMPACTED);
      return;
    }
    if (isEmptySpan(span)) {
      refuse('mvcc: watcher range is empty');
      return;
    }
    let id = c.watchId;
    if (id === 0n) {
      while (this.entries.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    } else if (this.entries.has(id)) {
      refuse('mvcc: duplicate watch ID provided on the WatchStream');
      return;
    }
    const entry: Entry = {
      id,
      watcher: undefined,
      prevKv: c.prevKv,
      fragment: c.fragment,
      progressNotify: c.progressNotify,
      active: false,
    };
    this.entries.set(id, entry);
    this.send({ ...BASE, header: header(this.kv), watchId: id, created: true });
    const watcher = this.kv.watch(
      {
        span,
        startRev: safeNumber(c.startRevision),
        noPut: c.filters.includes(pb.WatchCreateRequest_FilterType.NOPUT),
        noDelete: c.filters.includes(pb.WatchCreateRequest_FilterType.NODELETE),
      },
      {
        deliver: (events) => this.deliver(entry, events),
        compacted: (rev) => this.compacted(entry, rev),
        failed: (err) => this.failed(entry, err),
      },
    );
    // A compacted start revision ended it already, inside watch().
    if (this.entries.get(id) === entry) entry.watcher = watcher;
    if (c.progressNotify) this.startTicker();
  }

  private deliver(entry: Entry, events: KvEvent[]): boolean {
    if (this.entries.get(entry.id) !== entry || this.closed) return false;
    const last = events[events.length - 1]!.kv.modRev;
    const res: pb.WatchResponse = {
      ...BASE,
      header: header(this.kv, last),
      watchId: entry.id,
      events: events.map((e) => watchEvent(e, entry.prevKv)),
    };
    if (entry.fragment) for (const part of fragments(res, this.options.fragmentBytes)) this.send(part);
    else this.send(res);
    entry.active = true;
    if (!this.blocked) return true;
    this.held.add(entry);
    return false;
  }

  /** The history the watcher needs is gone: etcd cancels it with the compaction revision and a header revision of 0. */
  private compacted(entry: Entry, compactRev: number): void {
    if (!this.end(entry)) return;
    this.send({
      ...BASE,
      header: { ...header(this.kv), revision: 0n },
      watchId: entry.id,
      canceled: true,
      compactRevision: BigInt(compactRev),
    });
  }

  private failed(entry: Entry, err: StoreError): void {
    if (!this.end(entry)) return;
    this.send({ ...BASE, header: header(this.kv), watchId: entry.id, canceled: true, cancelReason: err.message });
  }

  /** Forgets a watcher; false if it was not (or no longer) this stream's. */
  private end(entry: Entry): boolean {
    if (this.entries.get(entry.id) !== entry) return false;
    this.entries.delete(entry.id);
    this.held.delete(entry);
    if (entry.watcher) this.kv.unwatch(entry.watcher);
    return true;
  }

  private cancel(id: bigint): void {
    const entry = this.entries.get(id);
    // An unknown id gets no answer at all (etcd).
    if (!entry || !this.end(entry)) return;
    this.send({ ...BASE, header: header(this.kv), watchId: id, canceled: true });
  }

  /**
   * A progress request: one response for the whole stream (watch_id -1). Its revision is one every
   * watcher has been sent all events up to, so it is never ahead of a watcher still catching up.
   */
  private progress(): void {
    let rev = this.kv.status().rev;
    for (const e of this.entries.values()) if (e.watcher) rev = Math.min(rev, e.watcher.nextRev - 1);
    this.send({ ...BASE, header: header(this.kv, rev), watchId: -1n });
  }

  private startTicker(): void {
    if (this.ticker) return;
    this.ticker = setInterval(() => this.tick(), this.options.progressNotifyIntervalMs);
    this.ticker.unref();
  }

  /** Periodic progress: to each idle, caught-up watcher that asked, with the current revision. */
  private tick(): void {
    if (this.blocked) return;
    for (const e of this.entries.values()) {
      if (!e.progressNotify || !e.watcher) continue;
      if (e.active) e.active = false;
      else if (e.watcher.state === 'live') this.send({ ...BASE, header: header(this.kv), watchId: e.id });
    }
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    for (const e of this.entries.values()) if (e.watcher) this.kv.unwatch(e.watcher);
    this.entries.clear();
    this.held.clear();
  }
}

export function etcdWatchService(kv: KvStore, options: WatchOptions): UntypedServiceImplementation {
  return {
    watch: (call: Call) => {
      new WatchStream(kv, call, options);
    },
  };
}
