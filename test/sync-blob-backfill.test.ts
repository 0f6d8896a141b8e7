/**
 * Blobs stored before a server took part in sync, and the blob log's upkeep, between real
 * `buffdb run` processes (docs/sync.md "Blobs stored before sync", "Bounded blob log"): a hub's and
 * an edge's old blobs reach the other side with their ids and bytes (two with one id: the later
 * keeps it, the other moves to a new id on every site); a backfill cut by kill -9 resumes, logging
 * nothing twice; the hub compacts what every edge has applied, a late edge within
 * --sync-max-offline still gets everything, one away longer gets a reset.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { connect } from '../src/client/network.js';
import { converged, sha, storeOne } from './helpers/blob-sync.js';
import type { StoreDump } from './helpers/dump.js';
import { bidi, CLI, eventually, TEST_BACKENDS } from './helpers/server.js';
import { Site } from './helpers/sync.js';

const KiB = 1024;

/** Blob ids a site moved (a blob from before sync that lost its id), from its log. */
function movedIds(site: Site): { from: bigint; to: bigint }[] {
  const out: { from: bigint; to: bigint }[] = [];
  for (const m of site.proc!.stderr().matchAll(/"id":(\d+),"newId":(\d+)/g)) {
    out.push({ from: BigInt(m[1]!), to: BigInt(m[2]!) });
  }
  return out;
}

async function storeAll(addr: string, blobs: Buffer[]): Promise<bigint[]> {
  const c = connect(addr);
  const ids: bigint[] = [];
  for (const bytes of blobs) {
    ids.push(bytes.length > 256 * KiB ? (await c.upload(bytes, {})).id : await storeOne(c.blob, { bytes }));
  }
  return ids;
}

for (const backend of TEST_BACKENDS) {
  describe(`blob sync of blobs stored before sync, and the blob log's upkeep [${backend}]`, () => {
    const sites: Site[] = [];
    const track = (s: Site): Site => {
      sites.push(s);
      return s;
    };
    after(async () => {
      for (const s of sites) await s.dispose();
    });

    it("a hub's and an edge's blobs from before sync reach the other side with their ids and SHA-256; of two with one id, neither is lost", async () => {
      const hub = track(await Site.start('prehub', backend));
      const edge = track(await Site.start('preedge', backend));
      const hubBlobs = [randomBytes(1000), randomBytes(600 * KiB)];
      const edgeBlobs = [randomBytes(2000), randomBytes(700 * KiB), randomBytes(3000)];
      const hubIds = await storeAll(hub.addr, hubBlobs);
      const edgeIds = await storeAll(edge.addr, edgeBlobs);
      assert.deepEqual(hubIds, edgeIds.slice(0, 2), 'both sites handed out the same small ids');
      await edge.stop();
      await edge.restart(['--sync-to', hub.addr]);
      const all = [...hubBlobs, ...edgeBlobs].map(sha).sort();
      let moved: { from: bigint; to: bigint }[] = [];
      await eventually(
        async () => {
          moved = [...movedIds(hub), ...movedIds(edge)];
          return moved.length === 2;
        },
        'the two blobs that lost their ids are moved',
        60_000,
      );
      assert.deepEqual(moved.map((m) => m.from).sort(), hubIds.slice().sort());
      const ids = [...edgeIds, ...moved.map((m) => m.to)];
      let dump: StoreDump['blobs'] = [];
      await eventually(
        async () => {
          const [h, e] = await Promise.all([hub.dump({ blobIds: ids }), edge.dump({ blobIds: ids })]);
          dump = h.blobs;
          return JSON.stringify(h.blobs) === JSON.stringify(e.blobs) && h.blobs.length === all.length;
        },
        'hub and edge hold the same five blobs under the same ids',
        60_000,
      );
      assert.deepEqual(dump.map(([, digest]) => digest).sort(), all, 'every blob from before sync is kept');
      const byId = new Map(dump.map(([id, digest]) => [id, digest]));
      assert.equal(byId.get(edgeIds[2]!.toString()), sha(edgeBlobs[2]!), 'an id only the edge had keeps its blob');
    });

    it('a backfill cut by kill -9 resumes: every blob arrives, none is logged twice', async () => {
      const hub = track(await Site.start('bfhub', backend));
      const edge = track(await Site.start('bfedge', backend));
      const n = 700;
      const blobs = Array.from({ length: n }, (_, i) => Buffer.from(`old blob ${i}`));
      const c = connect(edge.addr);
      const res = await bidi(
        c.blob.store(),
        blobs.map((bytes) => ({ bytes })),
      );
      assert.equal(res.err, undefined, res.err?.details);
      const ids = res.out.map((r) => r.id);
      await edge.stop();
      await edge.restart(['--sync-to', hub.addr]);
      // The backfill starts as the blob link opens (a page of 500 per commit: two here): cut it.
      await edge.kill9();
      await edge.restart(['--sync-to', hub.addr]);
      const expected: StoreDump['blobs'] = blobs.map((b, i) => [ids[i]!.toString(), sha(b), null]);
      await converged([hub.addr, edge.addr], ids, expected, 120_000).catch((err: Error) => {
        throw new Error(
          `${err.message}\nhub: ${hub.proc?.stderr().slice(-1500)}\nedge: ${edge.proc?.stderr().slice(-1500)}`,
        );
      });
      const status = await edge.status();
      assert.equal(status.blobLogLast, BigInt(n), 'one log entry per blob: none logged twice');
    });

    it('the hub compacts what every edge has applied; a late edge within --sync-max-offline gets everything, one away longer gets a reset', async () => {
      const hub = track(await Site.start('cphub', backend, ['--sync-max-offline', '6s']));
      const fast = track(await Site.start('cpfast', backend, ['--sync-to', hub.addr]));
      const late = track(await Site.start('cplate', backend, ['--sync-to', hub.addr]));
      const first = await storeAll(hub.addr, [randomBytes(500), randomBytes(500), randomBytes(500)]);
      const addrs = [hub.addr, fast.addr, late.addr];
      const summary = async (ids: bigint[]) => (await hub.dump({ blobIds: ids })).blobs;
      await converged(addrs, first, await summary(first));
      await eventually(
        async () => {
          const s = await hub.status();
          return s.blobLogLast > 0n && s.blobLogCompacted === s.blobLogLast;
        },
        'both edges applied everything: the hub compacts its blob log',
        30_000,
      );
      // Away for a while, within the window: the late edge still gets every change.
      await late.stop();
      const second = await storeAll(hub.addr, [randomBytes(500)]);
      await bidi(connect(hub.addr).blob.delete(), [{ id: first[0]! }]);
      const ids = [...first, ...second];
      await converged([hub.addr, fast.addr], ids, await summary(ids));
      const held = await hub.status();
      assert.ok(held.blobLogCompacted < held.blobLogLast, 'the late edge holds the log back');
      await late.restart();
      await converged(addrs, ids, await summary(ids));
      // Away longer than the window: the log goes on without it, and old tombstones go.
      await late.stop();
      await bidi(connect(hub.addr).blob.delete(), [{ id: first[1]! }]);
      const away = Date.now();
      await eventually(async () => Date.now() - away > 6500, 'the window passes', 15_000);
      // The fast edge's next acknowledgement lets the hub compact past the late edge.
      // One large enough that its data follows the change (also inside the late edge's reset).
      const third = await storeAll(hub.addr, [randomBytes(500), randomBytes(400 * KiB)]);
      ids.push(...third);
      await converged([hub.addr, fast.addr], ids, await summary(ids));
      await eventually(
        async () => {
          const s = await hub.status();
          return s.blobLogCompacted === s.blobLogLast;
        },
        'compacted past the late edge',
        30_000,
      );
      await late.restart();
      await late.proc!.waitForStderr(/receiving its current blobs \(blob reset\)/, 30_000);
      await converged(addrs, ids, await summary(ids), 60_000);
      const onLate = (await late.dump({ blobIds: ids })).blobs.map(([id]) => id);
      assert.ok(!onLate.includes(first[1]!.toString()), 'a blob deleted while it was away is not resurrected');
      // The CLI shows the same figures.
      const cli = spawnSync(process.execPath, [CLI, 'sync', 'status', '--addr', hub.addr, '--json'], {
        encoding: 'utf8',
      });
      assert.equal(cli.status, 0, cli.stderr);
      const shown = JSON.parse(cli.stdout) as { blobs: { logLast: number; logCompacted: number } };
      const s = await hub.status();
      assert.ok(shown.blobs.logLast > 0 && shown.blobs.logLast <= Number(s.blobLogLast));
      assert.ok(shown.blobs.logCompacted <= shown.blobs.logLast);
    });
  });
}
