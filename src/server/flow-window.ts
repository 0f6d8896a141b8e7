/**
 * Wider HTTP/2 receive windows for the connections the memory budget can afford (issue #12).
 *
 * Why: with HTTP/2's default 64 KiB stream window, while the event loop writes one blob into the
 * store a client can send only 64 KiB of the next; the rest then trickles in one WINDOW_UPDATE at a
 * time. With a 1 MiB window the next blob arrives while the last is written: Blob Store 1 MiB went
 * from 0.74–0.77x to 1.03–1.05x the bare echo (docs/performance.md, "HTTP/2 windows").
 *
 * What it costs: Node consumes the connection window as it reads the socket, but a stream's window
 * only as its handler reads (read-gate.ts stops reading while the budget is full). So each open
 * stream can hold up to its window of data not yet read, outside the calls' own counts. That room
 * is held in the budget: a stream opened on a wide connection holds WIDE − 64 KiB until it closes.
 * When that does not fit (a quarter of the budget at most for all windows, the stream cap per
 * connection, and never while calls wait for room), the connection goes back to the 64 KiB window
 * for all its streams; it is widened again only once none of its open streams is without room held.
 * (Streams the client opens before it has applied a narrower window can overshoot by one window
 * each; the budget then catches up as they close.)
 *
 * grpc-js (1.14) sets no server receive window (its `grpc-node.flow_control_window` is for clients)
 * and keeps its HTTP/2 servers in a private `http2Servers` map, read here. If a later grpc-js
 * renames it, `widenWindows` reports false, connections keep the 64 KiB default, and the test of
 * this module fails (test/flow-window.test.ts).
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

  /** @internal Holds one stream's extra window in `connection`'s share, if it fits. */
  tryHold(connection: CallBudget): boolean {
    if (this.heldBytes + EXTRA_PER_STREAM > this.limit) return false;
    if (!connection.tryAcquire(EXTRA_PER_STREAM)) return false;
    this.heldBytes += EXTRA_PER_STREAM;
    return true;
  }

  /** @internal */
  release(connection: CallBudget): void {
    this.heldBytes -= EXTRA_PER_STREAM;
    connection.release(EXTRA_PER_STREAM);
  }
}

/** One HTTP/2 connection's window: wide while every open stream on it has its room held. */
class ConnectionWindow {
  private wide = false;
  /** Open streams with no room held (opened while the connection was narrow). */
  private unheld = 0;
  private readonly room: CallBudget;

  constructor(
    private readonly session: Http2Session,
    private readonly share: WindowShare,
  ) {
    this.room = share.budget.open();
    session.on('stream', this.opened);
    session.once('close', () => this.room.close());
    // A connection window only paces the socket (Node consumes it as it reads): no room to hold.
    session.setLocalWindowSize(WIDE_CONNECTION_WINDOW);
    // Sent right behind the server's first SETTINGS (still unacknowledged, hence not setWide).
    session.settings({ initialWindowSize: WIDE_STREAM_WINDOW });
    this.wide = true;
  }

  private readonly opened = (stream: ServerHttp2Stream): void => {
    if (this.unheld === 0 && this.share.tryHold(this.room)) {
      if (!this.wide) this.setWide(true);
      stream.once('close', () => this.share.release(this.room));
      return;
    }
    if (this.wide) this.setWide(false);
    this.unheld++;
    stream.once('close', () => this.unheld--);
  };

  private setWide(wide: boolean): void {
    if (this.session.destroyed || this.session.closed) return;
    // Widening waits for the last change's acknowledgement, so changes never pile up unacknowledged.
    if (wide && this.session.pendingSettingsAck) return;
    this.session.settings({ initialWindowSize: wide ? WIDE_STREAM_WINDOW : DEFAULT_WINDOW });
    this.wide = wide;
  }
}

/**
 * Gives every HTTP/2 connection of `server` (bound already) a wide window while `share` affords
 * it. Returns false, changing nothing, when grpc-js does not expose its HTTP/2 servers.
 */
export function widenWindows(server: Server, share: WindowShare): boolean {
  const http2Servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(http2Servers instanceof Map) || http2Servers.size === 0) return false;
  for (const h2 of http2Servers.keys() as Iterable<EventEmitter>) {
    h2.on('session', (session: Http2Session) => new ConnectionWindow(session, share));
  }
  return true;
}
