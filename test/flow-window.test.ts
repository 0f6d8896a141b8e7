/**
 * Wide HTTP/2 windows (src/server/flow-window.ts): what a real client connected to a real server
 * is told it may send, and what the memory budget holds for it.
 */
import assert from 'node:assert/strict';
import { type ClientHttp2Session, type ClientHttp2Stream, connect } from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_WINDOW, WIDE_CONNECTION_WINDOW, WIDE_STREAM_WINDOW } from '../src/server/flow-window.js';
import { eventually, startTestServer, type TestServer } from './helpers/server.js';

const MiB = 1024 * 1024;
const EXTRA = WIDE_STREAM_WINDOW - DEFAULT_WINDOW;

/** A Kv Get stream left open, sending nothing: it holds its window and no message. */
function openStream(session: ClientHttp2Session): ClientHttp2Stream {
  const stream = session.request(
    { ':method': 'POST', ':path': '/buffdb.kv.Kv/Get', 'content-type': 'application/grpc', te: 'trailers' },
    { endStream: false },
  );
  stream.on('error', () => {}); // cancelled at the end of a test
  return stream;
}

async function windowIs(session: ClientHttp2Session, size: number, what: string): Promise<void> {
  await eventually(() => session.remoteSettings.initialWindowSize === size, what);
}

describe('HTTP/2 windows', () => {
  let srv: TestServer;
  before(async () => {
    // 8 MiB: a quarter (2 MiB) for windows, so two streams can be wide at once.
    srv = await startTestServer({ serve: { memoryBudget: 8 * MiB } });
  });
  after(() => srv.dispose());

  it('a connection is told it may send 1 MiB per stream and 2 MiB in all', async () => {
    const session = connect(`http://${srv.addr}`);
    try {
      await windowIs(session, WIDE_STREAM_WINDOW, 'the server announces the wide stream window');
      await eventually(
        () => session.state.remoteWindowSize === WIDE_CONNECTION_WINDOW,
        'the server widens the connection window',
      );
    } finally {
      session.destroy();
    }
  });

  it('each open stream holds its extra window in the memory budget until it closes', async () => {
    const session = connect(`http://${srv.addr}`);
    const { windowShare, memoryBudget } = srv.running;
    try {
      await windowIs(session, WIDE_STREAM_WINDOW, 'wide at the start');
      const stream = openStream(session);
      await eventually(() => windowShare.held === EXTRA, 'one stream holds its extra window');
      assert.ok(memoryBudget.used >= EXTRA, `the budget counts it (used ${memoryBudget.used})`);
      stream.close();
      await eventually(() => windowShare.held === 0, 'closing the stream gives the room back');
      await eventually(() => memoryBudget.used === 0, 'nothing is left held in the budget');
    } finally {
      session.destroy();
    }
  });

  it('when the share runs out the connection goes back to 64 KiB, and widens again once its streams close', async () => {
    const session = connect(`http://${srv.addr}`);
    const { windowShare } = srv.running;
    try {
      await windowIs(session, WIDE_STREAM_WINDOW, 'wide at the start');
      const streams = [openStream(session), openStream(session)];
      await eventually(() => windowShare.held === 2 * EXTRA, 'two streams hold their extra windows');
      assert.equal(session.remoteSettings.initialWindowSize, WIDE_STREAM_WINDOW, 'still wide with two streams');
      streams.push(openStream(session));
      await windowIs(session, DEFAULT_WINDOW, 'a third stream does not fit: back to the default window');
      assert.equal(windowShare.held, 2 * EXTRA, 'the third stream holds nothing');
      assert.ok(windowShare.held <= windowShare.limit);
      for (const s of streams) s.close();
      await eventually(() => windowShare.held === 0, 'all room given back');
      const next = openStream(session);
      await windowIs(session, WIDE_STREAM_WINDOW, 'a new stream on an idle connection is wide again');
      await eventually(() => windowShare.held === EXTRA, 'and holds its extra window');
      next.close();
    } finally {
      session.destroy();
    }
  });

  it('the share is across connections: a second connection narrows when the first holds it all', async () => {
    const first = connect(`http://${srv.addr}`);
    const second = connect(`http://${srv.addr}`);
    const { windowShare } = srv.running;
    try {
      await windowIs(first, WIDE_STREAM_WINDOW, 'the first is wide');
      await windowIs(second, WIDE_STREAM_WINDOW, 'the second is wide while it has no stream');
      openStream(first);
      openStream(first);
      await eventually(() => windowShare.held === 2 * EXTRA, 'the first connection holds the whole share');
      openStream(second);
      await windowIs(second, DEFAULT_WINDOW, 'the second connection falls back to the default window');
      assert.equal(first.remoteSettings.initialWindowSize, WIDE_STREAM_WINDOW, 'the first stays wide');
    } finally {
      first.destroy();
      second.destroy();
    }
    await eventually(() => windowShare.held === 0, 'closed connections give their room back');
  });
});
