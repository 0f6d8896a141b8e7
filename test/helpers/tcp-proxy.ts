/**
 * A TCP proxy of the tests' own, for partitions between a client and a server (edge ⇄ hub sync):
 * cut every connection, hold a silent dead link, add one-way latency, throttle. Throttling and
 * latency hold back reading (the source socket is paused) instead of buffering without bound.
 */

import { createConnection, createServer, type Socket } from 'node:net';

export interface ProxyTarget {
  host: string;
  port: number;
}

export interface TcpProxy {
  /** The loopback port the proxy listens on. */
  readonly port: number;
  /** '127.0.0.1:PORT', to give a client instead of the target's address. */
  readonly address: string;
  /** Bytes forwarded: up = client → target, down = target → client. */
  readonly bytes: { up: number; down: number };
  /** Connections accepted (including those destroyed at once while blocked). */
  readonly connections: number;
  /** Connections open now. */
  readonly open: number;
  /** Bytes read but not yet forwarded (delayed or throttled), over every connection. */
  readonly held: number;
  /** Destroys every open connection now; new ones are still accepted. */
  cut(): void;
  /**
   * A silent dead link: new connections are accepted and destroyed at once; open ones are held
   * open but forward nothing (bytes are read and dropped, closes are not passed on), so each side
   * can only notice through its keepalive.
   */
  block(): void;
  /** Ends the dead link: the connections held through it are cut; new ones are forwarded again. */
  unblock(): void;
  /** One-way latency added to each direction (order is kept); 0 for none. */
  setDelay(ms: number): void;
  /** Throttles each direction to this many bytes per second; undefined for no limit. */
  setRate(bytesPerSecond: number | undefined): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

/** Bytes a direction holds before it pauses its source, and below which it resumes it. */
const HIGH_WATER = 256 * 1024;
const LOW_WATER = 64 * 1024;
/** Under a rate limit, writes are sliced to this many milliseconds' worth of bytes. */
const SLICE_MS = 20;

interface Settings {
  blocked: boolean;
  delayMs: number;
  rate: number | undefined;
}

/** One direction of one connection: reads `src`, writes `dst` after the delay and within the rate. */
class Direction {
  private queue: { chunk: Buffer; at: number }[] = [];
  queued = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingDrain = false;
  private nextFree = 0;
  /** `src` ended cleanly (FIN): `dst` is ended once the queue is written. */
  ended = false;
  /** Everything `src` sent has been written and `dst` ended. */
  finished = false;

  constructor(
    private readonly settings: Settings,
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly count: (n: number) => void,
  ) {
    src.on('data', (chunk: Buffer) => this.push(chunk));
    src.on('end', () => {
      if (this.settings.blocked) return;
      this.ended = true;
      this.pump();
    });
  }

  private push(chunk: Buffer): void {
    if (this.settings.blocked) return;
    this.queue.push({ chunk, at: performance.now() + this.settings.delayMs });
    this.queued += chunk.length;
    if (this.queued >= HIGH_WATER) this.src.pause();
    this.pump();
  }

  /** Drops whatever is queued (the link went dead) and keeps reading. */
  drop(): void {
    this.queue = [];
    this.queued = 0;
    this.stop();
    this.src.resume();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private pump(): void {
    if (this.timer || this.waitingDrain || this.finished || this.dst.destroyed) return;
    const { rate } = this.settings;
    while (this.queue.length > 0) {
      const now = performance.now();
      const head = this.queue[0]!;
      const wait = Math.max(head.at - now, rate ? this.nextFree - now : 0);
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, Math.ceil(wait));
        return;
      }
      let piece = head.chunk;
      const max = rate ? Math.max(1, Math.floor((rate * SLICE_MS) / 1000)) : Number.POSITIVE_INFINITY;
      if (piece.length > max) {
        piece = piece.subarray(0, max);
        head.chunk = head.chunk.subarray(max);
      } else {
        this.queue.shift();
      }
      if (rate) this.nextFree = Math.max(this.nextFree, now) + (piece.length * 1000) / rate;
      this.queued -= piece.length;
      this.count(piece.length);
      const flushed = this.dst.write(piece);
      if (this.queued < LOW_WATER && this.src.isPaused()) this.src.resume();
      if (!flushed) {
        this.waitingDrain = true;
        this.dst.once('drain', () => {
          this.waitingDrain = false;
          this.pump();
        });
        return;
      }
    }
    if (this.ended) {
      this.finished = true;
      this.dst.end();
    }
  }
}

class Connection {
  readonly up: Direction;
  readonly down: Direction;

  constructor(
    private readonly settings: Settings,
    readonly client: Socket,
    readonly upstream: Socket,
    bytes: { up: number; down: number },
    onGone: () => void,
  ) {
    this.up = new Direction(settings, client, upstream, (n) => {
      bytes.up += n;
    });
    this.down = new Direction(settings, upstream, client, (n) => {
      bytes.down += n;
    });
    let closed = 0;
    // `toward` writes to the socket that closed, `away` reads from it and writes to `to`.
    const onClose = (to: Socket, toward: Direction, away: Direction) => (): void => {
      if (++closed === 2) {
        this.up.stop();
        this.down.stop();
        onGone();
      }
      // While blocked a close is not passed on: unblock() cuts whatever is left.
      if (this.settings.blocked) return;
      // An abrupt close (no FIN), or one with bytes still owed to it, is passed on as abrupt; after
      // a clean one `away` ends `to` once its queue is written.
      if (!away.ended || !toward.finished) to.destroy();
    };
    client.on('close', onClose(upstream, this.down, this.up));
    upstream.on('close', onClose(client, this.up, this.down));
    client.on('error', () => {});
    upstream.on('error', () => {});
  }

  destroy(): void {
    this.up.stop();
    this.down.stop();
    this.client.destroy();
    this.upstream.destroy();
  }
}

/** Starts a proxy on 127.0.0.1 (an ephemeral port) forwarding each connection to `target`. */
export async function startProxy(target: ProxyTarget): Promise<TcpProxy> {
  const settings: Settings = { blocked: false, delayMs: 0, rate: undefined };
  const bytes = { up: 0, down: 0 };
  const open = new Set<Connection>();
  let connections = 0;

  const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    connections++;
    if (settings.blocked) {
      client.on('error', () => {});
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    const conn = new Connection(settings, client, upstream, bytes, () => open.delete(conn));
    open.add(conn);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as { port: number };

  const cut = (): void => {
    for (const conn of [...open]) {
      conn.destroy();
      open.delete(conn);
    }
  };
  return {
    port,
    address: `127.0.0.1:${port}`,
    bytes,
    get connections() {
      return connections;
    },
    get open() {
      return open.size;
    },
    get held() {
      let sum = 0;
      for (const conn of open) sum += conn.up.queued + conn.down.queued;
      return sum;
    },
    cut,
    block: () => {
      settings.blocked = true;
      for (const conn of open) {
        conn.up.drop();
        conn.down.drop();
      }
    },
    unblock: () => {
      settings.blocked = false;
      cut();
    },
    setDelay: (ms) => {
      if (!(ms >= 0)) throw new RangeError(`delay must be >= 0 ms, got ${ms}`);
      settings.delayMs = ms;
    },
    setRate: (bytesPerSecond) => {
      if (bytesPerSecond !== undefined && !(bytesPerSecond > 0)) {
        throw new RangeError(`rate must be > 0 bytes per second, got ${bytesPerSecond}`);
      }
      settings.rate = bytesPerSecond;
    },
    close: () => {
      cut();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
