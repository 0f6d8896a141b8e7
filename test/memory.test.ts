/**
 * Server memory under clients that are too fast or too slow (issue #12; spec blob-streams.md,
 * "Memory"): a real `buffdb run --memory-budget 64MiB` child process over real files, its peak
 * resident set read from /proc/PID/status (VmHWM, the kernel's own high-water mark).
 *
 * The bound: peak RSS <= RSS at start + the budget + SLACK. The budget counts the request and
 * response data the server holds; SLACK covers what the process holds besides that: each 1 MiB
 * message passes through 2-4 short-lived copies (HTTP/2 frames joined by grpc-js, the encoded
 * answer and grpc-js' framed copy of it, SQLite's copy of a row), and V8 frees dead Buffers only
 * at a garbage collection, which it starts once about 64 MiB of external memory has been
 * allocated; plus pages the allocator keeps. Measured here: 157-172 MiB peaks with a 62 MiB start,
 * against a bound of 62 + 64 + 128 = 254 MiB. Each scenario moves 256-300 MiB, so a server that
 * buffered it (the slow Get reader did, before the budget: 270-310 MiB for 200 answers) fails.
 * The Store flood runs beside a slow Download of a 256 MiB blob (185 MiB peak with a 79 MiB start).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { type ClientDuplexStream, credentials } from '@grpc/grpc-js';
import { downloadBlob } from '../src/client/blob-transfer.js';
import { type BuffDbClients, connect } from '../src/client/network.js';
import { header } from '../src/conformance/large-blob-suite.js';
import type * as blobPb from '../src/generated/blob.js';
import { TargetStore } from '../src/generated/query.js';
import { ChangeList, SyncClient, type SyncMessage } from '../src/generated/sync.js';
import { BuffDb } from '../src/store/buffdb.js';
import { rangeArgs } from '../src/store/kv/kv-api.js';
import { type ServerProcess, spawnServer, tempDir, writeAll } from './helpers/server.js';

const MiB = 1024 * 1024;
const BUDGET = 64 * MiB;
const SLACK = 128 * MiB;

/** VmHWM (peak resident set) of a process, in bytes. */
function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)![1]) * 1024;
}

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(0)} MiB`;

/** A 1 MiB blob whose bytes say which one it is. */
function blobBytes(n: number): Buffer {
  const b = Buffer.alloc(MiB, n % 251);
  b.writeUInt32BE(n, 0);
  return b;
}

async function startBudgeted(dir: string): Promise<Budgeted> {
  const server = await spawnServer(
    ['127.0.0.1:0', '--kv-store', join(dir, 'kv.db'), '--blob-store', join(dir, 'blob.db'), '--memory-budget', '64MiB'],
    dir,
  );
  return { ...server, startRss: peakRss(server.child.pid!) };
}

type Budgeted = ServerProcess & { startRss: number };

/** Starts a budgeted server on `dir`, runs `use` with a client, then stops both. */
async function withServer(dir: string, use: (server: Budgeted, db: BuffDbClients) => Promise<void>): Promise<void> {
  const server = await startBudgeted(dir);
  const db = connect(server.addr);
  try {
    await use(server, db);
  } finally {
    db.close();
    server.child.kill('SIGTERM');
    await server.exited;
  }
}

function assertWithinBudget(t: TestContext, server: Budgeted): void {
  const peak = peakRss(server.child.pid!);
  const bound = server.startRss + BUDGET + SLACK;
  t.diagnostic(`server peak RSS ${mib(peak)} (start ${mib(server.startRss)}, bound ${mib(bound)})`);
  assert.ok(
    peak <= bound,
    `server peak RSS ${mib(peak)} exceeds ${mib(bound)} (start ${mib(server.startRss)} + budget ${mib(BUDGET)} + ${mib(SLACK)})`,
  );
}

/** Stores blobs 0..count-1 (blobBytes) in the store files, through the store API. */
async function storeBlobs(dir: string, count: number): Promise<bigint[]> {
  const db = await BuffDb.open({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
  const ids: bigint[] = [];
  for (let n = 0; n < count; n++) ids.push(BigInt(await db.blob.storeBlob(blobBytes(n))));
  await db.close();
  return ids;
}

/** Uploads a `mib` MiB blob into the store files through the store API; answers its id and SHA-256. */
async function uploadLarge(dir: string, mib: number): Promise<{ id: bigint; sha256: Buffer }> {
  const db = await BuffDb.open({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
  try {
    const upload = await db.blob.beginUpload(header());
    for (let n = 0; n < mib; n++) await upload.write(blobBytes(n));
    const done = await upload.end();
    return { id: BigInt(done.id), sha256: done.sha256 };
  } finally {
    await db.close();
  }
}

/**
 * Reads a stream's answers until it ends, checking each; `pauseMs` > 0 reads slowly (one answer,
 * then a pause). Resolves with the number of answers.
 */
function readAnswers<Req, Res>(
  call: ClientDuplexStream<Req, Res>,
  check: (res: Res, i: number) => void,
  pauseMs = 0,
): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    call.on('data', (res: Res) => {
      try {
        check(res, n++);
      } catch (err) {
        call.cancel();
        reject(err);
        return;
      }
      if (pauseMs > 0) {
        call.pause();
        setTimeout(() => call.resume(), pauseMs);
      }
    });
    call.on('error', reject);
    call.on('end', () => resolve(n));
  });
}

describe('memory budget: the server holds request and response data to --memory-budget', { concurrency: 1 }, () => {
  let dir: string;
  before(() => {
    dir = tempDir('buffdb-memory-');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('32 fast Store streams of 1 MiB blobs and a slow 256 MiB Download at once stay within the budget; every acknowledged blob survives kill -9', async (t) => {
    if (!existsSync('/proc/self/status')) return t.skip('needs /proc to read the server RSS');
    const here = join(dir, 'flood');
    mkdirSync(here);
    const STREAMS = 32;
    const PER_STREAM = 8;
    const large = await uploadLarge(here, 256);
    const server = await startBudgeted(here);
    // The slow reader: one 1 MiB chunk every 15 ms, on its own connection, while the flood runs.
    const reader = connect(server.addr, { clientOptions: { 'grpc.use_local_subchannel_pool': 1 } });
    let downloading = true;
    const slowDownload = (async () => {
      const hash = createHash('sha256');
      for await (const chunk of downloadBlob(reader.blob, large.id) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
      downloading = false;
      return hash.digest();
    })();
    const floodStart = Date.now();
    // 8 connections (separate HTTP/2 sessions), 4 streams each.
    const conns = Array.from({ length: 8 }, () =>
      connect(server.addr, { clientOptions: { 'grpc.use_local_subchannel_pool': 1 } }),
    );
    const acked = new Map<bigint, number>();
    await Promise.all(
      Array.from(
        { length: STREAMS },
        (_, s) =>
          new Promise<void>((resolve, reject) => {
            const call = conns[s % conns.length]!.blob.store();
            let i = 0;
            call.on('data', (res: blobPb.StoreResponse) => acked.set(res.id, s * PER_STREAM + i++));
            call.on('error', reject);
            call.on('end', () => resolve());
            writeAll(call, PER_STREAM, (j) => ({
              bytes: blobBytes(s * PER_STREAM + j),
              metadata: undefined,
              transactionId: undefined,
            }));
          }),
      ),
    );
    for (const c of conns) c.close();
    assert.equal(acked.size, STREAMS * PER_STREAM);
    const floodMs = Date.now() - floodStart;
    assert.ok(downloading, 'the download was still running when the flood ended');
    t.diagnostic(`flood ${floodMs} ms, with the slow download running throughout`);
    assert.ok((await slowDownload).equals(large.sha256), 'the slow download served the blob exactly');
    reader.close();
    assertWithinBudget(t, server);

    // Acknowledged means durable: kill -9, restart on the same files, read every blob back.
    server.child.kill('SIGKILL');
    await server.exited;
    await withServer(here, async (_, db) => {
      const ids = [...acked.keys()];
      const call = db.blob.get();
      const read = readAnswers(call, (res: blobPb.GetResponse, i) => {
        assert.ok(Buffer.from(res.bytes).equals(blobBytes(acked.get(ids[i]!)!)), `blob ${ids[i]} differs`);
      });
      writeAll(call, ids.length, (i) => ({ id: ids[i]!, transactionId: undefined }));
      assert.equal(await read, ids.length);
    });
  });

  it('a slow reader of 300 Get answers of 1 MiB blobs does not grow the server', async (t) => {
    if (!existsSync('/proc/self/status')) return t.skip('needs /proc to read the server RSS');
    const here = join(dir, 'slow-get');
    mkdirSync(here);
    const ids = await storeBlobs(here, 16);
    await withServer(here, async (server, db) => {
      const call = db.blob.get();
      const read = readAnswers(
        call,
        (res: blobPb.GetResponse, i) => {
          assert.ok(Buffer.from(res.bytes).equals(blobBytes(i % ids.length)), `answer ${i} differs`);
        },
        10,
      );
      // All 300 requests at once (a few KiB): without a budget the server reads 300 MiB of blobs.
      writeAll(call, 300, (i) => ({ id: ids[i % ids.length]!, transactionId: undefined }));
      assert.equal(await read, 300);
      assertWithinBudget(t, server);
    });
  });

  it('Query rows toward a slow reader stay bounded (300 rows of 1 MiB)', async (t) => {
    if (!existsSync('/proc/self/status')) return t.skip('needs /proc to read the server RSS');
    const here = join(dir, 'slow-query');
    mkdirSync(here);
    await storeBlobs(here, 20);
    await withServer(here, async (server, db) => {
      const call = db.query.query();
      const read = readAnswers(call, (res) => assert.equal(res.fields.length, 1), 10);
      call.write({
        query: 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 15) SELECT data FROM blob, n',
        target: TargetStore.BLOB,
      });
      call.end();
      assert.equal(await read, 300);
      assertWithinBudget(t, server);
    });
  });

  it('a sync peer flooding Exchange with 8 MiB batches (not waiting for acks) stays within the budget', async (t) => {
    if (!existsSync('/proc/self/status')) return t.skip('needs /proc to read the server RSS');
    const here = join(dir, 'sync-flood');
    mkdirSync(here);
    const value = randomBytes(8 * MiB); // gzip cannot shrink it: each message is 8 MiB on the wire
    await withServer(here, async (server) => {
      const client = new SyncClient(server.addr, credentials.createInsecure(), {
        'grpc.max_send_message_length': 64 * MiB,
        'grpc.max_receive_message_length': 64 * MiB,
      });
      const site = randomBytes(8);
      const gz = gzipSync(
        ChangeList.encode({
          changes: [
            { key: Buffer.from('flood'), value, deleted: false, hlc: BigInt(Date.now() * 1024), site, replacesHlc: 0n },
          ],
        }).finish(),
        { level: 1 },
      );
      const BATCHES = 40; // 320 MiB: a server that took them in as they came would break the bound
      const call = client.exchange();
      let acks = 0;
      const ended = new Promise<void>((resolve, reject) => {
        call.on('data', (msg: SyncMessage) => {
          if (msg.ack) acks++;
        });
        call.on('error', reject);
        call.on('end', resolve);
      });
      call.write({
        hello: {
          protocol: 1,
          site,
          generation: 0n,
          hubSite: Buffer.alloc(0),
          applied: 0n,
          revision: 0n,
          pullPrefixes: [],
        },
      });
      writeAll(call, BATCHES, (i) => ({
        changes: { fromRevision: BigInt(i), toRevision: BigInt(i + 1), gzip: gz, snapshot: undefined },
      }));
      await ended;
      client.close();
      assert.equal(acks, BATCHES, 'every batch was acknowledged');
      assertWithinBudget(t, server);
    });
    const db = await BuffDb.open({ kvStore: join(here, 'kv.db'), blobStore: join(here, 'blob.db') });
    try {
      const { kvs } = await db.kv.range(rangeArgs({ start: Buffer.from('flood'), end: Buffer.from('flooe') }));
      assert.equal(kvs.length, 1, 'the batch was applied');
      assert.ok(kvs[0]!.value.equals(value), 'with its 8 MiB value');
    } finally {
      await db.close();
    }
  });
});
