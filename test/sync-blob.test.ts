/**
 * Blob replication between real `buffdb run` processes (docs/sync.md "Blobs"): a hub and two edges
 * on loopback, blobs compared as full dumps (id, SHA-256, metadata); ids fleet-unique; updates,
 * deletes and concurrent writes converge.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { connect } from '../src/client/network.js';
import { type StatusResponse, SyncClient } from '../src/generated/sync.js';
import { ID_SLOT } from '../src/store/blob/blob-sync-log.js';
import { converged, type Fleet, sha, stopAll, storeOne } from './helpers/blob-sync.js';
import { dumpStore, type StoreDump } from './helpers/dump.js';
import { cliSync } from './helpers/ops.js';
import {
  bidi,
  eventually,
  type ServerProcess,
  type ServerStores,
  serverStores,
  spawnServer,
  TEST_BACKENDS,
} from './helpers/server.js';

const MiB = 1024 * 1024;

type Unary<Req, Res> = (req: Req, cb: (err: ServiceError | null, res?: Res) => void) => unknown;

function txCall<Res, Req = object>(f: Unary<Req, Res>, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => f(req, (err, res) => (err ? reject(err) : resolve(res!))));
}

/** buffdb.sync.Sync/Status of a server. */
async function edgeStatus(addr: string): Promise<StatusResponse> {
  const client = new SyncClient(addr, credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) => client.status({}, (err, s) => (err ? reject(err) : resolve(s))));
  } finally {
    client.close();
  }
}

/** The dump of one server whose blob writes won (whatever the winner, the others must match it). */
async function convergedToOne(addrs: string[], ids: bigint[]): Promise<StoreDump['blobs']> {
  let last: string[] = [];
  await eventually(
    async () => {
      last = await Promise.all(addrs.map(async (a) => JSON.stringify((await dumpStore(a, { blobIds: ids })).blobs)));
      return last.every((d) => d === last[0]);
    },
    'every server agrees',
    30_000,
  );
  return JSON.parse(last[0]!) as StoreDump['blobs'];
}

for (const backend of TEST_BACKENDS) {
  describe(`blob sync: a hub and two edges [${backend}]`, () => {
    const fleet: Fleet = { stores: [], procs: [] };
    let hub: ServerProcess;
    let edgeA: ServerProcess;
    let edgeB: ServerProcess;
    before(async () => {
      fleet.stores = await Promise.all([0, 1, 2].map(() => serverStores(backend, 'buffdb-blobsync-')));
      const [h, a, b] = fleet.stores as [ServerStores, ServerStores, ServerStores];
      hub = await spawnServer(h.args(), h.dir);
      fleet.procs.push(hub);
      edgeA = await spawnServer(a.args('--sync-to', hub.addr), a.dir);
      fleet.procs.push(edgeA);
      edgeB = await spawnServer(b.args('--sync-to', hub.addr), b.dir);
      fleet.procs.push(edgeB);
    });
    after(() => stopAll(fleet));

    it('blobs travel edge → hub → other edge with their ids and bytes; updates, deletes and concurrent writes converge', async () => {
      const [ca, cb, ch] = [connect(edgeA.addr), connect(edgeB.addr), connect(hub.addr)];
      const addrs = [hub.addr, edgeA.addr, edgeB.addr];
      try {
        const small = randomBytes(1000);
        const big = randomBytes(3 * MiB + 12_345);
        const a1 = await storeOne(ca.blob, { bytes: small, metadata: 'a1' });
        const a2 = (await ca.upload(big, { metadata: 'a2' })).id;
        const b1 = await storeOne(cb.blob, { bytes: Buffer.alloc(0) });
        const ids = [a1, a2, b1];
        let expected: StoreDump['blobs'] = [
          [a1.toString(), sha(small), 'a1'],
          [a2.toString(), sha(big), 'a2'],
          [b1.toString(), sha(Buffer.alloc(0)), null],
        ];
        await converged(addrs, ids, expected);
        const status = await edgeStatus(edgeA.addr);
        assert.equal(status.blobConnected, true);
        assert.ok(
          status.blobsSent >= 2n && status.blobBytesSent >= BigInt(big.length),
          JSON.stringify(status, (_, v) => (typeof v === 'bigint' ? Number(v) : v)),
        );
        // The hub took part once an edge linked: its blobs get fleet ids and travel down too.
        const hubData = randomBytes(700 * 1024);
        const h1 = await storeOne(ch.blob, { bytes: hubData, metadata: 'h1' });
        ids.push(h1);
        expected.push([h1.toString(), sha(hubData), 'h1']);
        await converged(addrs, ids, expected);

        // Fleet ids: ≥ 2^21, the low 21 bits name the node, each node's ids increase.
        const tag = (id: bigint): bigint => id % BigInt(ID_SLOT);
        for (const id of ids) assert.ok(id >= BigInt(ID_SLOT), `id ${id} is a fleet id`);
        assert.equal(tag(a1), tag(a2));
        assert.ok(a2 > a1);
        assert.equal(new Set([tag(a1), tag(b1), tag(h1)]).size, 3, 'three nodes, three tags');
        assert.ok(h1 > a2 && h1 > b1, 'the hub allocates above every id it has seen');

        // Stored at once on both edges: never the same id.
        const many = await Promise.all(
          [ca, cb].flatMap((c, n) =>
            Array.from({ length: 8 }, (_, i) => storeOne(c.blob, { bytes: Buffer.from(`n${n}-${i}`) })),
          ),
        );
        assert.equal(new Set(many.map(String)).size, many.length, `ids collide: ${many.join(' ')}`);
        ids.push(...many);
        const all = await convergedToOne(addrs, ids);
        assert.equal(all.length, ids.length);
        for (const [id, digest] of all) {
          const k = many.findIndex((m) => m.toString() === id);
          if (k >= 0) assert.equal(digest, sha(Buffer.from(`n${Math.floor(k / 8)}-${k % 8}`)));
        }

        // Metadata on one edge, data on the hub, a delete on the other edge.
        await bidi(cb.blob.update(), [{ id: a1, shouldUpdateMetadata: true, metadata: 'a1 again' }]);
        const newer = randomBytes(2 * MiB);
        await bidi(ch.blob.update(), [{ id: a2, bytes: newer, shouldUpdateMetadata: false }]);
        await bidi(ca.blob.delete(), [{ id: b1 }]);
        expected = (await dumpStore(hub.addr, { blobIds: ids })).blobs
          .filter(([id]) => id !== b1.toString())
          .map(([id, digest, meta]): StoreDump['blobs'][number] => {
            if (id === a1.toString()) return [id, sha(small), 'a1 again'];
            if (id === a2.toString()) return [id, sha(newer), 'a2'];
            return [id, digest, meta];
          });
        await converged(addrs, ids, expected);

        // Concurrent writes to one blob: the same winner everywhere.
        await Promise.all([
          bidi(ca.blob.update(), [{ id: h1, shouldUpdateMetadata: true, metadata: 'from A' }]),
          bidi(cb.blob.update(), [{ id: h1, bytes: Buffer.from('from B'), shouldUpdateMetadata: false }]),
          bidi(ch.blob.update(), [{ id: h1, shouldUpdateMetadata: true, metadata: 'from hub' }]),
        ]);
        const final = await convergedToOne(addrs, ids);
        assert.ok(final.some(([id]) => id === h1.toString()));
      } finally {
        for (const c of [ca, cb, ch]) c.close();
      }
    });

    it('blob writes of a transaction travel once it commits; a rolled-back id is not handed out again', async () => {
      const c = connect(edgeB.addr);
      try {
        const before = await storeOne(c.blob, { bytes: Buffer.from('outside') });
        const tx = await txCall<{ transactionId: string }>(c.kv.beginTransaction.bind(c.kv), {});
        const transactionId = tx.transactionId;
        const inTx = await storeOne(c.blob, { bytes: Buffer.from('inside'), metadata: 'tx', transactionId });
        await bidi(c.blob.update(), [{ id: before, shouldUpdateMetadata: true, metadata: 'tx too', transactionId }]);
        assert.ok(inTx > before && inTx % BigInt(ID_SLOT) === before % BigInt(ID_SLOT), `${inTx} after ${before}`);
        assert.equal(
          (
            await txCall<{ success: boolean }, { transactionId: string }>(c.kv.commitTransaction.bind(c.kv), {
              transactionId,
            })
          ).success,
          true,
        );
        const expected: StoreDump['blobs'] = [
          [before.toString(), sha(Buffer.from('outside')), 'tx too'],
          [inTx.toString(), sha(Buffer.from('inside')), 'tx'],
        ];
        await converged([hub.addr, edgeA.addr, edgeB.addr], [before, inTx], expected);
        const rolled = await txCall<{ transactionId: string }>(c.kv.beginTransaction.bind(c.kv), {});
        const reserved = await storeOne(c.blob, { bytes: Buffer.from('gone'), transactionId: rolled.transactionId });
        await txCall(c.kv.rollbackTransaction.bind(c.kv), { transactionId: rolled.transactionId });
        assert.ok((await storeOne(c.blob, { bytes: Buffer.from('after') })) > reserved);
      } finally {
        c.close();
      }
    });

    it("a blob the CLI stores in a stopped edge's BLOB store gets a fleet id and goes up when the edge is back", async () => {
      const stores = fleet.stores[1]!;
      const args = stores.args('--sync-to', hub.addr);
      const probe = await storeOne(connect(edgeA.addr).blob, { bytes: Buffer.from('probe') });
      edgeA.child.kill('SIGTERM');
      await edgeA.exited;
      writeFileSync(join(stores.dir, 'offline.bin'), 'stored offline');
      const blobStore = args[args.indexOf('--blob-store') + 1]!;
      const r = cliSync(stores.dir, [
        'blob',
        'store',
        'offline.bin',
        'cli',
        '--store',
        blobStore,
        '--backend',
        backend,
      ]);
      assert.equal(r.status, 0, r.stderr);
      const id = BigInt(r.out.trim());
      assert.equal(id % BigInt(ID_SLOT), probe % BigInt(ID_SLOT), "the edge's node tag");
      assert.ok(id > probe);
      edgeA = await spawnServer(args, stores.dir);
      fleet.procs.push(edgeA);
      const expected: StoreDump['blobs'] = [[id.toString(), sha(Buffer.from('stored offline')), 'cli']];
      await converged([hub.addr, edgeA.addr, edgeB.addr], [id], expected);
    });
  });
}
