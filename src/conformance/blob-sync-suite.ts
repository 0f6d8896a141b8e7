/**
 * The blob part of the sync conformance suite (docs/sync.md "Blobs"), through the store layer on
 * whatever backend the suite runs: the backfill of blobs stored before sync (resumable), blobs of
 * two sites with one id (the loser moves to a new id), log compaction once every peer has applied
 * it (a peer past --sync-max-offline gets a reset), and far-future stamps clamped by the hub. Sites
 * are stores of the backend under test; changes go between them as the blob link would send them.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, describe, it } from 'node:test';
import {
  type BlobFilter,
  BlobSyncStore,
  type Outgoing,
  type ReceiveContext,
  wantedBy,
} from '../store/blob/blob-sync-store.js';
import type { BuffDb, BuffDbOptions } from '../store/buffdb.js';
import { hlcOf } from '../store/sync/stamp.js';
import { clockPassed } from './sync-suite.js';

type Open = (name: string, extra?: Partial<BuffDbOptions>) => Promise<BuffDb>;

interface Site {
  db: BuffDb;
  sync: BlobSyncStore;
  edge: boolean;
}

const sha = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

async function storeMany(db: BuffDb, texts: string[]): Promise<number[]> {
  const ids: number[] = [];
  for (const t of texts) ids.push(await db.blob.storeBlob(Buffer.from(t)));
  return ids;
}

/** Sends one change (inline data: these tests' blobs are small) and answers the receiver's verdict. */
async function deliver(from: Site, to: Site, out: Outgoing): Promise<void> {
  const ctx: ReceiveContext = {
    clamp: from.edge,
    acked: to.edge ? () => Number.MAX_SAFE_INTEGER : undefined,
  };
  const change = to.sync.clamped(out.change, ctx);
  assert.equal(await to.sync.receive(from.db.sync.site, change, ctx), 'done', 'a small blob needs no data transfer');
}

const filterFor = (from: Site, to: Site): BlobFilter =>
  from.edge ? { localOnly: true, peer: undefined } : { localOnly: false, peer: to.db.sync.site };

/** Sends `from`'s blob changes after `to`'s cursor, as a link would; a reset first if needed. */
async function ship(from: Site, to: Site): Promise<{ reset: boolean }> {
  const peer = from.db.sync.site;
  let cursor = await to.sync.applied(peer);
  const reset = await from.sync.needsReset(cursor);
  if (reset) {
    const seq = (await from.sync.read(Number.MAX_SAFE_INTEGER - 1, 1)).last;
    let at = 0;
    let previous = 0;
    for (;;) {
      const page = await from.sync.resetPage(at, previous, seq, { localOnly: from.edge, peer: undefined });
      if (page.last === at) break;
      for (const out of page.outgoing) await deliver(from, to, out);
      at = page.last;
      previous = page.previous;
    }
    const end = { seq, id: Number.MAX_SAFE_INTEGER, op: 'none' as const, resetAfter: previous };
    const none = { ...end, stamp: { hlc: 0, site: Buffer.alloc(8) }, metadata: null, size: 0 };
    await deliver(from, to, {
      change: { ...none, sha256: Buffer.alloc(0), inline: undefined, origin: undefined },
      reader: undefined,
    });
    cursor = seq;
  }
  for (;;) {
    const { entries } = await from.sync.read(cursor, 64);
    if (entries.length === 0) break;
    for (const entry of entries) {
      const out = wantedBy(entry, filterFor(from, to)) ? await from.sync.outgoing(entry) : undefined;
      if (out) await deliver(from, to, out);
      cursor = entry.seq;
    }
  }
  await from.sync.acknowledged(to.db.sync.site, cursor, true);
  return { reset };
}

/** id → SHA-256 of the data, for the ids given (missing ones left out). */
async function contents(db: BuffDb, ids: number[]): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (const id of [...new Set(ids)].sort((x, y) => x - y)) {
    try {
      out.set(id, sha((await db.blob.getBlob(id)).data));
    } catch {
      // not here
    }
  }
  return out;
}

export function blobSyncConformance(open: Open): void {
  describe('blob sync (store layer)', () => {
    const opened: BuffDb[] = [];
    let n = 0;
    const site = async (edge: boolean, maxOfflineMs?: number): Promise<Site> => {
      const db = await open(`blobsync${n++}`);
      opened.push(db);
      return { db, sync: new BlobSyncStore(db.blob, { maxOfflineMs }), edge };
    };
    after(async () => {
      await Promise.all(opened.map((db) => db.close()));
    });

    it('the backfill logs the blobs stored before sync with their ids, a page per commit: resumed after a stop, nothing is logged twice', async () => {
      const s = await site(true);
      const texts = Array.from({ length: 1100 }, (_, i) => `pre ${i}`);
      const ids = await s.db.blob.committer.run(async (ops) => {
        const out: number[] = [];
        for (const t of texts) out.push(await ops.insert(Buffer.from(t), null));
        return out;
      });
      await s.sync.join();
      assert.equal(await s.sync.backfillStep(), true, 'more than one page');
      const firstPage = await s.sync.logEntries();
      assert.ok(firstPage > 0 && firstPage < ids.length, `one page logged (${firstPage})`);
      // A write to a blob the backfill has not reached: logged by the backfill, once.
      await s.db.blob.updateBlob(ids[ids.length - 1]!, { bytes: Buffer.from('changed'), shouldUpdateMetadata: false });
      // Stop here (each page is its own commit: what a crash between pages leaves), then go on anew.
      const again = new BlobSyncStore(s.db.blob);
      await again.backfill();
      assert.equal(await again.logEntries(), ids.length, 'one entry per blob');
      assert.equal((await again.logMarks()).last, ids.length, 'no blob logged twice');
      const read = await again.read(0, 2000);
      assert.deepEqual(
        read.entries.map((e) => e.id).sort((x, y) => x - y),
        ids,
      );
      assert.ok(read.entries.every((e) => e.local && e.op === 'put' && e.stamp.site.equals(s.db.sync.site)));
      await again.backfill();
      assert.equal((await again.logMarks()).last, ids.length, 'a finished backfill logs nothing more');
    });

    it('blobs stored before sync travel both ways with their ids; of two with one id the later keeps it and the other moves to a new id on both sites', async () => {
      const hub = await site(false);
      const edge = await site(true);
      const hubIds = await storeMany(hub.db, ['hub one', 'hub two']);
      const edgeIds = await storeMany(edge.db, ['edge one', 'edge two', 'edge three']);
      assert.deepEqual(hubIds, edgeIds.slice(0, 2), 'the same small ids on both sites');
      // The edge's backfill is earlier: the hub's blobs 1 and 2 win those ids.
      await edge.sync.join();
      await edge.sync.backfill();
      await clockPassed(Date.now());
      await hub.sync.join();
      await hub.sync.backfill();
      await ship(edge, hub);
      await ship(hub, edge);
      await ship(edge, hub);
      const moved = await edge.sync.rekeyed();
      assert.equal(moved.length, 2, 'the edge moved its two losing blobs');
      assert.deepEqual(moved.map((m) => m.from).sort(), hubIds.slice().sort());
      assert.ok(moved.every((m) => m.origin?.equals(edge.db.sync.site)));
      const all = [...edgeIds, ...moved.map((m) => m.to)];
      const [onHub, onEdge] = [await contents(hub.db, all), await contents(edge.db, all)];
      assert.deepEqual(onHub, onEdge, 'both sites hold the same blobs under the same ids');
      assert.equal(onHub.get(hubIds[0]!), sha(Buffer.from('hub one')));
      assert.equal(onHub.get(edgeIds[2]!), sha(Buffer.from('edge three')));
      const shas = new Set(onHub.values());
      for (const t of ['hub one', 'hub two', 'edge one', 'edge two', 'edge three']) {
        assert.ok(shas.has(sha(Buffer.from(t))), `${t} is kept`);
      }
    });

    it('a hub whose own blob from before sync loses its id keeps it under a new id, which reaches the edge', async () => {
      const hub = await site(false);
      const edge = await site(true);
      const [hubId] = await storeMany(hub.db, ['hub old']);
      const [edgeId] = await storeMany(edge.db, ['edge newer']);
      assert.equal(hubId, edgeId);
      await hub.sync.join();
      await hub.sync.backfill();
      await clockPassed(Date.now());
      await edge.sync.join();
      await edge.sync.backfill();
      await ship(edge, hub);
      const moved = await hub.sync.rekeyed();
      assert.equal(moved.length, 1);
      await ship(hub, edge);
      const ids = [hubId!, moved[0]!.to];
      assert.deepEqual(await contents(edge.db, ids), await contents(hub.db, ids));
      assert.equal((await contents(edge.db, ids)).get(moved[0]!.to), sha(Buffer.from('hub old')));
      assert.equal((await contents(edge.db, ids)).get(hubId!), sha(Buffer.from('edge newer')));
    });

    it('the log is compacted once every peer has applied it; a peer past --sync-max-offline gets a reset that drops what the hub deleted', async () => {
      // Long enough that the late peer is still within it through the first part on a slow backend.
      const maxOfflineMs = 3000;
      const hub = await site(false, maxOfflineMs);
      const fast = await site(true);
      const late = await site(true);
      await hub.sync.join();
      await Promise.all([fast.sync.join(), late.sync.join()]);
      // Both peers are known to the hub (a first link) before the writes.
      await ship(hub, fast);
      await ship(hub, late);
      const ids = await storeMany(hub.db, ['c1', 'c2', 'c3', 'c4']);
      assert.equal(await hub.sync.logEntries(), 4);
      await ship(hub, fast);
      await hub.sync.upkeep();
      assert.equal(await hub.sync.logEntries(), 4, 'not compacted while a peer has not applied it');
      await ship(hub, late);
      await hub.sync.upkeep();
      assert.equal(await hub.sync.logEntries(), 0, 'both peers applied everything: the log is compacted');
      // More writes: only one peer keeps up. The late one still gets everything while within the window.
      const more = await storeMany(hub.db, ['c5', 'c6']);
      await hub.db.blob.deleteBlob(ids[0]!);
      await ship(hub, fast);
      await hub.sync.upkeep();
      assert.equal(await hub.sync.logEntries(), 3, 'held back for the late peer');
      assert.equal((await ship(hub, late)).reset, false);
      assert.deepEqual(await contents(late.db, [...ids, ...more]), await contents(hub.db, [...ids, ...more]));
      // The late peer goes away longer than the window: the log goes on without it.
      await hub.db.blob.deleteBlob(ids[1]!);
      const last = await storeMany(hub.db, ['c7']);
      await ship(hub, fast);
      await clockPassed(Date.now() + maxOfflineMs);
      await ship(hub, fast); // the fast peer is seen again; the late one is not
      await hub.sync.upkeep();
      await hub.sync.upkeep();
      assert.equal(await hub.sync.logEntries(), 0, 'compacted past the late peer');
      const withStamps = await hub.db.blob.committer.run((ops) =>
        ops.maps.range('blob_stamp', { start: Buffer.alloc(0), end: undefined, limit: 100, reverse: false }),
      );
      assert.equal(withStamps.length, 5, 'the tombstones older than the window are dropped');
      assert.equal((await ship(hub, late)).reset, true, 'the late peer gets a reset');
      const every = [...ids, ...more, ...last];
      const onLate = await contents(late.db, every);
      assert.deepEqual(onLate, await contents(hub.db, every));
      assert.equal(onLate.has(ids[1]!), false, 'a blob deleted while it was away is dropped, not resurrected');
    });

    it('the hub clamps a stamp too far ahead of its clock, and the site that made it adopts the clamped stamp', async () => {
      const hub = await site(false);
      const edge = await site(true);
      await hub.sync.join();
      await edge.sync.join();
      const id = await edge.db.blob.storeBlob(Buffer.from('from the future'));
      const future = { hlc: hlcOf(Date.now() + 3_600_000), site: edge.db.sync.site };
      // The edge's clock ran an hour ahead when it made this write.
      await edge.db.blob.committer.run((ops) =>
        edge.db.blob.syncLog.record(ops, { id, op: 'put', stamp: future, local: true }),
      );
      await ship(edge, hub);
      const onHub = await hub.db.blob.committer.run((ops) => hub.db.blob.syncLog.stampOf(ops, id));
      assert.ok(onHub && onHub.stamp.hlc < future.hlc, 'clamped');
      assert.ok(onHub.stamp.hlc <= hlcOf(Date.now() + 61_000), 'at most the skew bound ahead');
      await ship(hub, edge);
      const onEdge = await edge.db.blob.committer.run((ops) => edge.db.blob.syncLog.stampOf(ops, id));
      assert.equal(onEdge?.stamp.hlc, onHub.stamp.hlc, 'the edge took the clamped stamp');
      assert.equal(sha((await edge.db.blob.getBlob(id)).data), sha(Buffer.from('from the future')));
      // A later write on the hub now wins on the edge too (an hour-ahead stamp there would hold it off).
      await hub.db.blob.updateBlob(id, { bytes: Buffer.from('hub later'), shouldUpdateMetadata: false });
      await ship(hub, edge);
      assert.equal(sha((await edge.db.blob.getBlob(id)).data), sha(Buffer.from('hub later')));
    });
  });
}
