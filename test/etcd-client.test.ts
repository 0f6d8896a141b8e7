/**
 * The etcd API through a client nobody here wrote: the npm `etcd3` package, against an in-process
 * buffdb server (the etcd services share the buffdb port), once per backend.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3, type IKeyValue, type Watcher } from 'etcd3';
import { Inbox } from './helpers/inbox.js';
import { startTestServer, TEST_BACKENDS, type TestServer } from './helpers/server.js';

const text = (b: Buffer | string | undefined | null): string => (b === undefined || b === null ? '' : b.toString());

interface Seen {
  type: 'put' | 'delete';
  key: string;
  value: string;
  rev: number;
  prev?: string;
}

/** Collects a watcher's events as `type key=value@rev` records. */
function collect(w: Watcher): Inbox<Seen> {
  const inbox = new Inbox<Seen>();
  const on = (type: Seen['type']) => (kv: IKeyValue, prev?: IKeyValue) =>
    inbox.push({
      type,
      key: text(kv.key),
      value: text(kv.value),
      rev: Number(kv.mod_revision),
      ...(prev ? { prev: text(prev.value) } : {}),
    });
  w.on('put', on('put'));
  w.on('delete', on('delete'));
  w.on('error', (err: Error) => inbox.end(err));
  return inbox;
}

for (const backend of TEST_BACKENDS) {
  describe(`etcd API with the etcd3 npm client [${backend}]`, () => {
    let srv: TestServer;
    let client: Etcd3;
    before(async () => {
      srv = await startTestServer({ backend });
      client = new Etcd3({ hosts: `http://${srv.addr}` });
    });
    after(async () => {
      client.close();
      await srv.dispose();
    });

    it('put, get, delete; previous values; revisions in headers and key-values', async () => {
      const put = await client.put('greeting').value('hello');
      const rev = Number(put.header.revision);
      assert.ok(rev > 1);
      assert.equal(await client.get('greeting').string(), 'hello');
      const prev = await client.put('greeting').value('hi').getPrevious();
      assert.equal(text(prev?.value), 'hello');
      const kv = (await client.get('greeting').exec()).kvs[0]!;
      assert.deepEqual([kv.create_revision, kv.mod_revision, kv.version].map(Number), [rev, rev + 1, 2]);
      assert.equal(await client.get('greeting').revision(rev).string(), 'hello', 'a read at an old revision');
      assert.equal(await client.get('missing').string(), null);
      const gone = await client.delete().key('greeting').getPrevious();
      assert.deepEqual(
        gone.map((g) => text(g.value)),
        ['hi'],
      );
      assert.equal(await client.get('greeting').exists(), false);
      await client.put('binary').value(Buffer.from([0, 255, 1]));
      assert.equal((await client.get('binary').buffer())?.toString('hex'), '00ff01');
    });

    it('ranges: prefix, limit, sort, count, keys only, from-key, revision filters', async () => {
      for (const [k, v] of [
        ['r/c', '1'],
        ['r/a', '3'],
        ['r/b', '2'],
        ['r0', 'outside'],
      ])
        await client.put(k!).value(v!);
      assert.deepEqual(await client.getAll().prefix('r/').keys(), ['r/a', 'r/b', 'r/c']);
      assert.deepEqual(await client.getAll().prefix('r/').sort('Key', 'Descend').keys(), ['r/c', 'r/b', 'r/a']);
      assert.deepEqual(await client.getAll().prefix('r/').sort('Value', 'Ascend').keys(), ['r/c', 'r/b', 'r/a']);
      assert.deepEqual(await client.getAll().prefix('r/').sort('Create', 'Ascend').keys(), ['r/c', 'r/a', 'r/b']);
      const limited = await client.getAll().prefix('r/').limit(2).exec();
      assert.deepEqual(
        limited.kvs.map((kv) => text(kv.key)),
        ['r/a', 'r/b'],
      );
      assert.equal(limited.more, true);
      assert.equal(Number(limited.count), 3);
      assert.equal(await client.getAll().prefix('r/').count(), 3);
      assert.deepEqual(await client.getAll().prefix('r/').strings(), { 'r/a': '3', 'r/b': '2', 'r/c': '1' });
      assert.deepEqual(await client.getAll().inRange({ start: 'r/b', end: 'r0' }).keys(), ['r/b', 'r/c']);
      const createdB = Number((await client.get('r/b').exec()).kvs[0]!.create_revision);
      assert.deepEqual(await client.getAll().prefix('r/').minCreateRevision(createdB).keys(), ['r/b']);
      const all = await client.getAll().all().keys();
      assert.ok(all.includes('r0') && all.includes('r/a'));
      const deleted = await client.delete().prefix('r/').exec();
      assert.equal(Number(deleted.deleted), 3);
      assert.deepEqual(await client.getAll().prefix('r/').keys(), []);
    });

    it('txn: if / then / else, compare-and-swap on value, version and mod revision', async () => {
      await client.put('cas').value('v1');
      const won = await client
        .if('cas', 'Value', '==', 'v1')
        .then(client.put('cas').value('v2'))
        .else(client.get('cas'))
        .commit();
      assert.equal(won.succeeded, true);
      assert.equal(await client.get('cas').string(), 'v2');
      const lost = await client
        .if('cas', 'Value', '==', 'v1')
        .then(client.put('cas').value('v3'))
        .else(client.get('cas'))
        .commit();
      assert.equal(lost.succeeded, false);
      assert.equal(text(lost.responses[0]!.response_range!.kvs[0]!.value), 'v2');
      const created = await client.if('fresh', 'Version', '==', 0).then(client.put('fresh').value('1')).commit();
      assert.equal(created.succeeded, true);
      const again = await client.if('fresh', 'Version', '==', 0).then(client.put('fresh').value('2')).commit();
      assert.equal(again.succeeded, false);
      const mod = Number((await client.get('cas').exec()).kvs[0]!.mod_revision);
      const both = await client
        .if('cas', 'Mod', '==', mod)
        .and('fresh', 'Value', '==', '1')
        .then(client.put('cas').value('v4'), client.delete().key('fresh'))
        .commit();
      assert.equal(both.succeeded, true);
      assert.equal(Number(both.responses[1]!.response_delete_range!.deleted), 1);
      // Both writes share one revision.
      assert.equal(Number((await client.get('cas').exec()).kvs[0]!.mod_revision), Number(both.header.revision));
    });

    it('a lock and a software transaction (leases and txns under the hood) work', async () => {
      const first = await client.lock('the-lock').ttl(5).acquire();
      // etcd3's lock does not wait: a second holder is refused while the first holds it.
      await assert.rejects(client.lock('the-lock').ttl(5).acquire(), /Failed to acquire a lock/);
      await first.release();
      const second = await client.lock('the-lock').ttl(5).acquire();
      assert.ok(await second.leaseId());
      await second.release();
      await client.put('stm-counter').value('0');
      await Promise.all(
        Array.from({ length: 5 }, () =>
          client.stm({ retries: 20 }).transact(async (tx) => {
            const n = Number(await tx.get('stm-counter').string());
            await tx.put('stm-counter').value(String(n + 1));
          }),
        ),
      );
      assert.equal(await client.get('stm-counter').string(), '5');
    });

    it('watch: live events with previous values, puts and deletes, then cancel', async () => {
      const w = await client.watch().prefix('w/').withPreviousKV().create();
      const seen = collect(w);
      await client.put('w/a').value('1');
      await client.put('w/a').value('2');
      await client.delete().key('w/a');
      await seen.count(3, 'three events');
      await w.cancel();
      assert.deepEqual(
        seen.items.map((e) => [e.type, e.key, e.value, e.prev]),
        [
          ['put', 'w/a', '1', undefined],
          ['put', 'w/a', '2', '1'],
          ['delete', 'w/a', '', '2'],
        ],
      );
    });

    it('watch from an old revision replays the history, then goes on live, in order', async () => {
      const start = Number((await client.put('old/k').value('a')).header.revision);
      await client.put('old/k').value('b');
      await client.put('old/other').value('x');
      const w = await client.watch().prefix('old/').startRevision(String(start)).create();
      const seen = collect(w);
      await seen.count(3, 'the replayed events');
      await client.put('old/k').value('c');
      await seen.count(4, 'the live event');
      await w.cancel();
      assert.deepEqual(
        seen.items.map((e) => `${e.key}=${e.value}@${e.rev - start}`),
        ['old/k=a@0', 'old/k=b@1', 'old/other=x@2', 'old/k=c@3'],
      );
      const putsOnly = await client.watch().prefix('old/').startRevision(String(start)).only('delete').create();
      const deletes = collect(putsOnly);
      await client.delete().key('old/other');
      await deletes.count(1, 'the delete');
      await putsOnly.cancel();
      assert.deepEqual(
        deletes.items.map((e) => [e.type, e.key]),
        [['delete', 'old/other']],
      );
    });

    it('leases: grant, attach, keep-alive, time-to-live with keys, revoke deletes the keys', async () => {
      const lease = client.lease(30, { autoKeepAlive: false });
      const id = await lease.grant();
      await lease.put('leased/a').value('1');
      await lease.put('leased/b').value('2');
      const alive = await lease.keepaliveOnce();
      assert.equal(Number(alive.TTL), 30);
      const ttl = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
      assert.equal(Number(ttl.grantedTTL), 30);
      assert.ok(Number(ttl.TTL) > 0 && Number(ttl.TTL) <= 30);
      assert.deepEqual(ttl.keys.map(text).sort(), ['leased/a', 'leased/b']);
      const listed = await client.leaseClient.leaseLeases({});
      assert.ok(listed.leases.some((l) => String(l.ID) === id));
      const w = await client.watch().prefix('leased/').create();
      const seen = collect(w);
      await lease.revoke();
      await seen.count(2, 'the deletes of the revoked lease');
      await w.cancel();
      assert.deepEqual(
        seen.items.map((e) => e.type),
        ['delete', 'delete'],
      );
      assert.equal(seen.items[0]!.rev, seen.items[1]!.rev, 'one revision for both keys');
      assert.deepEqual(await client.getAll().prefix('leased/').keys(), []);
      const after = await client.leaseClient.leaseTimeToLive({ ID: id });
      assert.equal(Number(after.TTL), -1);
      await assert.rejects(client.put('x').value('y').lease(id).exec(), /etcdserver: requested lease not found/);
    });

    it('a lease the client keeps alive outlives its TTL; one left alone expires and its key goes', async () => {
      const kept = client.lease(2);
      await kept.put('kept').value('1');
      const dropped = client.lease(2, { autoKeepAlive: false });
      await dropped.put('dropped').value('1');
      const w = await client.watch().key('dropped').create();
      const seen = collect(w);
      await seen.count(1, 'the expiry of the lease left alone', 15_000);
      await w.cancel();
      assert.equal(seen.items[0]!.type, 'delete');
      assert.equal(await client.get('kept').string(), '1', 'the kept lease still holds its key');
      await kept.revoke();
    });

    it('compaction: old revisions fail with etcd’s error; a watch from before it is canceled', async () => {
      const r1 = Number((await client.put('compact/k').value('1')).header.revision);
      const r2 = Number((await client.put('compact/k').value('2')).header.revision);
      await client.kv.compact({ revision: String(r2), physical: true });
      await assert.rejects(
        client.get('compact/k').revision(r1).string(),
        /etcdserver: mvcc: required revision has been compacted/,
      );
      assert.equal(await client.get('compact/k').revision(r2).string(), '2');
      await assert.rejects(client.kv.compact({ revision: String(r1) }), /required revision has been compacted/);
      await assert.rejects(
        client.kv.compact({ revision: String(r2 + 1000) }),
        /etcdserver: mvcc: required revision is a future revision/,
      );
      const w = await client.watch().key('compact/k').startRevision(String(r1)).create();
      const seen = collect(w);
      await assert.rejects(seen.count(1, 'an event'), /Watcher canceled/);
    });

    it('etcd’s request errors: empty key, value with ignore_value, too large', async () => {
      await assert.rejects(
        client.kv.put({ key: Buffer.alloc(0), value: Buffer.from('v') }),
        /etcdserver: key is not provided/,
      );
      await assert.rejects(
        client.kv.put({ key: Buffer.from('iv'), value: Buffer.from('v'), ignore_value: true }),
        /etcdserver: value is provided/,
      );
      await assert.rejects(
        client
          .put('big')
          .value(Buffer.alloc(1.6 * 1024 * 1024))
          .exec(),
        /etcdserver: request is too large/,
      );
      assert.equal(await client.get('big').exists(), false);
    });
  });
}
