/**
 * Wide HTTP/2 windows (src/server/flow-window.ts): what a real HTTP/2 client connected to a real
 * server is told it may send, for which traffic, and what the memory budget holds for it.
 */
import assert from 'node:assert/strict';
import { type ClientHttp2Session, type ClientHttp2Stream, connect } from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { StoreRequest } from '../src/generated/blob.js';
import { SetRequest } from '../src/generated/kv.js';
import { DEFAULT_WINDOW, WIDE_STREAM_WINDOW } from '../src/server/flow-window.js';
import { eventually, startTestServer, type TestServer } from './helpers/server.js';

const MiB = 1024 * 1024;
const EXTRA = WIDE_STREAM_WINDOW - DEFAULT_WINDOW;

/** One gRPC message on the wire: flag byte, big-endian length, the message. */
function frame(message: Uint8Array): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** A bidi call over a raw HTTP/2 stream; `answers` counts the response messages. */
class RawCall {
  readonly stream: ClientHttp2Stream;
  answers = 0;
  private pending = Buffer.alloc(0);

  constructor(session: ClientHttp2Session, path: string) {
    this.stream = session.request(
      { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' },
      { endStream: false },
    );
    this.stream.on('error', () => {}); // cancelled at the end of a test
    this.stream.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 5 && this.pending.length >= 5 + this.pending.readUInt32BE(1)) {
        this.pending = this.pending.subarray(5 + this.pending.readUInt32BE(1));
        this.answers++;
      }
    });
  }

  send(message: Uint8Array): void {
    this.stream.write(frame(message));
  }

  close(): void {
    this.stream.close();
  }
}

const blobStore = (session: ClientHttp2Session) => new RawCall(session, '/buffdb.blob.Blob/Store');
const kvSet = (session: ClientHttp2Session) => new RawCall(session, '/buffdb.kv.Kv/Set');
const oneMiBBlob = () => StoreRequest.encode({ bytes: Buffer.alloc(MiB, 7) }).finish();

/** A client connection, once the server's settings have arrived. */
async function open(addr: string): Promise<ClientHttp2Session> {
  const session = connect(`http://${addr}`);
  await new Promise((resolve, reject) => {
    session.once('remoteSettings', resolve);
    session.once('error', reject);
  });
  return session;
}

const streamWindow = (session: ClientHttp2Session) => session.remoteSettings.initialWindowSize;

describe('HTTP/2 windows', () => {
  let srv: TestServer;
  before(async () => {
    // 8 MiB: a quarter (2 MiB) for windows, so two streams can be wide at once.
    srv = await startTestServer({ serve: { memoryBudget: 8 * MiB } });
  });
  after(() => srv.dispose());

  it('small messages keep the default 64 KiB windows', async () => {
    const session = await open(srv.addr);
    try {
      const call = kvSet(session);
      for (let i = 0; i < 500; i++) call.send(SetRequest.encode({ key: `k${i}`, value: 'v'.repeat(100) }).finish());
      await eventually(() => call.answers === 500, 'all 500 Sets answered');
      assert.equal(streamWindow(session), DEFAULT_WINDOW);
      assert.ok(session.state.remoteWindowSize! <= DEFAULT_WINDOW, 'the connection window is the default');
      assert.equal(srv.running.windowShare.held, 0, 'no room held for windows');
      call.close();
    } finally {
      session.destroy();
    }
  });

  it('1 MiB messages widen the connection to 1 MiB per stream, with room held for each open stream until it closes', async () => {
    const session = await open(srv.addr);
    const { windowShare, memoryBudget } = srv.running;
    try {
      const idle = kvSet(session);
      const blobs = blobStore(session);
      blobs.send(oneMiBBlob());
      await eventually(() => blobs.answers === 1, 'the blob is stored');
      await eventually(() => streamWindow(session) === WIDE_STREAM_WINDOW, 'the stream window is widened');
      await eventually(
        () => session.state.remoteWindowSize! > DEFAULT_WINDOW,
        'the connection window is widened past the default',
      );
      assert.equal(windowShare.held, 2 * EXTRA, 'room held for both open streams, the idle one too');
      assert.ok(memoryBudget.used >= 2 * EXTRA, `the budget counts it (used ${memoryBudget.used})`);
      blobs.send(oneMiBBlob());
      await eventually(() => blobs.answers === 2, 'the next blob is stored over the wide window');
      blobs.close();
      await eventually(
        () => streamWindow(session) === DEFAULT_WINDOW,
        'no stream carries large messages any more: back to 64 KiB',
      );
      await eventually(() => windowShare.held === EXTRA, "the closed stream's room is given back");
      idle.close();
      await eventually(() => windowShare.held === 0, 'all room given back');
    } finally {
      session.destroy();
    }
    await eventually(() => memoryBudget.used === 0, 'nothing is left held in the budget');
  });

  it('the share is across connections: one it cannot cover stays at 64 KiB, and a stream past it narrows a wide one', async () => {
    const first = await open(srv.addr);
    const second = await open(srv.addr);
    const { windowShare } = srv.running;
    try {
      kvSet(first);
      const a = blobStore(first);
      a.send(oneMiBBlob());
      await eventually(() => streamWindow(first) === WIDE_STREAM_WINDOW, 'the first connection is widened');
      assert.equal(windowShare.held, 2 * EXTRA, 'it holds the whole share: two streams');

      const b = blobStore(second);
      b.send(oneMiBBlob());
      await eventually(() => b.answers === 1, "the second connection's blob is stored");
      assert.equal(streamWindow(second), DEFAULT_WINDOW, 'the second connection stays at 64 KiB');
      assert.equal(windowShare.held, 2 * EXTRA, 'and holds nothing');

      kvSet(first);
      await eventually(
        () => streamWindow(first) === DEFAULT_WINDOW,
        'a third stream on the first connection does not fit: back to 64 KiB',
      );
      assert.equal(windowShare.held, 2 * EXTRA, 'the third stream holds nothing');
    } finally {
      first.destroy();
      second.destroy();
    }
    await eventually(() => windowShare.held === 0, 'closed connections give their room back');
  });
});
