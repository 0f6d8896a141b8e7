/**
 * Wider HTTP/2 receive windows for connections that carry large messages, while the memory budget
 * can afford them (issue #12).
 *
 * Why: with HTTP/2's default 64 KiB stream window, while the event loop writes one blob into the
 * store a client can send only 64 KiB of the next; the rest then trickles in one WINDOW_UPDATE at a
 * time. With a 1 MiB window the next blob arrives while the last is written (docs/performance.md,
 * "HTTP/2 windows"). Messages of at most 64 KiB gain nothing from it.
 *
 * What it costs: Node consumes the connection window as it reads the socket, but a stream's window
 * only as its handler reads (read-gate.ts stops reading while the budget is full). So each open
 * stream can hold up to its window of data not yet read, outside the calls' own counts. A
 * connection's window is per stream and the same for all its streams, so it is widened only when
 * the budget holds the extra (1 MiB − 64 KiB) for every stream open on it — all windows together at
 * most a quarter of the budget, one connection at most the per-call cap, never while calls wait for
 * room — and each stream opened on it later holds its own or sends the connection back to 64 KiB.
 * Room is given back as streams close; the connection narrows when no open stream on it has carried
 * a large message. (Streams a client opens before it has applied a narrowing overshoot by one
 * window each, as they did by 64 KiB before.)
 *
 * grpc-js (1.14) sets no server receive window (its `grpc-node.flow_control_window` is for clients)
 * and keeps its HTTP/2 servers in a private `http2Servers` map, read here. If a later grpc-js
 * renames it, `widenWindows` reports false, connections keep the 64 KiB default, and
 * test/flow-window.test.ts fails.
 */
import type { EventEmitter } from 'node:events';
import type { Http2Session, ServerHttp2Stream } from 'node:http2';
import type { Server } from '@grpc/grpc-js';
import type { CallBudget, MemoryBudget } from './memory-budget.js';

/** HTTP/2's default stream and connection window (RFC 9113, 6.9.2). */
export const DEFAULT_WINDOW = 65_535;
/** A wide connection's window per stream: one 1 MiB blob plus its framing. */
export const WIDE_STREAM_WINDOW = 1024 * 1024 + 1024;
/** A wide connection's own window: two streams' worth, so one stream cannot starve another. */
export const WIDE_CONNECTION_WINDOW = 2 * WIDE_STREAM_WINDOW;
/** What a stream on a wide connection may hold beyond what the default window would let it. */
const EXTRA_PER_STREAM = WIDE_STREAM_WINDOW - DEFAULT_WINDOW;

/** The budget's room lent to wide windows, shared by every connection of every listener. */
export class WindowShare {
  /** The most all wide windows may hold together: a quarter of the budget. */
  readonly limit: number;
  private heldBytes = 0;

  constructor(readonly budget: MemoryBudget) {
    this.limit = Math.floor(budget.limit / 4);
  }

  /** Bytes held for wide windows now. */
  get held(): number {
    return this.heldBytes;
  }

  /** @internal Holds `streams` streams' extra window in `connection`'s share, all or none. */
  tryHold(connection: CallBudget, streams: number): boolean {
    const bytes = streams * EXTRA_PER_STREAM;
    if (this.heldBytes + bytes > this.limit) return false;
    if (!connection.tryAcquire(bytes)) return false;
    this.heldBytes += bytes;
    return true;
  }

  /** @internal Gives back one stream's extra window. */
  release(connection: CallBudget): void {
    this.heldBytes -= EXTRA_PER_STREAM;
    connection.release(EXTRA_PER_STREAM);
  }
}

/**
 * Calls `large` for every gRPC message on `stream` whose length prefix says it is larger than the
 * default window (gRPC framing: 1 flag byte, 4 length bytes, the message). Reads the bytes as Node
 * pushes them into the stream, without taking them, so grpc-js's reading is unchanged.
 */
function watchMessageSizes(stream: ServerHttp2Stream, large: () => void): void {
  const push = stream.push;
  let body = 0; // bytes of the current message not yet seen
  let prefixSeen = 0;
  let length = 0;
  stream.push = function (this: ServerHttp2Stream, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk instanceof Uint8Array) {
      for (let i = 0; i < chunk.length; ) {
        if (body > 0) {
          const n = Math.min(body, chunk.length - i);
          body -= n;
          i += n;
          continue;
        }
        if (prefixSeen > 0) length = length * 256 + chunk[i]!; // bytes 1–4: big-endian length
        i++;
        if (++prefixSeen < 5) continue;
        prefixSeen = 0;
        body = length;
        if (length > DEFAULT_WINDOW) large();
        length = 0;
      }
    }
    return push.call(this, chunk, encoding);
  };
}

/**
 * One HTTP/2 connection's stream window: 64 KiB, and 1 MiB while one of its streams carries
 * messages larger than that and the budget holds room for every stream open on it.
 */
class ConnectionWindow {
  private wide = false;
  /** Open streams whose extra window is not held in the budget (the others' is). */
  private readonly unheld = new Set<ServerHttp2Stream>();
  private largeStreams = 0;
  private readonly room: CallBudget;

  constructor(
    private readonly session: Http2Session,
    private readonly share: WindowShare,
  ) {
    this.room = share.budget.open();
    session.on('stream', this.opened);
    session.once('close', () => this.room.close());
  }

  private readonly opened = (stream: ServerHttp2Stream): void => {
    if (!this.wide || !this.share.tryHold(this.room, 1)) {
      this.unheld.add(stream);
      this.narrow();
    }
    let large = false; // it has carried a message larger than the default window
    watchMessageSizes(stream, () => {
      if (!large) {
        large = true;
        this.largeStreams++;
      }
      this.widen();
    });
    stream.once('close', () => {
      if (!this.unheld.delete(stream)) this.share.release(this.room);
      if (large && --this.largeStreams === 0) this.narrow();
    });
  };

  /** Widens the window if every open stream's extra room can be held (all of them see it). */
  private widen(): void {
    if (this.wide || this.session.destroyed || this.session.closed) return;
    // One change at a time: a widening waits for the acknowledgement of the last narrowing.
    if (this.session.pendingSettingsAck) return;
    if (this.unheld.size > 0 && !this.share.tryHold(this.room, this.unheld.size)) return;
    this.unheld.clear();
    // The connection window is widened too (one stream could not use its own otherwise). It needs
    // no room of its own: Node takes it back as it reads the socket, into the streams' windows.
    this.session.setLocalWindowSize(WIDE_CONNECTION_WINDOW);
    this.session.settings({ initialWindowSize: WIDE_STREAM_WINDOW });
    this.wide = true;
  }

  /** Back to the default window; streams keep their room held until they close. */
  private narrow(): void {
    if (!this.wide) return;
    this.wide = false;
    if (this.session.destroyed || this.session.closed) return;
    // Shrinking the connection window withholds WINDOW_UPDATEs until the client has used up what it
    // was given: left wide, it let floods of small requests in 2 MiB at a time (measured: the
    // 64-stream Kv row's peak RSS rose from 140–152 to 196–208 MiB).
    this.session.setLocalWindowSize(DEFAULT_WINDOW);
    this.session.settings({ initialWindowSize: DEFAULT_WINDOW });
  }
}

/**
 * Gives every HTTP/2 connection of `server` (bound already) a wide window while it carries large
 * messages and `share` affords it. Returns false, changing nothing, when grpc-js does not expose
 * its HTTP/2 servers.
 */
export function widenWindows(server: Server, share: WindowShare): boolean {
  const http2Servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(http2Servers instanceof Map) || http2Servers.size === 0) return false;
  for (const h2 of http2Servers.keys() as Iterable<EventEmitter>) {
    h2.on('session', (session: Http2Session) => new ConnectionWindow(session, share));
  }
  return true;
}
