/**
 * Writers on many connections (etcd Put, Txn and DeleteRange, and buffdb Kv Set streams) while
 * watchers start from an old revision at different moments: every watcher sees every event exactly
 * once, in revision order, each acknowledged etcd write at its acknowledged revision, with no
 * revision missing. Against a real `buffdb run` process and an in-process server, per backend.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectEtcd, type EtcdClients } from '../src/client/etcd.js';
import { connect } from '../src/client/network.js';
import * as pb from '../src/generated/etcd/etcdserverpb/rpc.js';
import { Event_EventType } from '../src/generated/etcd/mvccpb/kv.js';
import { Inbox } from './helpers/inbox.js';
import {
  bidi,
  type ServerStores,
  serverStores,
  spawnServer,
  startTestServer,
  TEST_BACKENDS,
} from './helpers/server.js';

const b = (s: string): Buffer => Buffer.from(s);
const WRITERS = 6;
const OPS_PER_WRITER = 80;
const KV_SETS = 100;
const WATCHERS = 8;
const HISTORY = 40;

interface Seen {
  rev: number;
  text: string;
}

const call =
  <Req, Res>(c: EtcdClients, method: 'put' | 'txn' | 'deleteRange') =>
  (req: Req): Promise<Res> =>
    new Promise((resolve, reject) =>
      (c.kv[method] as unknown as (r: Req, cb: (e: Error | null, r?: Res) => void) => void).call(c.kv, req, (e, r) =>
        e ? reject(e) : resolve(r!),
      ),
    );

/** One writer's ops on its own keys; returns the events each acknowledged write made, by revision. */
async function writer(c: EtcdClients, who: number, acked: Map<number, string[]>): Promise<void> {
  const put = call<pb.PutRequest, pb.PutResponse>(c, 'put');
  const txn = call<pb.TxnRequest, pb.TxnResponse>(c, 'txn');
  const del = call<pb.DeleteRangeRequest, pb.DeleteRangeResponse>(c, 'deleteRange');
  const live = new Set<string>();
  for (let i = 0; i < OPS_PER_WRITER; i++) {
    const key = `cc/w${who}/k${i % 9}`;
    const kind = i % 7;
    if (kind === 5 && live.has(key)) {
      const r = await del(pb.DeleteRangeRequest.fromPartial({ key: b(key) }));
      live.delete(key);
      acked.set(Number(r.header!.revision), [`DELETE ${key}`]);
    } else if (kind === 3) {
      const other = `cc/w${who}/t${i}`;
      const r = await txn(
        pb.TxnRequest.fromPartial({
          success: [
            { requestPut: pb.PutRequest.fromPartial({ key: b(key), value: b(`${i}a`) }) },
            { requestPut: pb.PutRequest.fromPartial({ key: b(other), value: b(`${i}b`) }) },
          ],
        }),
      );
      live.add(key);
      acked.set(Number(r.header!.revision), [`PUT ${key}=${i}a`, `PUT ${other}=${i}b`]);
    } else {
      const r = await put(pb.PutRequest.fromPartial({ key: b(key), value: b(String(i)) }));
      live.add(key);
      acked.set(Number(r.header!.revision), [`PUT ${key}=${i}`]);
    }
  }
}

function watch(c: EtcdClients, startRev: number, prevKv: boolean): Inbox<Seen> {
  const stream = c.watch.watch();
  const inbox = new Inbox<Seen>();
  stream.on('data', (res: pb.WatchResponse) => {
    for (const e of res.events) {
      const kv = e.kv!;
      const type = e.type === Event_EventType.PUT ? 'PUT' : 'DELETE';
      inbox.push({
        rev: Number(kv.modRevision),
        text: type === 'PUT' ? `PUT ${kv.key}=${kv.value}` : `DELETE ${kv.key}`,
      });
      if (prevKv && type === 'DELETE' && !e.prevKv) inbox.end(new Error(`no prev_kv on the delete of ${kv.key}`));
    }
  });
  stream.on('error', (err: Error) => inbox.end(err));
  stream.write({
    createRequest: pb.WatchCreateRequest.fromPartial({
      key: b('cc/'),
      rangeEnd: b('cc0'),
      startRevision: BigInt(startRev),
      prevKv,
    }),
  });
  (inbox as Inbox<Seen> & { cancel?: () => void }).cancel = () => stream.cancel();
  return inbox;
}

async function scenario(addr: string): Promise<void> {
  const writers = Array.from({ length: WRITERS }, () => connectEtcd(addr));
  const watcherConn = connectEtcd(addr);
  const buffdb = connect(addr);
  try {
    const first = call<pb.PutRequest, pb.PutResponse>(writers[0]!, 'put');
    const acked = new Map<number, string[]>();
    let startRev = 0;
    for (let i = 0; i < HISTORY; i++) {
      const r = await first(pb.PutRequest.fromPartial({ key: b(`cc/history/${i % 5}`), value: b(`h${i}`) }));
      const rev = Number(r.header!.revision);
      startRev ||= rev;
      acked.set(rev, [`PUT cc/history/${i % 5}=h${i}`]);
    }
    const watchers: Inbox<Seen>[] = [];
    const work = [
      ...writers.map((c, who) => writer(c, who, acked)),
      bidi(
        buffdb.kv.set(),
        Array.from({ length: KV_SETS }, (_, i) => ({ key: `cc/kv/k${i % 11}`, value: `s${i}` })),
      ).then((r) => assert.equal(r.err, undefined)),
      // Watchers join while the writers run, each from the first revision of the history.
      (async () => {
        for (let i = 0; i < WATCHERS; i++) {
          const conn = i % 2 === 0 ? watcherConn : writers[i % WRITERS]!;
          watchers.push(watch(conn, startRev, i % 3 === 0));
          await new Promise((resolve) => setImmediate(resolve));
          await first(pb.PutRequest.fromPartial({ key: b(`cc/joined/${i}`), value: b('x') })).then((r) =>
            acked.set(Number(r.header!.revision), [`PUT cc/joined/${i}=x`]),
          );
        }
      })(),
    ];
    await Promise.all(work);
    const ackedEvents = [...acked.values()].reduce((n, e) => n + e.length, 0);
    const total = ackedEvents + KV_SETS;
    for (const [i, w] of watchers.entries()) await w.count(total, `watcher ${i}: all ${total} events`, 60_000);
    const reference = watchers[0]!.items;
    for (const [i, w] of watchers.entries()) {
      assert.equal(w.items.length, total, `watcher ${i}: no event twice`);
      assert.deepEqual(w.items, reference, `watcher ${i} saw what watcher 0 saw`);
    }
    const revs = reference.map((e) => e.rev);
    for (let i = 1; i < revs.length; i++) assert.ok(revs[i]! >= revs[i - 1]!, `in revision order at ${i}`);
    const distinct = [...new Set(revs)];
    assert.deepEqual(
      distinct,
      Array.from({ length: distinct.length }, (_, i) => startRev + i),
      'no revision missing',
    );
    for (const [rev, texts] of acked) {
      assert.deepEqual(
        reference.filter((e) => e.rev === rev).map((e) => e.text),
        texts,
        `the write acknowledged at revision ${rev}, all of it, in op order`,
      );
    }
    const sets = reference.filter((e) => e.text.startsWith('PUT cc/kv/')).map((e) => e.text.split('=')[1]);
    assert.deepEqual(
      sets,
      Array.from({ length: KV_SETS }, (_, i) => `s${i}`),
      'every Kv Set once, in stream order',
    );
    for (const w of watchers) (w as Inbox<Seen> & { cancel(): void }).cancel();
  } finally {
    for (const c of writers) c.close();
    watcherConn.close();
    buffdb.close();
  }
}

for (const backend of TEST_BACKENDS) {
  describe(`etcd writers and watchers at once [${backend}]`, () => {
    let stores: ServerStores;
    before(async () => {
      stores = await serverStores(backend, 'buffdb-etcd-concurrency-');
    });
    after(() => stores.dispose());

    it('against a buffdb run process: every watcher sees every event once, in order', async () => {
      const server = await spawnServer(stores.args(), stores.dir);
      try {
        await scenario(server.addr);
      } finally {
        server.child.kill('SIGTERM');
        await server.exited;
      }
    });

    it('against an in-process server: the same', async () => {
      const srv = await startTestServer({ backend });
      try {
        await scenario(srv.addr);
      } finally {
        await srv.dispose();
      }
    });
  });
}
