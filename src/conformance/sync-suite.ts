/**
 * The sync part of the conformance suite: stamps, last-writer-wins, exactly-once apply, tombstones,
 * resets and durability of sync state, through the store layer on whatever backend the suite runs.
 * Sites are stores of the backend under test; batches go between them as the link would send them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BuffDb, BuffDbOptions } from '../store/buffdb.js';
import { prefixSpan } from '../store/kv/key-span.js';
import { rangeArgs } from '../store/kv/kv-api.js';
import { localState } from '../store/sync/apply.js';
import type { Change, ChangeFilter } from '../store/sync/changes.js';
import { compareStamps } from '../store/sync/stamp.js';
import type { ReadResult } from '../store/sync/sync-store.js';

type Open = (name: string, extra?: Partial<BuffDbOptions>) => Promise<BuffDb>;

const b = (s: string): Buffer => Buffer.from(s);
const EVERYTHING = rangeArgs(prefixSpan(Buffer.alloc(0)));

/** Edge → hub: the edge's own writes. Hub → edge: everything not the edge's. */
function filterFor(to: BuffDb, fromIsEdge: boolean, prefixes: Buffer[] = []): ChangeFilter {
  return fromIsEdge
    ? { localOnly: true, peer: undefined, prefixes }
    : { localOnly: false, peer: to.sync.site, prefixes };
}

/** Sends `from`'s next batch to `to`, as a link would. */
async function ship(from: BuffDb, to: BuffDb, fromIsEdge: boolean, prefixes: Buffer[] = []) {
  const cursor = await to.sync.applied(from.sync.site);
  const read: ReadResult = await from.sync.read(cursor, filterFor(to, fromIsEdge, prefixes), 1 << 20);
  assert.ok(!('compacted' in read), `history after ${cursor} is compacted`);
  const result = await to.sync.apply(read, {
    peer: from.sync.site,
    peerSeen: await from.sync.applied(to.sync.site),
    clampClocks: fromIsEdge,
    self: fromIsEdge ? undefined : to.sync.site,
  });
  return { read, result };
}

/** Resolves once the wall clock reads later than `ms` (the event: a write after it is stamped later). */
export async function clockPassed(ms: number): Promise<void> {
  while (Date.now() <= ms) await new Promise((r) => setImmediate(r));
}

async function value(db: BuffDb, key: string): Promise<string | undefined> {
  try {
    return await db.kv.getValue(key);
  } catch {
    return undefined;
  }
}

export function syncConformance(open: Open): void {
  describe('sync (edge ⇄ hub)', () => {
    let hub: BuffDb;
    let a: BuffDb;
    let e: BuffDb;
    let n = 0;
    const fresh = (): Promise<BuffDb> => open(`sync${n++}`);
    before(async () => {
      hub = await fresh();
      a = await fresh();
      e = await fresh();
    });
    after(async () => {
      await Promise.all([hub.close(), a.close(), e.close()]);
    });

    it('every store has its own site id; writes carry its stamp, and sync bookkeeping stays out of the key space', async () => {
      assert.notDeepEqual(a.sync.site, hub.sync.site);
      await a.kv.setValue('stamp/x', '1');
      const read = await a.sync.read(0, filterFor(hub, true), 1 << 20);
      assert.ok(!('compacted' in read));
      const change = read.changes.find((c) => c.key.toString() === 'stamp/x');
      assert.ok(change, 'the write is in the change stream');
      assert.deepEqual(change.stamp.site, a.sync.site);
      assert.ok(Math.abs(change.stamp.hlc / 1024 - Date.now()) < 60_000, 'the stamp is wall-clock time');
      const keys = (await a.kv.range(EVERYTHING)).kvs.map((kv) => kv.key.toString());
      assert.deepEqual(keys, ['stamp/x']);
    });

    it("a local put's stamp is found after a delete's tombstone and after compaction drops its event, and still wins", async () => {
      const a = await fresh(); // its history is compacted here, away from the shared sites
      const stampHere = (db: BuffDb, key: string) =>
        db.kv.committer.run(async (bt) => (await localState(bt.ops, b(key))).stamp);
      try {
        await a.kv.setValue('lazy/k', 'first');
        await a.kv.deleteKey('lazy/k');
        const tomb = await stampHere(a, 'lazy/k');
        await clockPassed(Date.now());
        await a.kv.setValue('lazy/k', 'again');
        const put = await stampHere(a, 'lazy/k');
        assert.ok(
          tomb && put && compareStamps(put, tomb) > 0,
          "the re-put, not the older tombstone, is the key's stamp",
        );
        assert.deepEqual(put.site, a.sync.site);
        const row = () => a.kv.committer.run((bt) => bt.ops.maps.get('sync_stamp', b('lazy/k')));
        assert.ok(await row(), "the delete's tombstone row is still there (the put wrote no row of its own)");
        await a.sync.upkeep();
        assert.equal(await row(), undefined, 'upkeep dropped the row the re-put made stale');
        assert.deepEqual(await stampHere(a, 'lazy/k'), put, 'unchanged by upkeep');
        await a.kv.compact(a.kv.status().rev, true);
        assert.deepEqual(await stampHere(a, 'lazy/k'), put, 'unchanged once compaction dropped the event');
        // A write stamped just before the re-put (another site's, sent late) loses to it.
        const late = Buffer.alloc(8, 0xee);
        const older: Change = { key: b('lazy/k'), value: b('older'), stamp: { hlc: put.hlc - 1, site: late } };
        const result = await a.sync.apply(
          { changes: [older], from: 0, to: 1 },
          { peer: late, peerSeen: 0, clampClocks: false, self: a.sync.site },
        );
        assert.equal(result.applied, 0);
        assert.equal(await value(a, 'lazy/k'), 'again');
      } finally {
        await a.close();
      }
    });

    it("compaction moves a local put's stamp to its key's row while it is the key's last write, for keys of any length", async () => {
      const a = await fresh();
      const stampHere = (key: string) => a.kv.committer.run(async (bt) => (await localState(bt.ops, b(key))).stamp);
      const row = (key: string) => a.kv.committer.run((bt) => bt.ops.maps.get('sync_stamp', b(key)));
      try {
        // Longer than the head of an event that compaction reads (EVENT_HEAD_BYTES).
        const long = `long/${'k'.repeat(400)}`;
        await a.kv.setValue('short/k', '1');
        await a.kv.setValue(long, '1');
        await a.kv.setValue('over/k', 'old');
        await a.kv.setValue('over/k', 'new');
        await a.kv.setValue('last/k', '1'); // the revision compacted to: its event stays
        const before = {
          short: await stampHere('short/k'),
          long: await stampHere(long),
          over: await stampHere('over/k'),
        };
        for (const key of ['short/k', long, 'over/k']) assert.equal(await row(key), undefined, `${key}: no row yet`);
        await a.kv.compact(a.kv.status().rev, true);
        assert.ok(await row('short/k'), "short/k's stamp moved to its row");
        assert.ok(await row(long), "the long key's stamp moved to its row");
        assert.ok(await row('over/k'), "over/k's last put moved its stamp to the row");
        assert.deepEqual(await stampHere('short/k'), before.short);
        assert.deepEqual(await stampHere(long), before.long);
        assert.deepEqual(
          await stampHere('over/k'),
          before.over,
          "the overwritten put's stamp did not replace the last one",
        );
      } finally {
        await a.close();
      }
    });

    it('a batch is applied once: sent again (a lost acknowledgement), it changes nothing', async () => {
      await e.kv.setValue('once/a', '1');
      await e.kv.setValue('once/b', '2');
      const { read, result } = await ship(e, hub, true);
      assert.equal(result.duplicate, false);
      const rev = hub.kv.status().rev;
      const again = await hub.sync.apply(read, { peer: e.sync.site, peerSeen: 0, clampClocks: true, self: undefined });
      assert.equal(again.duplicate, true);
      assert.equal(hub.kv.status().rev, rev, 'no revision for a batch applied before');
      assert.equal(await value(hub, 'once/b'), '2');
    });

    it("a batch's writes are applied as one revision (a reader sees all or none)", async () => {
      await e.kv.txn({
        compare: [],
        success: [
          { put: { key: b('tx/1'), value: b('x'), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } },
          { put: { key: b('tx/2'), value: b('y'), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } },
        ],
        failure: [],
      });
      await ship(e, hub, true);
      const kvs = (await hub.kv.range(rangeArgs({ start: b('tx/'), end: b('tx0') }))).kvs;
      assert.equal(kvs.length, 2);
      assert.equal(kvs[0]!.modRev, kvs[1]!.modRev);
    });

    it('superseded writes to a key travel as one change; a site never gets its own writes back', async () => {
      for (let i = 0; i < 50; i++) await e.kv.setValue('hot', String(i));
      const { read } = await ship(e, hub, true);
      assert.equal(read.changes.filter((c) => c.key.toString() === 'hot').length, 1);
      assert.equal(await value(hub, 'hot'), '49');
      const back = await hub.sync.read(0, filterFor(e, false), 1 << 20);
      assert.ok(!('compacted' in back));
      assert.ok(!back.changes.some((c) => c.key.toString() === 'hot'), 'the hub does not echo the edge its own write');
    });

    it('prefixes limit what travels, deletes included', async () => {
      await a.kv.setValue('pub/1', 'up');
      await a.kv.setValue('priv/1', 'stays');
      await ship(a, hub, true, [b('pub/')]);
      assert.equal(await value(hub, 'pub/1'), 'up');
      assert.equal(await value(hub, 'priv/1'), undefined);
      await a.kv.deleteKey('pub/1');
      await a.kv.deleteKey('priv/1');
      await ship(a, hub, true, [b('pub/')]);
      assert.equal(await value(hub, 'pub/1'), undefined);
    });

    it('concurrent writes resolve to the later stamp on every site, and the loser is kept as a conflict', async () => {
      await a.kv.setValue('race', 'from-a');
      await clockPassed(Date.now()); // a later wall clock, so e's write is the later one
      await e.kv.setValue('race', 'from-e');
      // e reaches the hub first, then a: a's older write loses at the hub.
      await ship(e, hub, true);
      await ship(a, hub, true);
      assert.equal(await value(hub, 'race'), 'from-e');
      await ship(hub, a, false);
      await ship(hub, e, false);
      assert.equal(await value(a, 'race'), 'from-e');
      assert.equal(await value(e, 'race'), 'from-e');
      const conflicts = await hub.sync.conflicts(0, 100);
      const c = conflicts.find((x) => x.key.toString() === 'race');
      assert.ok(c, 'the hub lists the conflict');
      assert.equal(c.loser?.toString(), 'from-a');
      assert.deepEqual(c.winnerStamp.site, e.sync.site);
    });

    it('a delete is a write that wins or loses by stamp: an older put does not bring a key back', async () => {
      await a.kv.setValue('tomb', 'old');
      await clockPassed(Date.now());
      await e.kv.setValue('tomb', 'e');
      await e.kv.deleteKey('tomb');
      await ship(e, hub, true); // the hub never had the key: it keeps the tombstone
      await ship(a, hub, true);
      assert.equal(await value(hub, 'tomb'), undefined, "a's older put lost to e's delete");
      await ship(hub, a, false);
      assert.equal(await value(a, 'tomb'), undefined, 'the tombstone reached a and removed its copy');
    });

    it('a clock too far ahead is clamped by the hub, and its site takes the clamped stamp', async () => {
      const far = (Date.now() + 3_600_000) * 1024;
      // e's clock runs an hour ahead (as on a device with a wrong clock).
      (e.kv.identity.clock as unknown as { last: number }).last = far;
      await e.kv.setValue('skew', 'ahead');
      await ship(e, hub, true);
      const stampOf = async (db: BuffDb) =>
        db.kv.committer.run(async (bt) => {
          const { stamp } = await localState(bt.ops, b('skew'));
          return stamp && `${stamp.hlc}@${stamp.site.toString('hex')}`;
        });
      const onHub = await hub.sync.read(0, filterFor(e, false), 1 << 20);
      assert.ok(!('compacted' in onHub));
      const echoed = onHub.changes.find((c) => c.key.toString() === 'skew');
      assert.ok(echoed, 'a clamped write goes back to its own site');
      assert.equal(echoed.replaces, far + 1);
      assert.ok(echoed.stamp.hlc <= (Date.now() + 61_000) * 1024, 'stamped within the skew bound');
      await ship(hub, e, false);
      assert.equal(await stampOf(e), await stampOf(hub), 'the site adopted the clamped stamp');
      // A write made once clocks pass the bound wins everywhere (a's clock, a minute on).
      a.kv.identity.clock.observe((Date.now() + 120_000) * 1024);
      await a.kv.setValue('skew', 'later');
      await ship(a, hub, true);
      await ship(hub, e, false);
      assert.equal(await value(hub, 'skew'), 'later');
      assert.equal(await value(e, 'skew'), 'later');
    });

    it('a site whose cursor is older than the history kept gets a reset: keys the hub dropped go, its own unsent writes stay', async () => {
      const h = await fresh();
      const edge = await fresh();
      try {
        await h.kv.setValue('r/keep', '1');
        await h.kv.setValue('r/gone', '2');
        await ship(h, edge, false);
        assert.equal(await value(edge, 'r/gone'), '2');
        await edge.kv.setValue('r/mine', 'unsent');
        await h.kv.deleteKey('r/gone');
        await h.kv.setValue('r/keep', '3');
        const rev = h.kv.status().rev;
        await h.kv.compact(rev, true);
        // The tombstone of r/gone is forgotten too (as after --sync-max-offline).
        await h.kv.committer.run((bt) => bt.ops.maps.delete('sync_stamp', b('r/gone')));
        const cursor = await edge.sync.applied(h.sync.site);
        const read = await h.sync.read(cursor, filterFor(edge, false), 1 << 20);
        assert.ok('compacted' in read, 'the cursor is older than the history kept');
        const page = await h.sync.snapshotPage(prefixSpan(Buffer.alloc(0)), Buffer.alloc(0));
        await edge.sync.applySnapshot(page, rev, true, { hub: h.sync.site, hubSeen: 0, dropMissing: true });
        assert.equal(await value(edge, 'r/keep'), '3');
        assert.equal(await value(edge, 'r/gone'), undefined, 'not resurrected');
        assert.equal(await value(edge, 'r/mine'), 'unsent', 'its own unsent write is kept');
        assert.equal(await edge.sync.applied(h.sync.site), rev, 'the cursor moved to the snapshot');
      } finally {
        await Promise.all([h.close(), edge.close()]);
      }
    });

    it('sync state survives a reopen: site id, cursors and stamps', async () => {
      const name = `sync${n++}`;
      let s = await open(name);
      const site = Buffer.from(s.sync.site);
      await a.kv.setValue('durable', 'yes');
      await ship(a, s, true);
      const cursor = await s.sync.applied(a.sync.site);
      await s.close();
      s = await open(name);
      try {
        assert.deepEqual(s.sync.site, site);
        assert.equal(await s.sync.applied(a.sync.site), cursor);
        const again = await ship(a, s, true);
        assert.equal(again.result.applied, 0);
        await s.sync.renewIdentity();
        const renewed = Buffer.from(s.sync.site);
        assert.notDeepEqual(renewed, site);
        await s.close();
        s = await open(name);
        assert.deepEqual(s.sync.site, renewed, 'a new identity is kept');
        assert.equal(s.kv.identity.generation, 2);
      } finally {
        await s.close();
      }
    });
  });
}
