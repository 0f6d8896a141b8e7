/**
 * The tests' TCP proxy (test/helpers/tcp-proxy.ts), against a real echo server, a sink and a real
 * buffdb server: forwarding and counters, cut, the silent dead link, latency and throttling.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import { connect } from '../src/client/network.js';
import { bidi, eventually, startTestServer, type TestServer } from './helpers/server.js';
import { startProxy, type TcpProxy } from './helpers/tcp-proxy.js';

/** Resolves with the event's arguments, or rejects after `deadlineMs`. */
async function event(emitter: NodeJS.EventEmitter, name: string, deadlineMs = 3000): Promise<unknown[]> {
  return await once(emitter, name, { signal: AbortSignal.timeout(deadlineMs) }).catch((err: Error) => {
    throw new Error(`no '${name}' within ${deadlineMs} ms (${err.name})`);
  });
}

/** A bounded wait for something that must NOT happen: true if `promise` settled within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const quiet = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const settled = promise.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, quiet]);
  } finally {
    clearTimeout(timer);
  }
}

/** `promise`, or a rejection naming `what` after `deadlineMs`. */
async function within<T>(promise: Promise<T>, deadlineMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${deadlineMs} ms`)), deadlineMs);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await event(server, 'listening');
  return (server.address() as { port: number }).port;
}

/** A client socket that collects what it reads. */
interface Peer {
  socket: Socket;
  received(): Buffer;
  /** Resolves once `n` bytes have arrived in all; rejects on close or after `deadlineMs`. */
  read(n: number, deadlineMs?: number): Promise<Buffer>;
  closed: Promise<void>;
}

async function open(port: number): Promise<Peer> {
  const socket = tcpConnect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  let size = 0;
  let wake = (): void => {};
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    wake();
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  void closed.then(() => wake());
  await event(socket, 'connect');
  const received = (): Buffer => Buffer.concat(chunks);
  const read = async (n: number, deadlineMs = 5000): Promise<Buffer> => {
    const end = performance.now() + deadlineMs;
    while (size < n) {
      if (socket.destroyed) throw new Error(`closed after ${size} of ${n} bytes`);
      const left = end - performance.now();
      if (left <= 0) throw new Error(`only ${size} of ${n} bytes within ${deadlineMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return received();
  };
  return { socket, received, read, closed };
}

/** Opens a connection to an echo server (through the proxy) and makes one round trip of `text` over it. */
async function openEchoing(port: number, text: string): Promise<Peer> {
  const peer = await open(port);
  peer.socket.write(text);
  assert.equal((await peer.read(text.length)).toString(), text);
  return peer;
}

describe('tcp proxy over an echo server', () => {
  let echo: Server;
  let sink: Server;
  let echoPort: number;
  let sinkPort: number;
  before(async () => {
    echo = createServer((s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    sink = createServer((s) => {
      s.on('error', () => {});
      s.resume();
    });
    echoPort = await listen(echo);
    sinkPort = await listen(sink);
  });
  after(async () => {
    echo.close();
    sink.close();
  });

  const withProxy = (port: () => number, body: (proxy: TcpProxy) => Promise<void>) => async (): Promise<void> => {
    const proxy = await startProxy({ host: '127.0.0.1', port: port() });
    try {
      await body(proxy);
    } finally {
      await proxy.close();
    }
  };

  it(
    'forwards bytes both ways and counts them',
    withProxy(
      () => echoPort,
      async (proxy) => {
        assert.equal(proxy.address, `127.0.0.1:${proxy.port}`);
        const peer = await open(proxy.port);
        const data = Buffer.alloc(10_240, 'abc');
        peer.socket.write(data);
        assert.deepEqual(await peer.read(data.length), data);
        assert.deepEqual(proxy.bytes, { up: data.length, down: data.length });
        assert.equal(proxy.connections, 1);
        peer.socket.end();
        await event(peer.socket, 'close');
      },
    ),
  );

  it(
    'cut() ends open connections and still accepts new ones',
    withProxy(
      () => echoPort,
      async (proxy) => {
        const first = await openEchoing(proxy.port, 'ping');
        proxy.cut();
        await event(first.socket, 'close');
        const second = await openEchoing(proxy.port, 'pong');
        assert.equal(proxy.connections, 2);
        second.socket.destroy();
      },
    ),
  );

  it(
    'block() holds open connections silently and refuses new ones; unblock() cuts the held ones',
    withProxy(
      () => echoPort,
      async (proxy) => {
        const held = await openEchoing(proxy.port, 'a');
        proxy.block();
        held.socket.write('b');
        // A bounded wait for a non-event: nothing comes back and the connection stays open.
        assert.equal(await settlesWithin(held.read(2, 400), 300), false, 'bytes crossed a blocked link');
        assert.equal(held.socket.destroyed, false);
        const refused = tcpConnect({ host: '127.0.0.1', port: proxy.port });
        refused.on('error', () => {});
        await event(refused, 'close');
        assert.equal(proxy.connections, 2);
        proxy.unblock();
        await event(held.socket, 'close');
        assert.equal(held.received().toString(), 'a');
        const fresh = await openEchoing(proxy.port, 'c');
        fresh.socket.destroy();
      },
    ),
  );

  it(
    'setDelay(200) makes a round trip take at least 400 ms',
    withProxy(
      () => echoPort,
      async (proxy) => {
        const peer = await open(proxy.port);
        proxy.setDelay(200);
        const start = performance.now();
        peer.socket.write('x');
        await peer.read(1);
        const took = performance.now() - start;
        assert.ok(took >= 400, `round trip took ${took.toFixed(0)} ms`);
        peer.socket.destroy();
      },
    ),
  );

  it(
    'setRate(125_000) makes 250 KB take at least about 1.5 s',
    withProxy(
      () => echoPort,
      async (proxy) => {
        proxy.setRate(125_000);
        const peer = await open(proxy.port);
        const data = Buffer.alloc(250_000, 'xyz');
        const start = performance.now();
        peer.socket.write(data);
        assert.deepEqual(await peer.read(data.length, 8000), data);
        const took = performance.now() - start;
        assert.ok(took >= 1500, `250 KB took ${took.toFixed(0)} ms`);
        peer.socket.destroy();
      },
    ),
  );

  it(
    'a throttled direction stops reading instead of buffering what the sender writes',
    withProxy(
      () => sinkPort,
      async (proxy) => {
        proxy.setRate(125_000);
        const peer = await open(proxy.port);
        const data = Buffer.alloc(8 * 1024 * 1024, 'q');
        assert.equal(peer.socket.write(data), false);
        await eventually(() => proxy.bytes.up >= 60_000, 'throttled bytes reached the sink', 5000);
        // Unthrottled reading would have taken in all 8 MiB at loopback speed by now.
        assert.ok(proxy.held <= 512 * 1024, `proxy holds ${proxy.held} bytes`);
        assert.ok(peer.socket.writableLength > 4 * 1024 * 1024, `sender still holds ${peer.socket.writableLength}`);
        peer.socket.destroy();
      },
    ),
  );
});

describe('tcp proxy in front of a buffdb server', () => {
  let srv: TestServer;
  let proxy: TcpProxy;
  before(async () => {
    srv = await startTestServer();
    const port = Number(srv.addr.slice(srv.addr.lastIndexOf(':') + 1));
    proxy = await startProxy({ host: '127.0.0.1', port });
  });
  after(async () => {
    await proxy.close();
    await srv.dispose();
  });

  const get = (client: ReturnType<typeof connect>, key: string) => bidi(client.kv.get(), [{ key }]);
  /** Runs `body` with a client of its own (a channel, so a connection of its own) through the proxy. */
  const viaProxy = async (body: (client: ReturnType<typeof connect>) => Promise<void>): Promise<void> => {
    const client = connect(proxy.address);
    try {
      await body(client);
    } finally {
      client.close();
    }
  };
  const newConnectionReads = () =>
    viaProxy(async (client) => assert.equal((await get(client, 'via-proxy')).out[0]?.value, 'v1'));

  it('Kv Set and Get pass through and are counted; cut() fails the open call; a new one works', async () => {
    await viaProxy(async (client) => {
      const set = await bidi(client.kv.set(), [{ key: 'via-proxy', value: 'v1' }]);
      assert.equal(set.err, undefined);
      const got = await get(client, 'via-proxy');
      assert.equal(got.err, undefined);
      assert.equal(got.out[0]?.value, 'v1');
      assert.ok(proxy.bytes.up > 0 && proxy.bytes.down > 0, JSON.stringify(proxy.bytes));
      // An open stream sees the cut as an error.
      const call = client.kv.get();
      call.write({ key: 'via-proxy' });
      await event(call, 'data');
      const failed = event(call, 'error');
      proxy.cut();
      const [err] = (await failed) as [ServiceError];
      assert.ok(err.code > 0, `status ${err.code}`);
    });
    await newConnectionReads();
  });

  it('block() makes a request hang; unblock() ends it and lets a new connection through', async () => {
    await viaProxy(async (client) => {
      assert.equal((await get(client, 'via-proxy')).err, undefined);
      proxy.block();
      const hanging = get(client, 'via-proxy');
      // A bounded wait for a non-event: the request must not complete over a dead link.
      assert.equal(await settlesWithin(hanging, 500), false, 'a request completed over a blocked link');
      proxy.unblock();
      const ended = await within(hanging, 5000, 'the held call ends once unblock() cuts its connection');
      assert.ok(ended.err, 'the held call ended with an error');
    });
    await newConnectionReads();
  });

  it('over a blocked link only a keepalive notices: the call fails UNAVAILABLE while still blocked', async () => {
    const keepalive = { 'grpc.keepalive_time_ms': 300, 'grpc.keepalive_timeout_ms': 300 };
    const client = connect(proxy.address, { clientOptions: keepalive });
    try {
      assert.equal((await get(client, 'via-proxy')).err, undefined);
      proxy.block();
      const res = await within(get(client, 'via-proxy'), 5000, 'keepalive notices the dead link');
      assert.equal(res.err?.code, status.UNAVAILABLE, res.err?.message);
      assert.ok(proxy.open > 0, 'the proxy still held the connection open when the client gave up');
    } finally {
      proxy.unblock();
      client.close();
    }
  });

  it('setDelay(200) makes a Kv Get take at least 400 ms', async () => {
    try {
      await viaProxy(async (client) => {
        assert.equal((await get(client, 'via-proxy')).err, undefined);
        proxy.setDelay(200);
        const start = performance.now();
        const got = await get(client, 'via-proxy');
        const took = performance.now() - start;
        assert.equal(got.out[0]?.value, 'v1');
        assert.ok(took >= 400, `Get took ${took.toFixed(0)} ms`);
      });
    } finally {
      proxy.setDelay(0);
    }
  });
});
