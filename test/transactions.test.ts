/** Transactions across Kv and Blob over real gRPC on loopback and real files (docs/transactions.md). */

import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import { type BackendName, capabilitiesOf } from '../src/backends/index.js';
import { type BuffDbClients, connect } from '../src/client/network.js';
import { openTransitive } from '../src/client/transitive.js';
import { StoreError } from '../src/errors.js';
import type { KvClient } from '../src/generated/kv.js';
import { BuffDb } from '../src/store/buffdb.js';
import { pgCommitLogs, storeLocator } from './helpers/postgres.js';
import {
  bidi,
  eventually,
  spawnServer,
  startTestServer,
  TEST_BACKENDS,
  type TestServer,
  tempDir,
} from './helpers/server.js';

type Unary<Req, Res> = (req: Req, cb: (err: ServiceError | null, res?: Res) => void) => unknown;

function unary<Req, Res>(f: Unary<Req, Res>, req: Req): Promise<{ res?: Res; err?: ServiceError }> {
  return new Promise((resolve) => {
    f(req, (err, res) => resolve(err ? { err } : { res }));
  });
}

async function begin(kv: KvClient, req: { readOnly?: boolean; timeoutMs?: number } = {}): Promise<string> {
  const { res, err } = await unary<typeof req, { transactionId: string }>(kv.beginTransaction.bind(kv), req);
  assert.equal(err, undefined, err?.details);
  assert.match(res!.transactionId, /\S/);
  return res!.transactionId;
}

/** Commit/Rollback answered OK with success: true. */
function assertOk(r: { res?: { success: boolean }; err?: ServiceError }): void {
  assert.equal(r.err, undefined, r.err?.details);
  assert.equal(r.res?.success, true);
}

type Outcome = { success: boolean; errorMessage?: string };
const commit = (kv: KvClient, transactionId: string) =>
  unary<{ transactionId: string }, Outcome>(kv.commitTransaction.bind(kv), { transactionId });
const rollback = (kv: KvClient, transactionId: string) =>
  unary<{ transactionId: string }, Outcome>(kv.rollbackTransaction.bind(kv), { transactionId });

async function getValue(
  c: BuffDbClients,
  key: string,
  transactionId?: string,
): Promise<{ value?: string; err?: ServiceError }> {
  const r = await bidi(c.kv.get(), [{ key, transactionId }]);
  return r.err ? { err: r.err } : { value: r.out[0]!.value };
}

async function setValues(c: BuffDbClients, pairs: Record<string, string>, transactionId?: string): Promise<void> {
  const r = await bidi(
    c.kv.set(),
    Object.entries(pairs).map(([key, value]) => ({ key, value, transactionId })),
  );
  assert.equal(r.err, undefined, r.err?.details);
}

async function storeBlob(c: BuffDbClients, data: string, metadata?: string, transactionId?: string): Promise<bigint> {
  const r = await bidi(c.blob.store(), [{ bytes: Buffer.from(data), metadata, transactionId }]);
  assert.equal(r.err, undefined, r.err?.details);
  return r.out[0]!.id;
}

async function getBlob(c: BuffDbClients, id: bigint, transactionId?: string) {
  const r = await bidi(c.blob.get(), [{ id, transactionId }]);
  return r.err ? { err: r.err } : { data: Buffer.from(r.out[0]!.bytes).toString(), metadata: r.out[0]!.metadata };
}

for (const backend of TEST_BACKENDS) {
  describe(`transactions over gRPC [${backend}]`, () => {
    let srv: TestServer;
    let c: BuffDbClients;
    /** A second client on its own connection: "another client". */
    let other: BuffDbClients;
    before(async () => {
      srv = await startTestServer({ backend, transactionDisconnectGraceMs: 500 });
      c = srv.clients;
      other = connect(srv.addr, { clientOptions: { 'grpc.use_local_subchannel_pool': 1 } });
    });
    after(async () => {
      other.close();
      await srv.dispose();
    });

    it('commit makes every write of the transaction visible, in both stores', async () => {
      await setValues(c, { 'c-old': 'before' });
      const tx = await begin(c.kv);
      await setValues(c, { 'c-a': '1', 'c-b': '2' }, tx);
      const del = await bidi(c.kv.delete(), [{ key: 'c-old', transactionId: tx }]);
      assert.deepEqual(del.out, [{ key: 'c-old' }]);
      const id = await storeBlob(c, 'attachment', 'meta', tx);
      assert.ok(id > 0n);
      const done = await commit(c.kv, tx);
      assertOk(done);
      assert.deepEqual(await getValue(other, 'c-a'), { value: '1' });
      assert.deepEqual(await getValue(other, 'c-b'), { value: '2' });
      assert.equal((await getValue(other, 'c-old')).err?.code, status.NOT_FOUND);
      assert.deepEqual(await getBlob(other, id), { data: 'attachment', metadata: 'meta' });
    });

    it('rollback discards every write; the id is then finished', async () => {
      await setValues(c, { 'r-k': 'original' });
      const tx = await begin(c.kv);
      await setValues(c, { 'r-k': 'changed', 'r-new': 'x' }, tx);
      const id = await storeBlob(c, 'never', undefined, tx);
      assertOk(await rollback(c.kv, tx));
      assert.deepEqual(await getValue(other, 'r-k'), { value: 'original' });
      assert.equal((await getValue(other, 'r-new')).err?.code, status.NOT_FOUND);
      assert.equal((await getBlob(other, id)).err?.code, status.NOT_FOUND);
      const again = await getValue(c, 'r-k', tx);
      assert.equal(again.err?.code, status.FAILED_PRECONDITION);
      assert.match(again.err!.details, /rolled back/);
      assert.equal((await commit(c.kv, tx)).err?.code, status.FAILED_PRECONDITION);
      assert.equal((await rollback(c.kv, tx)).err?.code, status.FAILED_PRECONDITION);
      // The id reserved for the discarded blob is never handed out again.
      const next = await storeBlob(c, 'after');
      assert.ok(next > id);
    });

    it('isolation: another client sees none of the uncommitted writes, then all of them', async () => {
      await setValues(c, { 'i-k': 'v0' });
      const blobId = await storeBlob(c, 'b0', 'm0');
      const tx = await begin(c.kv);
      await setValues(c, { 'i-k': 'v1', 'i-new': 'n1' }, tx);
      const upd = await bidi(c.blob.update(), [
        { id: blobId, bytes: Buffer.from('b1'), shouldUpdateMetadata: false, transactionId: tx },
      ]);
      assert.equal(upd.err, undefined, upd.err?.details);
      const newId = await storeBlob(c, 'fresh', undefined, tx);
      // Another connection and the plain requests of this one see the committed state only.
      for (const client of [other, c]) {
        assert.deepEqual(await getValue(client, 'i-k'), { value: 'v0' });
        assert.equal((await getValue(client, 'i-new')).err?.code, status.NOT_FOUND);
        assert.deepEqual(await getBlob(client, blobId), { data: 'b0', metadata: 'm0' });
        assert.equal((await getBlob(client, newId)).err?.code, status.NOT_FOUND);
      }
      assertOk(await commit(c.kv, tx));
      assert.deepEqual(await getValue(other, 'i-k'), { value: 'v1' });
      assert.deepEqual(await getValue(other, 'i-new'), { value: 'n1' });
      assert.deepEqual(await getBlob(other, blobId), { data: 'b1', metadata: 'm0' });
      assert.deepEqual(await getBlob(other, newId), { data: 'fresh', metadata: undefined });
    });

    it('reads inside the transaction see its own writes, deletes and blobs', async () => {
      await setValues(c, { 'y-k': 'old', 'y-gone': 'here' });
      const tx = await begin(c.kv);
      await setValues(c, { 'y-k': 'mine' }, tx);
      assert.deepEqual(await getValue(c, 'y-k', tx), { value: 'mine' });
      await bidi(c.kv.delete(), [{ key: 'y-gone', transactionId: tx }]);
      assert.equal((await getValue(c, 'y-gone', tx)).err?.code, status.NOT_FOUND);
      assert.deepEqual(await getValue(c, 'y-gone'), { value: 'here' });
      // One pipelined stream: writes and reads apply in request order.
      const mixed = await bidi(c.kv.get(), [{ key: 'y-k', transactionId: tx }, { key: 'y-k' }]);
      assert.deepEqual(mixed.out, [{ value: 'mine' }, { value: 'old' }]);
      const id = await storeBlob(c, 'draft', 'm', tx);
      assert.deepEqual(await getBlob(c, id, tx), { data: 'draft', metadata: 'm' });
      const upd = await bidi(c.blob.update(), [
        { id, shouldUpdateMetadata: true, metadata: 'final', transactionId: tx },
      ]);
      assert.equal(upd.err, undefined);
      assert.deepEqual(await getBlob(c, id, tx), { data: 'draft', metadata: 'final' });
      const delBlob = await bidi(c.blob.delete(), [{ id, transactionId: tx }]);
      assert.deepEqual(delBlob.out, [{ id }]);
      assert.equal((await getBlob(c, id, tx)).err?.code, status.NOT_FOUND);
      // A NOT_FOUND inside a transaction ends that stream, not the transaction.
      assert.equal((await getValue(c, 'y-missing', tx)).err?.code, status.NOT_FOUND);
      assertOk(await commit(c.kv, tx));
      assert.deepEqual(await getValue(other, 'y-k'), { value: 'mine' });
      assert.equal((await getValue(other, 'y-gone')).err?.code, status.NOT_FOUND);
      assert.equal((await getBlob(other, id)).err?.code, status.NOT_FOUND);
    });

    it('one transaction spans Kv and Blob and several streams and connections', async () => {
      const tx = await begin(c.kv);
      const setStream = c.kv.set();
      const storeStream = c.blob.store();
      const sets = bidi(setStream, [{ key: 's-1', value: 'one', transactionId: tx }]);
      const stores = bidi(storeStream, [{ bytes: Buffer.from('blob-one'), transactionId: tx }]);
      const [s, b] = await Promise.all([sets, stores]);
      assert.equal(s.err, undefined);
      const id = b.out[0]!.id;
      // The other connection may use the same id.
      await setValues(other, { 's-2': 'two' }, tx);
      assert.deepEqual(await getValue(other, 's-1', tx), { value: 'one' });
      assert.deepEqual(await getBlob(other, id, tx), { data: 'blob-one', metadata: undefined });
      assert.equal((await getValue(other, 's-2')).err?.code, status.NOT_FOUND);
      assertOk(await commit(other.kv, tx));
      assert.deepEqual(await getValue(c, 's-1'), { value: 'one' });
      assert.deepEqual(await getValue(c, 's-2'), { value: 'two' });
      assert.deepEqual(await getBlob(c, id), { data: 'blob-one', metadata: undefined });
    });

    it('a read-only transaction reads but rejects every write with FAILED_PRECONDITION', async () => {
      await setValues(c, { 'ro-k': 'v' });
      const tx = await begin(c.kv, { readOnly: true });
      assert.deepEqual(await getValue(c, 'ro-k', tx), { value: 'v' });
      const set = await bidi(c.kv.set(), [{ key: 'ro-k', value: 'w', transactionId: tx }]);
      assert.equal(set.err?.code, status.FAILED_PRECONDITION);
      assert.match(set.err!.details, /read-only/);
      const del = await bidi(c.kv.delete(), [{ key: 'ro-k', transactionId: tx }]);
      assert.equal(del.err?.code, status.FAILED_PRECONDITION);
      const store = await bidi(c.blob.store(), [{ bytes: Buffer.from('x'), transactionId: tx }]);
      assert.equal(store.err?.code, status.FAILED_PRECONDITION);
      const upd = await bidi(c.blob.update(), [
        { id: 1n, bytes: Buffer.from('x'), shouldUpdateMetadata: false, transactionId: tx },
      ]);
      assert.equal(upd.err?.code, status.FAILED_PRECONDITION);
      const bdel = await bidi(c.blob.delete(), [{ id: 1n, transactionId: tx }]);
      assert.equal(bdel.err?.code, status.FAILED_PRECONDITION);
      assertOk(await commit(c.kv, tx));
      assert.deepEqual(await getValue(c, 'ro-k'), { value: 'v' });
    });

    it('timeout_ms rolls an abandoned transaction back; its id then says it expired', async () => {
      const tx = await begin(c.kv, { timeoutMs: 50 });
      await setValues(c, { 't-k': 'uncommitted' }, tx);
      let last: ServiceError | undefined;
      await eventually(async () => {
        last = (await getValue(c, 't-k', tx)).err;
        return last !== undefined;
      }, 'the transaction expires');
      assert.equal(last!.code, status.FAILED_PRECONDITION);
      assert.match(last!.details, /expired/);
      const late = await commit(c.kv, tx);
      assert.equal(late.err?.code, status.FAILED_PRECONDITION);
      assert.match(late.err!.details, /expired/);
      assert.equal((await getValue(c, 't-k')).err?.code, status.NOT_FOUND);
    });

    it('a bad timeout_ms is INVALID_ARGUMENT', async () => {
      for (const timeoutMs of [0, -5]) {
        const r = await unary(c.kv.beginTransaction.bind(c.kv), { timeoutMs });
        assert.equal(r.err?.code, status.INVALID_ARGUMENT);
        assert.match(r.err!.details, /timeout_ms/);
      }
    });

    it('unknown and committed ids give FAILED_PRECONDITION on every RPC', async () => {
      const bogus = 'no-such-transaction';
      const answers = [
        (await bidi(c.kv.get(), [{ key: 'k', transactionId: bogus }])).err,
        (await bidi(c.kv.set(), [{ key: 'k', value: 'v', transactionId: bogus }])).err,
        (await bidi(c.kv.delete(), [{ key: 'k', transactionId: bogus }])).err,
        (await bidi(c.blob.get(), [{ id: 1n, transactionId: bogus }])).err,
        (await bidi(c.blob.store(), [{ bytes: Buffer.from('x'), transactionId: bogus }])).err,
        (await bidi(c.blob.update(), [{ id: 1n, shouldUpdateMetadata: true, transactionId: bogus }])).err,
        (await bidi(c.blob.delete(), [{ id: 1n, transactionId: bogus }])).err,
        (await commit(c.kv, bogus)).err,
        (await rollback(c.kv, bogus)).err,
      ];
      for (const err of answers) {
        assert.equal(err?.code, status.FAILED_PRECONDITION);
        assert.match(err!.details, /unknown transaction id "no-such-transaction"/);
      }
      assert.equal((await getValue(c, 'k')).err?.code, status.NOT_FOUND, 'nothing was written');
      const tx = await begin(c.kv);
      await setValues(c, { 'u-k': 'v' }, tx);
      assertOk(await commit(c.kv, tx));
      for (const err of [
        (await commit(c.kv, tx)).err,
        (await getValue(c, 'u-k', tx)).err,
        (await rollback(c.kv, tx)).err,
      ]) {
        assert.equal(err?.code, status.FAILED_PRECONDITION);
        assert.match(err!.details, /already committed/);
      }
    });

    it('conflicting read-modify-write transactions: the loser is ABORTED, no update is lost', async () => {
      await setValues(c, { counter: '0' });
      const t1 = await begin(c.kv);
      const t2 = await begin(other.kv);
      const v1 = Number((await getValue(c, 'counter', t1)).value);
      const v2 = Number((await getValue(other, 'counter', t2)).value);
      await setValues(c, { counter: String(v1 + 1) }, t1);
      await setValues(other, { counter: String(v2 + 1) }, t2);
      assertOk(await commit(c.kv, t1));
      const lost = await commit(other.kv, t2);
      assert.equal(lost.err?.code, status.ABORTED);
      assert.match(lost.err!.details, /counter/);
      // The loser is finished; its retry succeeds and both increments count.
      assert.match((await getValue(other, 'counter', t2)).err!.details, /aborted/);
      const t3 = await begin(other.kv);
      const v3 = Number((await getValue(other, 'counter', t3)).value);
      await setValues(other, { counter: String(v3 + 1) }, t3);
      assertOk(await commit(other.kv, t3));
      assert.deepEqual(await getValue(c, 'counter'), { value: '2' });
    });

    it('many concurrent increments: every committed one counts, every other is ABORTED', async () => {
      await setValues(c, { hot: '0' });
      const attempt = async (client: BuffDbClients): Promise<boolean> => {
        const tx = await begin(client.kv);
        const v = Number((await getValue(client, 'hot', tx)).value);
        await setValues(client, { hot: String(v + 1) }, tx);
        const r = await commit(client.kv, tx);
        if (r.err) assert.equal(r.err.code, status.ABORTED);
        return r.err === undefined;
      };
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => attempt(i % 2 ? c : other)));
      const committed = results.filter(Boolean).length;
      assert.ok(committed >= 1);
      assert.deepEqual(await getValue(c, 'hot'), { value: String(committed) });
    });

    it('write-write and blob conflicts abort the later committer; disjoint transactions both commit', async () => {
      const t1 = await begin(c.kv);
      const t2 = await begin(c.kv);
      await setValues(c, { ww: 'one' }, t1);
      await setValues(c, { ww: 'two' }, t2);
      assertOk(await commit(c.kv, t1));
      assert.equal((await commit(c.kv, t2)).err?.code, status.ABORTED);
      assert.deepEqual(await getValue(c, 'ww'), { value: 'one' });

      const id = await storeBlob(c, 'base');
      const b1 = await begin(c.kv);
      const b2 = await begin(c.kv);
      for (const [tx, data] of [
        [b1, 'from-1'],
        [b2, 'from-2'],
      ] as const) {
        const r = await bidi(c.blob.update(), [
          { id, bytes: Buffer.from(data), shouldUpdateMetadata: false, transactionId: tx },
        ]);
        assert.equal(r.err, undefined);
      }
      assertOk(await commit(c.kv, b2));
      const loser = await commit(c.kv, b1);
      assert.equal(loser.err?.code, status.ABORTED);
      assert.match(loser.err!.details, new RegExp(`blob ${id}`));
      assert.equal((await getBlob(c, id)).data, 'from-2');

      const d1 = await begin(c.kv);
      const d2 = await begin(c.kv);
      await setValues(c, { 'dj-1': 'a' }, d1);
      await setValues(c, { 'dj-2': 'b' }, d2);
      assertOk(await commit(c.kv, d2));
      assertOk(await commit(c.kv, d1));
    });

    it('plain requests are never blocked by an open transaction, and a plain write it read aborts it', async () => {
      await setValues(c, { 'p-k': 'v0' });
      const tx = await begin(c.kv);
      assert.deepEqual(await getValue(c, 'p-k', tx), { value: 'v0' });
      await setValues(c, { 'p-k': 'v-tx' }, tx);
      // While the transaction is open: plain reads, writes and deletes of the same key go through.
      await setValues(other, { 'p-k': 'plain' });
      assert.deepEqual(await getValue(other, 'p-k'), { value: 'plain' });
      const id = await storeBlob(other, 'plain-blob');
      assert.deepEqual((await bidi(other.blob.delete(), [{ id }])).out, [{ id }]);
      const r = await commit(c.kv, tx);
      assert.equal(r.err?.code, status.ABORTED);
      assert.deepEqual(await getValue(c, 'p-k'), { value: 'plain' });
    });

    it('a transaction whose client disconnects is rolled back', async () => {
      const leaving = connect(srv.addr, { clientOptions: { 'grpc.use_local_subchannel_pool': 1 } });
      const tx = await begin(leaving.kv);
      await setValues(leaving, { 'dc-k': 'uncommitted' }, tx);
      assert.deepEqual(await getValue(leaving, 'dc-k', tx), { value: 'uncommitted' });
      leaving.close();
      // Watch the server without using the id (a use would count as the client coming back).
      await eventually(
        async () => !srv.db.transactions.isOpen(tx),
        "the disconnected client's transaction is rolled back",
      );
      const late = await getValue(c, 'dc-k', tx);
      assert.equal(late.err?.code, status.FAILED_PRECONDITION);
      assert.match(late.err!.details, /disconnected/);
      assert.equal((await getValue(c, 'dc-k')).err?.code, status.NOT_FOUND);
      assert.equal((await commit(c.kv, tx)).err?.code, status.FAILED_PRECONDITION);
    });

    it('a client that opens a new connection for every call keeps its transaction', async () => {
      const fresh = async <T>(f: (cl: BuffDbClients) => Promise<T>): Promise<T> => {
        const cl = connect(srv.addr, { clientOptions: { 'grpc.use_local_subchannel_pool': 1 } });
        try {
          return await f(cl);
        } finally {
          cl.close();
        }
      };
      const tx = await fresh((cl) => begin(cl.kv));
      await fresh((cl) => setValues(cl, { 'pc-k': 'v' }, tx));
      assert.deepEqual(await fresh((cl) => getValue(cl, 'pc-k', tx)), { value: 'v' });
      assert.equal((await fresh((cl) => getValue(cl, 'pc-k'))).err?.code, status.NOT_FOUND);
      assertOk(await fresh((cl) => commit(cl.kv, tx)));
      assert.deepEqual(await fresh((cl) => getValue(cl, 'pc-k')), { value: 'v' });
    });

    it('a failed request inside a transaction does not apply the rest of its stream', async () => {
      await setValues(c, { 'f-never': 'kept' });
      const tx = await begin(c.kv);
      const r = await bidi(c.kv.delete(), [
        { key: 'f-missing', transactionId: tx },
        { key: 'f-never', transactionId: tx },
      ]);
      assert.equal(r.err?.code, status.NOT_FOUND);
      const s = await bidi(c.kv.set(), [
        { key: 'f-a', value: '1', transactionId: tx },
        { key: 'f-b', value: '2', transactionId: 'bogus' },
        { key: 'f-c', value: '3', transactionId: tx },
      ]);
      assert.deepEqual(s.out, [{ key: 'f-a' }]);
      assert.equal(s.err?.code, status.FAILED_PRECONDITION);
      // The same when the request before the failure is a plain one still being committed.
      const m = await bidi(c.kv.set(), [
        { key: 'f-plain', value: 'p' },
        { key: 'f-d', value: '4', transactionId: 'bogus' },
        { key: 'f-e', value: '5', transactionId: tx },
      ]);
      assert.deepEqual(m.out, [{ key: 'f-plain' }]);
      assert.equal(m.err?.code, status.FAILED_PRECONDITION);
      assertOk(await commit(c.kv, tx));
      assert.deepEqual(await getValue(c, 'f-a'), { value: '1' });
      assert.deepEqual(await getValue(c, 'f-plain'), { value: 'p' });
      assert.equal((await getValue(c, 'f-c')).err?.code, status.NOT_FOUND);
      assert.equal((await getValue(c, 'f-e')).err?.code, status.NOT_FOUND);
      assert.deepEqual(await getValue(c, 'f-never'), { value: 'kept' }, 'the delete after the failure was not applied');
    });
  });

  describe(`transactions survive kill -9 exactly as acknowledged [${backend}]`, () => {
    const dir = tempDir('buffdb-tx-crash-');
    let args: string[] = [];
    let stores: Awaited<ReturnType<typeof storeLocator>>;
    let blobStore = '';
    before(async () => {
      stores = await storeLocator(backend);
      const { kvStore, blobStore: b } = stores.locate('crash');
      blobStore = b;
      args = ['127.0.0.1:0', '--backend', backend, '--kv-store', kvStore, '--blob-store', blobStore];
    });
    after(async () => {
      await stores.dispose();
      rmSync(dir, { recursive: true, force: true });
    });
    /** Commit logs left behind: files beside the KV store, or (postgres) rows in the BLOB store. */
    const logsLeft = async (): Promise<string[]> =>
      capabilitiesOf(backend as BackendName).storeLocation === 'url'
        ? pgCommitLogs(blobStore)
        : readdirSync(dirname(blobStore)).filter((n) => n.includes('.txlog-'));

    async function withServer<T>(env: NodeJS.ProcessEnv, f: (cl: BuffDbClients) => Promise<T>): Promise<T> {
      const proc = await spawnServer(args, dir, env);
      const cl = connect(proc.addr);
      try {
        return await f(cl);
      } finally {
        cl.close();
        proc.child.kill('SIGKILL');
        await proc.exited;
      }
    }

    it('kill -9 before commit: nothing of the transaction survives', async () => {
      const id = await withServer({}, async (cl) => {
        await setValues(cl, { 'crash-pre': 'committed-before' });
        const tx = await begin(cl.kv);
        await setValues(cl, { 'crash-pre': 'tx-value', 'crash-new': 'x' }, tx);
        return storeBlob(cl, 'tx-blob', undefined, tx);
      });
      await withServer({}, async (cl) => {
        assert.deepEqual(await getValue(cl, 'crash-pre'), { value: 'committed-before' });
        assert.equal((await getValue(cl, 'crash-new')).err?.code, status.NOT_FOUND);
        assert.equal((await getBlob(cl, id)).err?.code, status.NOT_FOUND);
      });
    });

    it('kill -9 after the commit is acknowledged: all of it survives', async () => {
      const id = await withServer({}, async (cl) => {
        const tx = await begin(cl.kv);
        await setValues(cl, { 'crash-post': 'tx-value' }, tx);
        const blobId = await storeBlob(cl, 'tx-blob', 'm', tx);
        assertOk(await commit(cl.kv, tx));
        return blobId;
      });
      await withServer({}, async (cl) => {
        assert.deepEqual(await getValue(cl, 'crash-post'), { value: 'tx-value' });
        assert.deepEqual(await getBlob(cl, id), { data: 'tx-blob', metadata: 'm' });
      });
    });

    it('kill -9 between the BLOB and the KV commit: the commit log completes it at the next start', async () => {
      const id = await withServer({ BUFFDB_FAULT: 'crash-between-stores' }, async (cl) => {
        const tx = await begin(cl.kv);
        await setValues(cl, { 'crash-mid': 'tx-value' }, tx);
        const blobId = await storeBlob(cl, 'mid-blob', undefined, tx);
        const r = await commit(cl.kv, tx);
        assert.ok(r.err, 'the server died during the commit');
        return blobId;
      });
      assert.equal((await logsLeft()).length, 1, 'the commit log is left behind');
      await withServer({}, async (cl) => {
        assert.deepEqual(await getValue(cl, 'crash-mid'), { value: 'tx-value' });
        assert.deepEqual(await getBlob(cl, id), { data: 'mid-blob', metadata: undefined });
      });
      assert.deepEqual(await logsLeft(), [], 'the log is removed once replayed');
    });
  });

  describe(`transactions in the library API [${backend}]`, () => {
    let stores: Awaited<ReturnType<typeof storeLocator>>;
    let db: BuffDb;
    before(async () => {
      stores = await storeLocator(backend);
      db = await BuffDb.open({ backend, ...stores.locate('lib') });
    });
    after(async () => {
      await db.close();
      await stores.dispose();
    });

    it('transaction() commits when the callback resolves', async () => {
      const id = await db.transaction(async (tx) => {
        await tx.kv.set('lib-a', '1');
        const blobId = await tx.blob.store(Buffer.from('lib-blob'), 'meta');
        assert.equal(await tx.kv.get('lib-a'), '1');
        await assert.rejects(db.kv.getValue('lib-a'), { name: 'NotFoundError' });
        return blobId;
      });
      assert.equal(await db.kv.getValue('lib-a'), '1');
      const blob = await db.blob.getBlob(id);
      assert.equal(Buffer.from(blob.data).toString(), 'lib-blob');
      assert.equal(blob.metadata, 'meta');
    });

    it('transaction() rolls back when the callback throws', async () => {
      let blobId = 0;
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.kv.set('lib-b', '1');
          blobId = await tx.blob.store(Buffer.from('gone'));
          throw new Error('changed my mind');
        }),
        /changed my mind/,
      );
      await assert.rejects(db.kv.getValue('lib-b'), { name: 'NotFoundError' });
      await assert.rejects(db.blob.getBlob(blobId), { name: 'NotFoundError' });
    });

    it('explicit begin/commit/rollback, and ABORTED on conflict', async () => {
      await db.kv.setValue('lib-c', '0');
      const t1 = db.beginTransaction();
      const t2 = db.beginTransaction();
      await t1.kv.set('lib-c', String(Number(await t1.kv.get('lib-c')) + 1));
      await t2.kv.set('lib-c', String(Number(await t2.kv.get('lib-c')) + 1));
      await t1.commit();
      await assert.rejects(t2.commit(), (err: unknown) => err instanceof StoreError && err.code === status.ABORTED);
      assert.equal(await db.kv.getValue('lib-c'), '1');
      const t3 = db.beginTransaction();
      await t3.kv.delete('lib-c');
      await t3.rollback();
      assert.equal(await db.kv.getValue('lib-c'), '1');
      const ro = db.beginTransaction({ readOnly: true });
      await assert.rejects(
        ro.kv.set('lib-c', '9'),
        (err: unknown) => err instanceof StoreError && err.code === status.FAILED_PRECONDITION,
      );
      await ro.commit();
    });

    it('the in-process (transitive) clients serve transactions too', async () => {
      const t = await openTransitive({ backend, ...stores.locate('transitive') });
      try {
        const tx = await begin(t.kv);
        const clients = { ...t, close: () => {} } as unknown as BuffDbClients;
        await setValues(clients, { 'tr-k': 'v' }, tx);
        assert.equal((await getValue(clients, 'tr-k')).err?.code, status.NOT_FOUND);
        assertOk(await commit(t.kv, tx));
        assert.deepEqual(await getValue(clients, 'tr-k'), { value: 'v' });
      } finally {
        await t.close();
      }
    });
  });
}
