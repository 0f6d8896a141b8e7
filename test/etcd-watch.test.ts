/**
 * The etcd Watch protocol message by message (raw etcdserverpb messages over a real socket):
 * many watchers per stream, ids, replay, one response per revision, prev_kv, filters, cancel,
 * progress, fragments, compaction, and a slow client held back by the hub. Once per backend.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { connectEtcd, type EtcdClients } from '../src/client/etcd.js';
import * as pb from '../src/generated/etcd/etcdserverpb/rpc.js';
import { Event_EventType } from '../src/generated/etcd/mvccpb/kv.js';
import { Inbox } from './helpers/inbox.js';
import { startTestServer, TEST_BACKENDS, type TestServer } from './helpers/server.js';

const b = (s: string): Buffer => Buffer.from(s);
const PROGRESS_MS = 300;
const MAX_REQUEST = 64 * 1024;

interface Stream {
  call: ClientDuplexStream<pb.WatchRequest, pb.WatchResponse>;
  inbox: Inbox<pb.WatchResponse>;
  create(req: Partial<pb.WatchCreateRequest>): void;
  /** The next response after the `seen` already read. */
  next(what: string): Promise<pb.WatchResponse>;
}

function openWatch(c: EtcdClients): Stream {
  const call = c.watch.watch();
  const inbox = new Inbox<pb.WatchResponse>();
  call.on('data', inbox.push);
  call.on('error', (err: Error) => inbox.end(err));
  call.on('end', () => inbox.end());
  let read = 0;
  return {
    call,
    inbox,
    create: (req) => call.write({ createRequest: pb.WatchCreateRequest.fromPartial(req) }),
    next: async (what) => (await inbox.count(read + 1, what))[read++]!,
  };
}

const unary =
  <Req, Res>(fn: (req: Req, cb: (err: Error | null, res?: Res) => void) => unknown, self: unknown) =>
  (req: Req): Promise<Res> =>
    new Promise((resolve, reject) => fn.call(self, req, (err, res) => (err ? reject(err) : resolve(res!))));

function kvApi(c: EtcdClients) {
  return {
    put: (key: string, value: string | Buffer) =>
      unary<pb.PutRequest, pb.PutResponse>(
        c.kv.put,
        c.kv,
      )(pb.PutRequest.fromPartial({ key: b(key), value: typeof value === 'string' ? b(value) : value })),
    del: (key: string, rangeEnd = '') =>
      unary<pb.DeleteRangeRequest, pb.DeleteRangeResponse>(
        c.kv.deleteRange,
        c.kv,
      )(pb.DeleteRangeRequest.fromPartial({ key: b(key), rangeEnd: b(rangeEnd) })),
    txn: (req: Partial<pb.TxnRequest>) =>
      unary<pb.TxnRequest, pb.TxnResponse>(c.kv.txn, c.kv)(pb.TxnRequest.fromPartial(req)),
    compact: (revision: number) =>
      unary<pb.CompactionRequest, pb.CompactionResponse>(
        c.kv.compact,
        c.kv,
      )({ revision: BigInt(revision), physical: true }),
  };
}

const rev = (res: { header?: pb.ResponseHeader }): number => Number(res.header!.revision);
const events = (res: pb.WatchResponse) =>
  res.events.map(
    (e) => `${e.type === Event_EventType.PUT ? 'PUT' : 'DELETE'} ${e.kv!.key}=${e.kv!.value}@${e.kv!.modRevision}`,
  );

for (const backend of TEST_BACKENDS) {
  describe(`etcd Watch protocol [${backend}]`, () => {
    let srv: TestServer;
    let c: EtcdClients;
    let kv: ReturnType<typeof kvApi>;
    before(async () => {
      srv = await startTestServer({
        backend,
        serve: { etcd: { progressNotifyIntervalMs: PROGRESS_MS, maxRequestBytes: MAX_REQUEST } },
      });
      c = connectEtcd(srv.addr);
      kv = kvApi(c);
    });
    after(async () => {
      c.close();
      await srv.dispose();
    });

    it('many watchers on one stream: server ids count from 0, client ids are kept, each answered in order', async () => {
      const s = openWatch(c);
      const current = srv.db.kv.status().rev;
      s.create({ key: b('ids/a') });
      s.create({ key: b('ids/b'), watchId: 100n });
      s.create({ key: b('ids/c') });
      s.create({ key: b('ids/d'), watchId: 100n });
      s.create({ key: b('ids/z'), rangeEnd: b('ids/a') });
      s.create({ key: b('ids/e'), startRevision: -1n });
      const answers = await s.inbox.count(6, 'six create answers');
      assert.deepEqual(
        answers.map((r) => [r.watchId, r.created, r.canceled, r.cancelReason]),
        [
          [0n, true, false, ''],
          [100n, true, false, ''],
          [1n, true, false, ''],
          [-1n, true, true, 'mvcc: duplicate watch ID provided on the WatchStream'],
          [-1n, true, true, 'mvcc: watcher range is empty'],
          [-1n, true, true, 'etcdserver: mvcc: required revision has been compacted'],
        ],
      );
      for (const a of answers) {
        assert.equal(rev(a), current);
        assert.equal(a.header!.clusterId, srv.db.kv.status().clusterId);
        assert.equal(a.header!.memberId, srv.db.kv.status().memberId);
        assert.ok(a.header!.raftTerm >= 1n);
      }
      await kv.put('ids/b', 'x');
      const ev = (await s.inbox.count(7, 'the event'))[6]!;
      assert.equal(ev.watchId, 100n);
      assert.deepEqual(events(ev), [`PUT ids/b=x@${current + 1}`]);
      s.call.cancel();
    });

    it('all events of one revision come in one response; replay from an old revision, then live', async () => {
      const start = rev(await kv.put('rev/a', '1'));
      await kv.txn({
        success: [
          { requestPut: pb.PutRequest.fromPartial({ key: b('rev/b'), value: b('2') }) },
          { requestPut: pb.PutRequest.fromPartial({ key: b('rev/c'), value: b('3') }) },
          { requestDeleteRange: pb.DeleteRangeRequest.fromPartial({ key: b('rev/a') }) },
        ],
      });
      const s = openWatch(c);
      s.create({ key: b('rev/'), rangeEnd: b('rev0'), startRevision: BigInt(start) });
      await s.next('created');
      const replay = await s.inbox.until(
        (items) => items.slice(1).reduce((n, r) => n + r.events.length, 0) >= 4,
        'the replayed events',
      );
      const all = replay.slice(1).flatMap(events);
      assert.deepEqual(all, [
        `PUT rev/a=1@${start}`,
        `PUT rev/b=2@${start + 1}`,
        `PUT rev/c=3@${start + 1}`,
        `DELETE rev/a=@${start + 1}`,
      ]);
      const live = await kv.txn({
        success: [
          { requestPut: pb.PutRequest.fromPartial({ key: b('rev/x'), value: b('x') }) },
          { requestPut: pb.PutRequest.fromPartial({ key: b('rev/y'), value: b('y') }) },
        ],
      });
      const res = await s.inbox.until(
        (items) => items.some((r) => events(r).some((e) => e.includes('rev/x'))),
        'the live txn',
      );
      const holding = res.find((r) => events(r).some((e) => e.includes('rev/x')))!;
      assert.deepEqual(
        events(holding),
        [`PUT rev/x=x@${rev(live)}`, `PUT rev/y=y@${rev(live)}`],
        'one response for the revision',
      );
      assert.equal(rev(holding), rev(live));
      s.call.cancel();
    });

    it('prev_kv, and the NOPUT / NODELETE filters (a response left empty is not sent)', async () => {
      const s = openWatch(c);
      s.create({ key: b('pf/k'), prevKv: true, watchId: 1n });
      s.create({ key: b('pf/k'), filters: [pb.WatchCreateRequest_FilterType.NOPUT], watchId: 2n });
      s.create({ key: b('pf/k'), filters: [pb.WatchCreateRequest_FilterType.NODELETE], watchId: 3n });
      await s.inbox.count(3, 'created');
      await kv.put('pf/k', 'one');
      await kv.put('pf/k', 'two');
      await kv.del('pf/k');
      const got = await s.inbox.until(
        (items) =>
          items.filter((r) => r.watchId === 1n).length >= 3 &&
          items.some((r) => r.watchId === 2n) &&
          items.filter((r) => r.watchId === 3n).length >= 3,
        'events for the three watchers',
      );
      const of = (id: bigint) => got.slice(3).filter((r) => r.watchId === id);
      assert.deepEqual(
        of(1n).map((r) => r.events.map((e) => e.prevKv?.value.toString() ?? null)),
        [[null], ['one'], ['two']],
        'prev_kv on every event but the creation',
      );
      assert.equal(of(1n)[2]!.events[0]!.kv!.value.length, 0, 'a DELETE carries only the key and its revision');
      assert.deepEqual(
        of(2n)
          .flatMap(events)
          .map((e) => e.split(' ')[0]),
        ['DELETE'],
      );
      assert.deepEqual(
        of(3n)
          .flatMap(events)
          .map((e) => e.split(' ')[0]),
        ['PUT', 'PUT'],
      );
      assert.equal(of(3n).length, 2, 'no empty response for the filtered delete');
      assert.equal(of(2n)[0]!.events[0]!.prevKv, undefined, 'no prev_kv unless asked');
      s.call.cancel();
    });

    it('cancel answers canceled for a known id and nothing for an unknown one; a progress request answers -1', async () => {
      const s = openWatch(c);
      s.create({ key: b('cancel/k') });
      const created = await s.next('created');
      s.call.write({ cancelRequest: { watchId: 4242n } });
      s.call.write({ cancelRequest: { watchId: created.watchId } });
      const canceled = await s.next('the cancel answer');
      assert.deepEqual([canceled.watchId, canceled.canceled, canceled.created], [created.watchId, true, false]);
      await kv.put('cancel/k', 'after');
      s.call.write({ progressRequest: {} });
      const progress = await s.next('the progress answer');
      assert.equal(progress.watchId, -1n, 'no event for the canceled watcher, no answer for the unknown id');
      assert.equal(rev(progress), srv.db.kv.status().rev);
      assert.deepEqual(progress.events, []);
      s.call.cancel();
    });

    it('progress_notify: an idle, caught-up watcher gets periodic empty responses with the current revision', async () => {
      const s = openWatch(c);
      s.create({ key: b('progress/k'), progressNotify: true });
      s.create({ key: b('progress/other') });
      const created = await s.next('created');
      await s.next('created');
      await kv.put('unrelated', 'x');
      const notify = await s.next('a progress notification');
      assert.equal(notify.watchId, created.watchId, 'only the watcher that asked');
      assert.deepEqual([notify.events.length, notify.created, notify.canceled], [0, false, false]);
      assert.equal(rev(notify), srv.db.kv.status().rev);
      s.call.cancel();
    });

    it('fragment: a large revision is split for a watcher that asks, whole for one that does not', async () => {
      const value = Buffer.alloc(16 * 1024, 'f');
      for (let i = 0; i < 48; i++) await kv.put(`frag/${String(i).padStart(2, '0')}`, value);
      const s = openWatch(c);
      s.create({ key: b('frag/'), rangeEnd: b('frag0'), prevKv: true, fragment: true, watchId: 1n });
      s.create({ key: b('frag/'), rangeEnd: b('frag0'), prevKv: true, watchId: 2n });
      await s.inbox.count(2, 'created');
      const deleted = await kv.del('frag/', 'frag0');
      assert.equal(deleted.deleted, 48n);
      await s.inbox.until((items) => items.some((r) => r.watchId === 2n && r.events.length > 0), 'the whole response');
      const parts = await s.inbox.until(
        (items) =>
          items.filter((r) => r.watchId === 1n && r.events.length > 0).reduce((n, r) => n + r.events.length, 0) >= 48,
        'all fragments',
      );
      const frags = parts.filter((r) => r.watchId === 1n && r.events.length > 0);
      assert.ok(frags.length >= 2, `split into ${frags.length} part(s)`);
      assert.deepEqual(
        frags.map((r) => r.fragment),
        [...frags.slice(1).map(() => true), false],
      );
      for (const f of frags)
        assert.ok(pb.WatchResponse.encode(f).finish().length < MAX_REQUEST + 512 * 1024 || f.events.length === 1);
      assert.deepEqual(
        frags.flatMap((r) => r.events.map((e) => e.kv!.key.toString())),
        Array.from({ length: 48 }, (_, i) => `frag/${String(i).padStart(2, '0')}`),
      );
      const whole = parts.filter((r) => r.watchId === 2n && r.events.length > 0);
      assert.deepEqual([whole.length, whole[0]!.events.length, whole[0]!.fragment], [1, 48, false]);
      s.call.cancel();
    });

    it('a start revision below the compaction: created, then canceled with compact_revision and header revision 0', async () => {
      const old = rev(await kv.put('compacted/k', '1'));
      const target = rev(await kv.put('compacted/k', '2'));
      await kv.compact(target);
      const s = openWatch(c);
      s.create({ key: b('compacted/k'), startRevision: BigInt(old) });
      const created = await s.next('created');
      assert.equal(created.created, true);
      const end = await s.next('the cancel');
      assert.deepEqual(
        [end.watchId, end.canceled, end.compactRevision, rev(end), end.events.length],
        [created.watchId, true, BigInt(target), 0, 0],
      );
      s.call.cancel();
    });

    it('a client that stops reading is held back by the hub; writers go on; later it gets every event once, in order', async () => {
      const s = openWatch(c);
      const start = srv.db.kv.status().rev + 1;
      s.create({ key: b('slow/'), rangeEnd: b('slow0') });
      await s.next('created');
      s.call.pause();
      const value = Buffer.alloc(8 * 1024, 's');
      // Writers are never blocked by the stalled reader: they go on until the hub holds the watcher
      // back (how many writes that takes depends on how the engine groups commits), then 200 more.
      let N = 0;
      const round = async (): Promise<void> => {
        await Promise.all(Array.from({ length: 40 }, (_, j) => kv.put(`slow/${(N + j) % 13}`, value)));
        N += 40;
      };
      while (srv.db.kv.hub.states().behind === 0 && N < 4000) await round();
      assert.ok(srv.db.kv.hub.states().behind >= 1, `the watcher is held back, not buffered for (${N} puts)`);
      for (let i = 0; i < 5; i++) await round();
      assert.ok(srv.db.kv.hub.states().behind >= 1, 'still held back while writers go on');
      s.call.resume();
      const got = await s.inbox.until(
        (items) => items.reduce((n, r) => n + r.events.length, 0) >= N,
        'every event after the reader resumed',
        30_000,
      );
      const revs = got.flatMap((r) => r.events.map((e) => Number(e.kv!.modRevision)));
      assert.equal(revs.length, N, 'no duplicates');
      assert.deepEqual(
        revs,
        Array.from({ length: N }, (_, i) => start + i),
        'in order, no gaps',
      );
      s.call.cancel();
    });

    it('a malformed message ends the stream with INVALID_ARGUMENT; the server goes on', async () => {
      const s = openWatch(c);
      s.create({ key: b('x') });
      await s.next('created');
      // A create request whose key has a length beyond the message, on another stream.
      const bad = c.watch.makeBidiStreamRequest(
        '/etcdserverpb.Watch/Watch',
        (x: Buffer) => x,
        (x: Buffer) => x,
      );
      const status = new Promise<{ code: number; details: string }>((resolve) => bad.on('error', resolve));
      bad.write(Buffer.from([0x0a, 0x05, 0x0a, 0x80, 0x80, 0x80, 0x08]));
      const err = await status;
      assert.equal(err.code, 3);
      assert.match(err.details, /malformed Watch request message/);
      s.call.cancel();
      assert.equal(rev(await kv.put('still', 'serving')) > 0, true);
    });
  });
}
