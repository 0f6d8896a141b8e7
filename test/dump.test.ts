/** dumpStore (test/helpers/dump.ts): everything a running server holds, comparable across servers. */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadBackend } from '../src/backends/index.js';
import { connectEtcd } from '../src/client/etcd.js';
import { PutRequest } from '../src/generated/etcd/etcdserverpb/rpc.js';
import { dumpStore } from './helpers/dump.js';
import { bidi, startTestServer, TEST_BACKENDS, type TestServer } from './helpers/server.js';

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

const BINARY_KEY = Buffer.of(0xff, 0x00, 0x01);
const BINARY_VALUE = Buffer.of(0x00, 0xfe);
const LARGE = Buffer.alloc(1536 * 1024, 'large');

/** The same writes on any server: KV through Kv and etcd Put, inline and uploaded blobs, a deleted blob. */
async function fill(srv: TestServer): Promise<bigint[]> {
  const set = await bidi(srv.clients.kv.set(), [
    { key: 'b', value: 'two' },
    { key: 'a', value: 'one' },
    { key: 'é/ü', value: 'unicode' },
    { key: 'c', value: '' },
  ]);
  assert.equal(set.err, undefined);
  const etcd = connectEtcd(srv.addr);
  try {
    await new Promise<void>((resolve, reject) =>
      etcd.kv.put(PutRequest.fromPartial({ key: BINARY_KEY, value: BINARY_VALUE }), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  } finally {
    etcd.close();
  }
  const stored = await bidi(srv.clients.blob.store(), [
    { bytes: Buffer.from('first'), metadata: 'meta' },
    { bytes: Buffer.from('gone') },
    { bytes: Buffer.from('third') },
  ]);
  assert.equal(stored.err, undefined);
  const ids = stored.out.map((r) => r.id);
  const deleted = await bidi(srv.clients.blob.delete(), [{ id: ids[1]! }]);
  assert.equal(deleted.err, undefined);
  const large = await srv.clients.upload(LARGE, { metadata: '{"big":true}' });
  return [...ids, large.id];
}

for (const backend of TEST_BACKENDS) {
  describe(`dumpStore [${backend}]`, async () => {
    const { capabilities } = await loadBackend(backend);
    let one: TestServer;
    let two: TestServer;
    let ids: bigint[];
    before(async () => {
      one = await startTestServer({ backend });
      two = await startTestServer({ backend });
      ids = await fill(one);
      assert.deepEqual(await fill(two), ids);
    });
    after(async () => {
      await one?.dispose();
      await two?.dispose();
    });

    /** Without SQL the ids must be given: a range past the last id will do, missing ones are left out. */
    const options = () => (capabilities.sqlDialect ? {} : { blobIds: [ids.at(-1)! + 1n, ...ids, 0n] });

    it('reads every key and blob in a deterministic order', async () => {
      const dump = await dumpStore(one.addr, options());
      assert.deepEqual(dump.kv, [
        [b64('a'), b64('one')],
        [b64('b'), b64('two')],
        [b64('c'), ''],
        [b64('é/ü'), b64('unicode')],
        [b64(BINARY_KEY), b64(BINARY_VALUE)],
      ]);
      assert.deepEqual(dump.blobs, [
        [String(ids[0]), sha(Buffer.from('first')), 'meta'],
        [String(ids[2]), sha(Buffer.from('third')), null],
        [String(ids[3]), sha(LARGE), '{"big":true}'],
      ]);
      assert.deepEqual(await dumpStore(one.addr, { ...options(), pageSize: 2 }), dump, 'paged Range reads the same');
    });

    it('two servers with the same writes dump equal; one change makes them differ', async () => {
      assert.deepStrictEqual(await dumpStore(one.addr, options()), await dumpStore(two.addr, options()));
      assert.equal((await bidi(two.clients.kv.set(), [{ key: 'b', value: 'changed' }])).err, undefined);
      assert.notDeepStrictEqual(await dumpStore(one.addr, options()), await dumpStore(two.addr, options()));
    });

    if (capabilities.sqlDialect) {
      it('an explicit blobIds list reads only those blobs', async () => {
        const dump = await dumpStore(one.addr, { blobIds: [ids[3]!, ids[1]!] });
        assert.deepEqual(
          dump.blobs.map(([id]) => id),
          [String(ids[3])],
        );
      });
    } else {
      it('without SQL and without blobIds it fails, saying to pass blobIds', async () => {
        await assert.rejects(dumpStore(one.addr), /blobIds/);
      });
    }
  });
}
