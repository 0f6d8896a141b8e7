/**
 * A large blob on its way from an edge to the hub, interrupted mid-transfer — the link cut by a
 * TCP proxy, then the edge killed with SIGKILL and restarted — resumes where it stopped: the bytes
 * through the proxy show at most one chunk sent again per interruption, and KV changes still
 * travel while the blob does. A blob coming down from the hub resumes the same way.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { connectEtcd } from '../src/client/etcd.js';
import { connect } from '../src/client/network.js';
import { PutRequest } from '../src/generated/etcd/etcdserverpb/rpc.js';
import { CHUNK_SIZE } from '../src/store/blob/large-layout.js';
import { converged, type Fleet, sha, stopAll } from './helpers/blob-sync.js';
import { dumpStore } from './helpers/dump.js';
import { eventually, type ServerProcess, serverStores, spawnServer, TEST_BACKENDS } from './helpers/server.js';
import { startProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const MiB = 1024 * 1024;
/** Framing, the KV link, keepalives and handshakes beside the blob bytes. */
const OVERHEAD = 256 * 1024;
/** The proxy's rate while a blob travels: slow enough to interrupt it halfway. */
const RATE = 16 * MiB;

for (const backend of TEST_BACKENDS) {
  describe(`blob sync resumes an interrupted large blob [${backend}]`, () => {
    const fleet: Fleet = { stores: [], procs: [] };
    let hub: ServerProcess;
    let proxy: TcpProxy;
    before(async () => {
      fleet.stores = await Promise.all([0, 1].map(() => serverStores(backend, 'buffdb-blobresume-')));
      hub = await spawnServer(fleet.stores[0]!.args(), fleet.stores[0]!.dir);
      fleet.procs.push(hub);
      const [host, port] = hub.addr.split(':') as [string, string];
      proxy = await startProxy({ host, port: Number(port) });
    });
    after(async () => {
      await proxy.close();
      await stopAll(fleet);
    });

    /** The edge running now. */
    let current: ServerProcess | undefined;
    const startEdge = async (): Promise<ServerProcess> => {
      const edge = await spawnServer(fleet.stores[1]!.args('--sync-to', proxy.address), fleet.stores[1]!.dir);
      fleet.procs.push(edge);
      current = edge;
      return edge;
    };

    /** Stores `size` bytes on the edge; interrupts its transfer halfway with `interrupt`; answers the bytes sent up. */
    const transfer = async (
      edge: ServerProcess,
      size: number,
      interrupt: () => Promise<ServerProcess>,
    ): Promise<{ id: bigint; data: Buffer; sent: number; edge: ServerProcess }> => {
      const data = randomBytes(size);
      const client = connect(edge.addr);
      const { id } = await client.upload(data, { metadata: `size ${size}` }).finally(() => client.close());
      const from = proxy.bytes.up;
      await eventually(() => proxy.bytes.up - from > size / 2, 'half the blob went through the proxy', 30_000);
      // KV changes are not held behind the blob: a put made now reaches the hub before it.
      const key = Buffer.from(`written during ${size}`);
      const etcd = connectEtcd(edge.addr);
      await new Promise((resolve, reject) =>
        etcd.kv.put(PutRequest.fromPartial({ key, value: key }), (err) => (err ? reject(err) : resolve(undefined))),
      ).finally(() => etcd.close());
      await eventually(
        async () => (await dumpStore(hub.addr, { blobIds: [] })).kv.some(([k]) => k === key.toString('base64')),
        'the put reached the hub',
        10_000,
      );
      assert.ok(proxy.bytes.up - from < size, 'the put went up while the blob was still on its way');
      const now = await interrupt();
      await converged([hub.addr, now.addr], [id], [[id.toString(), sha(data), `size ${size}`]], 60_000);
      return { id, data, sent: proxy.bytes.up - from, edge: now };
    };

    it('a cut link and a killed edge each re-send at most one chunk', async (t) => {
      proxy.setRate(RATE);
      let edge = await startEdge();
      const size = 64 * MiB;
      const cut = await transfer(edge, size, async () => {
        proxy.cut();
        return edge;
      });
      t.diagnostic(`cut once: ${cut.sent - size} bytes beyond the blob's ${size}`);
      assert.ok(cut.sent <= size + CHUNK_SIZE + OVERHEAD, `${cut.sent} bytes sent for a ${size}-byte blob cut once`);
      edge = cut.edge;

      const killed = await transfer(edge, 32 * MiB, async () => {
        edge.child.kill('SIGKILL');
        await edge.exited;
        return startEdge();
      });
      t.diagnostic(`edge killed once: ${killed.sent - 32 * MiB} bytes beyond the blob's ${32 * MiB}`);
      assert.ok(
        killed.sent <= 32 * MiB + CHUNK_SIZE + OVERHEAD,
        `${killed.sent} bytes sent for a ${32 * MiB}-byte blob whose edge was killed once`,
      );
    });

    it('a blob coming down from the hub resumes after a cut link', async (t) => {
      proxy.setRate(RATE);
      const edge = current ?? (await startEdge());
      const size = 32 * MiB;
      const data = randomBytes(size);
      const client = connect(hub.addr);
      const { id } = await client.upload(data, { metadata: 'from the hub' }).finally(() => client.close());
      const from = proxy.bytes.down;
      await eventually(() => proxy.bytes.down - from > size / 2, 'half the blob came through the proxy', 30_000);
      proxy.cut();
      await converged([hub.addr, edge.addr], [id], [[id.toString(), sha(data), 'from the hub']], 60_000);
      const sent = proxy.bytes.down - from;
      t.diagnostic(`cut once: ${sent - size} bytes beyond the blob's ${size}`);
      assert.ok(sent <= size + CHUNK_SIZE + OVERHEAD, `${sent} bytes sent down for a ${size}-byte blob cut once`);
    });
  });
}
