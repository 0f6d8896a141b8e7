/**
 * `buffdb run` as an etcd server across restarts: --auto-compact compacts old history on its own,
 * cluster and member ids stay, revisions continue where they were. Per backend, on a real process.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseAutoCompact, parseDuration } from '../src/cli/etcd-options.js';
import { connectEtcd, type EtcdClients } from '../src/client/etcd.js';
import * as pb from '../src/generated/etcd/etcdserverpb/rpc.js';
import {
  eventually,
  type ServerProcess,
  type ServerStores,
  serverStores,
  spawnServer,
  TEST_BACKENDS,
} from './helpers/server.js';

const b = (s: string): Buffer => Buffer.from(s);

function call<Req, Res>(
  fn: (req: Req, cb: (e: Error | null, r?: Res) => void) => unknown,
  self: unknown,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => fn.call(self, req, (e, r) => (e ? reject(e) : resolve(r!))));
}

const put = (c: EtcdClients, key: string, value: string) =>
  call<pb.PutRequest, pb.PutResponse>(c.kv.put, c.kv, pb.PutRequest.fromPartial({ key: b(key), value: b(value) }));
const rangeAt = (c: EtcdClients, key: string, revision: number) =>
  call<pb.RangeRequest, pb.RangeResponse>(
    c.kv.range,
    c.kv,
    pb.RangeRequest.fromPartial({ key: b(key), revision: BigInt(revision) }),
  );
const members = (c: EtcdClients) =>
  call<pb.MemberListRequest, pb.MemberListResponse>(c.cluster.memberList, c.cluster, { linearizable: true });

describe('--auto-compact values', () => {
  it('revisions, durations and off; anything else is refused with a sentence', () => {
    assert.deepEqual(parseAutoCompact('100000'), { revisions: 100_000 });
    assert.deepEqual(parseAutoCompact('1h30m'), { ageMs: 5_400_000 });
    assert.deepEqual(parseAutoCompact('7d'), { ageMs: 7 * 86_400_000 });
    assert.equal(parseAutoCompact('OFF'), false);
    assert.equal(parseDuration('90s'), 90_000);
    assert.throws(() => parseAutoCompact('0'), /at least 1 revision/);
    assert.throws(
      () => parseAutoCompact('soon'),
      /a number of revisions \(100000\), a duration \(1h, 30m, 7d\) or off/,
    );
  });
});

for (const backend of TEST_BACKENDS) {
  describe(`buffdb run as an etcd server across restarts [${backend}]`, () => {
    let stores: ServerStores;
    let server: ServerProcess | undefined;
    let c: EtcdClients | undefined;
    const start = async (...extra: string[]): Promise<EtcdClients> => {
      server = await spawnServer(stores.args(...extra), stores.dir);
      c = connectEtcd(server.addr);
      return c;
    };
    const stop = async (): Promise<void> => {
      c?.close();
      server?.child.kill('SIGTERM');
      await server?.exited;
    };
    before(async () => {
      stores = await serverStores(backend, 'buffdb-etcd-run-');
    });
    after(async () => {
      await stop();
      await stores.dispose();
    });

    it('--auto-compact 5 compacts history older than the last 5 revisions by itself', async () => {
      const etcd = await start('--auto-compact', '5');
      const first = Number((await put(etcd, 'ac', '0')).header!.revision);
      // Fewer than 5 revisions after it: whenever the check runs, this one is kept.
      assert.equal((await rangeAt(etcd, 'ac', first)).kvs[0]!.value.toString(), '0', 'not compacted yet');
      for (let i = 1; i <= 20; i++) await put(etcd, 'ac', String(i));
      // The server checks every few seconds: wait for the read at the first revision to fail.
      let err: (Error & { details?: string }) | undefined;
      await eventually(
        async () => {
          err = await rangeAt(etcd, 'ac', first).then(
            () => undefined,
            (e: Error & { details?: string }) => e,
          );
          return err !== undefined;
        },
        'history compacted (the read at the first revision failing)',
        30_000,
      );
      assert.equal(err?.details, 'etcdserver: mvcc: required revision has been compacted');
      const latest = Number((await put(etcd, 'ac', 'last')).header!.revision);
      assert.equal((await rangeAt(etcd, 'ac', latest - 4)).kvs[0]!.value.toString(), '17', 'the last revisions stay');
      await stop();
    });

    it('after a restart: the same cluster and member ids, and revisions go on from where they were', async () => {
      let etcd = await start();
      const before = await members(etcd);
      const rev = Number((await put(etcd, 'restart', 'a')).header!.revision);
      await stop();
      etcd = await start();
      const again = await members(etcd);
      assert.equal(again.header!.clusterId, before.header!.clusterId);
      assert.equal(again.members[0]!.ID, before.members[0]!.ID);
      assert.equal(Number((await put(etcd, 'restart', 'b')).header!.revision), rev + 1);
      assert.equal((await rangeAt(etcd, 'restart', rev)).kvs[0]!.value.toString(), 'a', 'history survives too');
      await stop();
    });
  });
}
