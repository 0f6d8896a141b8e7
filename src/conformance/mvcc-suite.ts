/**
 * The revisioned part of the conformance suite: etcd's semantics (revisions, ranges, history,
 * compaction, Txn, leases, watch) through the store layer, on whatever backend the suite runs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KvRecord } from '../backends/backend.js';
import { StoreError, status } from '../errors.js';
import type { BuffDb } from '../store/buffdb.js';
import type { KvEvent } from '../store/kv/history.js';
import { etcdSpan, prefixSpan, singleKey } from '../store/kv/key-span.js';
import { type PutArgs, type RangeArgs, rangeArgs, type TxnArgs } from '../store/kv/kv-api.js';

const b = (s: string | number[]): Buffer => (typeof s === 'string' ? Buffer.from(s) : Buffer.from(s));
const text = (kvs: KvRecord[]): string[] => kvs.map((kv) => kv.key.toString());

function putArgs(key: string | Buffer, value: string | Buffer, extra: Partial<PutArgs> = {}): PutArgs {
  return {
    key: typeof key === 'string' ? b(key) : key,
    value: typeof value === 'string' ? b(value) : value,
    lease: 0n,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
    ...extra,
  };
}

async function rejectsWith(p: Promise<unknown>, code: number, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

/** A watch sink that collects events and can stop taking them (a slow consumer). */
class Collector {
  events: KvEvent[] = [];
  full = false;
  compactedAt: number | undefined;
  failed: StoreError | undefined;
  private waiters: (() => void)[] = [];
  deliver = (events: KvEvent[]): boolean => {
    this.events.push(...events);
    for (const w of this.waiters.splice(0)) w();
    return !this.full;
  };
  compacted = (rev: number): void => {
    this.compactedAt = rev;
    for (const w of this.waiters.splice(0)) w();
  };
  failedWith = (err: StoreError): void => {
    this.failed = err;
  };
  sink = { deliver: this.deliver, compacted: this.compacted, failed: this.failedWith };
  /** Resolves once `n` events arrived (fails after a deadline rather than hanging). */
  async until(n: number, what = `${n} events`): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (this.events.length < n && this.compactedAt === undefined) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${this.events.length}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }
}

const describeEvent = (e: KvEvent): string => `${e.type} ${e.kv.key.toString()}@${e.kv.modRev}`;

export function mvccConformance(dbOf: () => BuffDb): void {
  describe('revisions (etcd semantics)', () => {
    // First in the suite: the store is not compacted yet.
    it('a never-compacted store accepts Compact(0), as a fresh etcd does; below 0 is compacted', async (t) => {
      const db = dbOf();
      if (db.kv.status().compactRev !== 0) return t.skip('the store was compacted before this test');
      const rev = db.kv.status().rev;
      assert.equal((await db.kv.compact(0, true)).rev, rev);
      assert.equal(db.kv.status().compactRev, 0);
      await rejectsWith(
        db.kv.compact(-1, false),
        status.OUT_OF_RANGE,
        /^etcdserver: mvcc: required revision has been compacted$/,
      );
    });

    it('each write is one new revision; a failed or empty write consumes none', async () => {
      const db = dbOf();
      const r0 = db.kv.status().rev;
      assert.ok(r0 >= 1);
      const put = await db.kv.put(putArgs('rev/a', '1'));
      assert.equal(put.rev, r0 + 1);
      await db.kv.setValue('rev/b', '2');
      assert.equal(db.kv.status().rev, r0 + 2);
      await assert.rejects(db.kv.deleteKey('rev/missing'));
      const none = await db.kv.deleteRange({ span: prefixSpan(b('rev/nothing/')), prevKv: false });
      assert.equal(none.deleted, 0);
      assert.equal(none.rev, r0 + 2, 'deleting nothing is no revision');
      assert.equal(db.kv.status().rev, r0 + 2);
    });

    it('create_revision, mod_revision and version; a delete resets them', async () => {
      const db = dbOf();
      const first = await db.kv.put(putArgs('ver', 'a'));
      await db.kv.put(putArgs('ver', 'b'));
      const [kv] = (await db.kv.range(rangeArgs(singleKey(b('ver'))))).kvs;
      assert.equal(kv!.createRev, first.rev);
      assert.equal(kv!.modRev, first.rev + 1);
      assert.equal(kv!.version, 2);
      await db.kv.deleteKey('ver');
      const again = await db.kv.put(putArgs('ver', 'c'));
      const [fresh] = (await db.kv.range(rangeArgs(singleKey(b('ver'))))).kvs;
      assert.equal(fresh!.createRev, again.rev);
      assert.equal(fresh!.version, 1);
    });

    it('keys and values are bytes, kept exactly; a binary value read as text is FAILED_PRECONDITION', async () => {
      const db = dbOf();
      const key = b([0x62, 0x69, 0x6e, 0x2f, 0xff, 0x00, 0xfe]);
      const value = b([0x00, 0xff, 0xc3, 0x28, 0x80]);
      await db.kv.put(putArgs(key, value));
      const [kv] = (await db.kv.range(rangeArgs(singleKey(key)))).kvs;
      assert.ok(kv!.key.equals(key));
      assert.ok(kv!.value.equals(value));
      await db.kv.put(putArgs('bin/text', value));
      await rejectsWith(db.kv.getValue('bin/text'), status.FAILED_PRECONDITION, /not UTF-8/);
      await db.kv.setValue('bin/text', 'now text');
      assert.equal(await db.kv.getValue('bin/text'), 'now text');
    });

    it('ranges are in key byte order: [key, end), prefix, from-key, limit/more/count, keys/count only', async () => {
      const db = dbOf();
      const keys = ['r/a', 'r/b', 'r/c', 'r/é', 'r/\u00ff'];
      for (const k of keys) await db.kv.setValue(k, `v-${k}`);
      await db.kv.put(putArgs(b([0x72, 0x2f, 0xff]), 'high byte'));
      const all = await db.kv.range(rangeArgs(prefixSpan(b('r/'))));
      const sorted = [...all.kvs].sort((x, y) => Buffer.compare(x.key, y.key));
      assert.deepEqual(
        all.kvs.map((kv) => kv.key.toString('hex')),
        sorted.map((kv) => kv.key.toString('hex')),
      );
      assert.equal(all.count, 6);
      assert.deepEqual(text((await db.kv.range(rangeArgs(etcdSpan(b('r/b'), b('r/d'))))).kvs), ['r/b', 'r/c']);
      const fromKey = await db.kv.range(rangeArgs(etcdSpan(b('r/c'), b([0]))));
      assert.ok(text(fromKey.kvs).includes('r/c') && !text(fromKey.kvs).includes('r/b'));
      const limited = await db.kv.range(rangeArgs(prefixSpan(b('r/')), { limit: 2 }));
      assert.deepEqual(text(limited.kvs), ['r/a', 'r/b']);
      assert.equal(limited.more, true);
      assert.equal(limited.count, 6);
      const exact = await db.kv.range(rangeArgs(prefixSpan(b('r/')), { limit: 6 }));
      assert.equal(exact.more, false);
      const keysOnly = await db.kv.range(rangeArgs(prefixSpan(b('r/')), { keysOnly: true, limit: 1 }));
      assert.equal(keysOnly.kvs[0]!.value.length, 0);
      assert.ok(keysOnly.kvs[0]!.modRev > 0);
      const countOnly = await db.kv.range(rangeArgs(prefixSpan(b('r/')), { countOnly: true }));
      assert.deepEqual(countOnly.kvs, []);
      assert.equal(countOnly.count, 6);
      assert.equal((await db.kv.range(rangeArgs(etcdSpan(b('r/z'), b('r/a'))))).count, 0, 'an empty span');
    });

    it('sorting by every target and order, and revision filters', async () => {
      const db = dbOf();
      const revs: number[] = [];
      for (const [k, v] of [
        ['s/c', '1'],
        ['s/a', '3'],
        ['s/b', '2'],
      ] as const)
        revs.push((await db.kv.put(putArgs(k, v))).rev);
      await db.kv.put(putArgs('s/a', '4'));
      const sort = async (target: RangeArgs['sortTarget'], order: RangeArgs['sortOrder']) =>
        text((await db.kv.range(rangeArgs(prefixSpan(b('s/')), { sortTarget: target, sortOrder: order }))).kvs);
      assert.deepEqual(await sort('key', 'descend'), ['s/c', 's/b', 's/a']);
      assert.deepEqual(await sort('create', 'ascend'), ['s/c', 's/a', 's/b']);
      assert.deepEqual(await sort('mod', 'descend'), ['s/a', 's/b', 's/c']);
      assert.deepEqual(await sort('value', 'ascend'), ['s/c', 's/b', 's/a']);
      assert.deepEqual(await sort('version', 'descend'), ['s/a', 's/b', 's/c'], 'ties keep key order');
      assert.deepEqual(await sort('mod', 'none'), ['s/c', 's/b', 's/a'], 'a non-key target sorts ascending by default');
      const minMod = await db.kv.range(rangeArgs(prefixSpan(b('s/')), { minModRev: revs[2]! }));
      assert.deepEqual(text(minMod.kvs), ['s/a', 's/b']);
      assert.equal(minMod.count, 3, 'count is before filters, as in etcd');
      const maxCreate = await db.kv.range(rangeArgs(prefixSpan(b('s/')), { maxCreateRev: revs[1]! }));
      assert.deepEqual(text(maxCreate.kvs), ['s/a', 's/c']);
    });

    it('reads at an old revision see the state then; future and compacted revisions are errors', async () => {
      const db = dbOf();
      const r1 = (await db.kv.put(putArgs('old/a', '1'))).rev;
      await db.kv.put(putArgs('old/b', '1'));
      const r3 = (await db.kv.put(putArgs('old/a', '2'))).rev;
      await db.kv.deleteKey('old/b');
      await db.kv.put(putArgs('old/c', '1'));
      const at = async (rev: number) =>
        (await db.kv.range(rangeArgs(prefixSpan(b('old/')), { revision: rev }))).kvs.map(
          (kv) => `${kv.key.toString()}=${kv.value.toString()}`,
        );
      assert.deepEqual(await at(r1), ['old/a=1']);
      assert.deepEqual(await at(r3), ['old/a=2', 'old/b=1']);
      assert.deepEqual(await at(db.kv.status().rev), ['old/a=2', 'old/c=1']);
      await rejectsWith(
        db.kv.range(rangeArgs(prefixSpan(b('old/')), { revision: db.kv.status().rev + 5 })),
        status.OUT_OF_RANGE,
        /^etcdserver: mvcc: required revision is a future revision$/,
      );
    });

    it('DeleteRange deletes a whole span in one revision, with prev_kv', async () => {
      const db = dbOf();
      for (const k of ['d/1', 'd/2', 'd/3']) await db.kv.setValue(k, k);
      const res = await db.kv.deleteRange({ span: prefixSpan(b('d/')), prevKv: true });
      assert.equal(res.deleted, 3);
      assert.deepEqual(text(res.prevKvs), ['d/1', 'd/2', 'd/3']);
      assert.equal(res.rev, db.kv.status().rev);
      const back = await db.kv.range(rangeArgs(prefixSpan(b('d/')), { revision: res.rev - 1 }));
      assert.equal(back.count, 3);
    });

    it('Put: prev_kv, ignore_value, ignore_lease, and etcd errors', async () => {
      const db = dbOf();
      await db.kv.put(putArgs('p', 'one'));
      const second = await db.kv.put(putArgs('p', 'two', { prevKv: true }));
      assert.equal(second.prevKv?.value.toString(), 'one');
      const lease = await db.kv.leases.grant(60, 0n);
      await db.kv.put(putArgs('p', 'x', { lease: lease.id }));
      await db.kv.put(putArgs('p', '', { ignoreValue: true, lease: 0n }));
      let [kv] = (await db.kv.range(rangeArgs(singleKey(b('p'))))).kvs;
      assert.equal(kv!.value.toString(), 'x', 'ignore_value keeps the value');
      assert.equal(kv!.lease, 0n, 'a put without lease detaches it');
      await db.kv.put(putArgs('p', 'y', { lease: lease.id }));
      await db.kv.put(putArgs('p', 'z', { ignoreLease: true }));
      [kv] = (await db.kv.range(rangeArgs(singleKey(b('p'))))).kvs;
      assert.equal(kv!.lease, lease.id, 'ignore_lease keeps the lease');
      await rejectsWith(
        db.kv.put(putArgs('p-missing', '', { ignoreValue: true })),
        status.INVALID_ARGUMENT,
        /^etcdserver: key not found$/,
      );
      await rejectsWith(
        db.kv.put(putArgs('p', 'v', { lease: 424242n })),
        status.NOT_FOUND,
        /^etcdserver: requested lease not found$/,
      );
      await db.kv.leases.revoke(lease.id);
    });

    it('Txn: compare-and-swap on every target; one revision; nested; etcd request checks', async () => {
      const db = dbOf();
      const created = await db.kv.put(putArgs('t/k', 'v1'));
      const cmp = (
        target: TxnArgs['compare'][number]['target'],
        result: TxnArgs['compare'][number]['result'],
        operand: number | Buffer | bigint,
      ) => ({
        span: singleKey(b('t/k')),
        target,
        result,
        operand,
      });
      const cas = (compare: TxnArgs['compare']): Promise<boolean> =>
        db.kv.txn({ compare, success: [], failure: [] }).then((r) => r.succeeded);
      assert.equal(await cas([cmp('value', 'equal', b('v1'))]), true);
      assert.equal(await cas([cmp('value', 'greater', b('v0'))]), true);
      assert.equal(await cas([cmp('value', 'less', b('v0'))]), false);
      assert.equal(await cas([cmp('mod', 'equal', created.rev)]), true);
      assert.equal(await cas([cmp('create', 'not_equal', created.rev)]), false);
      assert.equal(await cas([cmp('version', 'greater', 0)]), true);
      assert.equal(await cas([cmp('lease', 'equal', 0n)]), true);
      const missing = {
        span: singleKey(b('t/missing')),
        target: 'version' as const,
        result: 'equal' as const,
        operand: 0,
      };
      assert.equal(await cas([missing]), true, 'a missing key has version 0');
      assert.equal(
        await cas([{ ...missing, target: 'value', operand: b('') }]),
        false,
        'value compares on missing keys fail',
      );
      const before = db.kv.status().rev;
      const swap = await db.kv.txn({
        compare: [cmp('mod', 'equal', created.rev)],
        success: [
          { put: putArgs('t/k', 'v2') },
          { put: putArgs('t/other', 'x') },
          { range: rangeArgs(prefixSpan(b('t/'))) },
          {
            txn: {
              compare: [],
              success: [{ deleteRange: { span: singleKey(b('t/gone')), prevKv: false } }],
              failure: [],
            },
          },
        ],
        failure: [{ range: rangeArgs(singleKey(b('t/k'))) }],
      });
      assert.equal(swap.succeeded, true);
      assert.equal(swap.rev, before + 1, 'a whole Txn is one revision');
      const seen = swap.responses[2]!;
      assert.ok('range' in seen);
      assert.deepEqual(text(seen.range.kvs), ['t/k', 't/other'], 'reads inside see the Txn’s own writes');
      const lost = await db.kv.txn({
        compare: [cmp('mod', 'equal', created.rev)],
        success: [{ put: putArgs('t/k', 'v3') }],
        failure: [{ range: rangeArgs(singleKey(b('t/k'))) }],
      });
      assert.equal(lost.succeeded, false);
      assert.equal(lost.rev, before + 1, 'the failure branch wrote nothing');
      await rejectsWith(
        db.kv.txn({ compare: [], success: [{ put: putArgs('t/d', '1') }, { put: putArgs('t/d', '2') }], failure: [] }),
        status.INVALID_ARGUMENT,
        /^etcdserver: duplicate key given in txn request$/,
      );
      await rejectsWith(
        db.kv.txn({
          compare: [],
          success: [{ deleteRange: { span: prefixSpan(b('t/')), prevKv: false } }, { put: putArgs('t/k', '2') }],
          failure: [],
        }),
        status.INVALID_ARGUMENT,
        /duplicate key/,
      );
      const ops = Array.from({ length: 129 }, (_, i) => ({ put: putArgs(`t/many/${i}`, 'x') }));
      await rejectsWith(
        db.kv.txn({ compare: [], success: ops, failure: [] }),
        status.INVALID_ARGUMENT,
        /^etcdserver: too many operations in txn request$/,
      );
      assert.equal(db.kv.status().rev, before + 1);
    });

    it('buffdb transactions commit as one revision', async () => {
      const db = dbOf();
      const before = db.kv.status().rev;
      await db.transaction(async (tx) => {
        await tx.kv.set('bt/a', '1');
        await tx.kv.set('bt/b', '2');
      });
      assert.equal(db.kv.status().rev, before + 1);
      const kvs = (await db.kv.range(rangeArgs(prefixSpan(b('bt/'))))).kvs;
      assert.deepEqual(
        kvs.map((kv) => kv.modRev),
        [before + 1, before + 1],
      );
    });

    it('compaction: older revisions fail with etcd errors, newer ones still read', async () => {
      const db = dbOf();
      const r1 = (await db.kv.put(putArgs('c/a', '1'))).rev;
      const r2 = (await db.kv.put(putArgs('c/a', '2'))).rev;
      await db.kv.put(putArgs('c/a', '3'));
      await db.kv.compact(r2, true);
      await rejectsWith(
        db.kv.range(rangeArgs(singleKey(b('c/a')), { revision: r1 })),
        status.OUT_OF_RANGE,
        /^etcdserver: mvcc: required revision has been compacted$/,
      );
      const atR2 = await db.kv.range(rangeArgs(singleKey(b('c/a')), { revision: r2 }));
      assert.equal(atR2.kvs[0]!.value.toString(), '2');
      await rejectsWith(db.kv.compact(r1, false), status.OUT_OF_RANGE, /compacted/);
      await rejectsWith(db.kv.compact(db.kv.status().rev + 10, false), status.OUT_OF_RANGE, /future revision/);
      const c = new Collector();
      db.kv.watch({ span: singleKey(b('c/a')), startRev: r1, noPut: false, noDelete: false }, c.sink);
      assert.equal(c.compactedAt, r2, 'a watch from a compacted revision is told the compaction revision');
    });

    it('physical compaction (a range delete where the engine has one) keeps every event from its revision on', async () => {
      const db = dbOf();
      const revs: number[] = [];
      for (let i = 0; i < 6; i++) revs.push((await db.kv.put(putArgs(`pc/${i % 2}`, `v${i}`))).rev);
      await db.kv.compact(revs[3]!, true);
      const c = new Collector();
      db.kv.watch({ span: prefixSpan(b('pc/')), startRev: revs[3]!, noPut: false, noDelete: false }, c.sink);
      await c.until(3);
      assert.deepEqual(
        c.events.map(describeEvent),
        [3, 4, 5].map((i) => `put pc/${i % 2}@${revs[i]}`),
      );
      const atTarget = await db.kv.range(rangeArgs(prefixSpan(b('pc/')), { revision: revs[3]! }));
      assert.deepEqual(
        atTarget.kvs.map((kv) => `${kv.key}=${kv.value}`),
        ['pc/0=v2', 'pc/1=v3'],
      );
    });

    it('leases: grant, attach, time-to-live, list, revoke deletes the keys in one revision', async () => {
      const db = dbOf();
      const short = await db.kv.leases.grant(1, 0n);
      assert.ok(short.id > 0n);
      assert.equal(short.ttl, 2, 'the minimum TTL is etcd’s, 2 s');
      const chosen = await db.kv.leases.grant(30, 777n);
      assert.equal(chosen.id, 777n);
      await rejectsWith(db.kv.leases.grant(30, 777n), status.FAILED_PRECONDITION, /^etcdserver: lease already exists$/);
      await db.kv.put(putArgs('l/a', '1', { lease: chosen.id }));
      await db.kv.put(putArgs('l/b', '2', { lease: chosen.id }));
      const ttl = await db.kv.leases.timeToLive(chosen.id, true);
      assert.equal(ttl.grantedTtl, 30);
      assert.ok(ttl.ttl > 25 && ttl.ttl <= 30);
      assert.deepEqual(ttl.keys.map((k) => k.toString()).sort(), ['l/a', 'l/b']);
      assert.ok((await db.kv.leases.list()).ids.includes(777n));
      const before = db.kv.status().rev;
      const rev = await db.kv.leases.revoke(chosen.id);
      assert.equal(rev, before + 1, 'both keys go in one revision');
      assert.equal((await db.kv.range(rangeArgs(prefixSpan(b('l/'))))).count, 0);
      assert.equal((await db.kv.leases.timeToLive(chosen.id, false)).ttl, -1);
      await rejectsWith(db.kv.leases.revoke(chosen.id), status.NOT_FOUND, /^etcdserver: requested lease not found$/);
      assert.equal((await db.kv.leases.keepAlive(chosen.id)).ttl, 0);
      await db.kv.leases.revoke(short.id);
    });

    it('time-to-live truncates to whole seconds as etcd does: right after a 30 s grant it is 29', async () => {
      const db = dbOf();
      const lease = await db.kv.leases.grant(30, 0n);
      const ttl = await db.kv.leases.timeToLive(lease.id, false);
      assert.equal(ttl.ttl, 29);
      assert.equal(ttl.grantedTtl, 30);
      await db.kv.leases.revoke(lease.id);
    });

    it('client-chosen lease ids may be negative (as in etcd); each lease revokes only its own keys', async () => {
      const db = dbOf();
      const ids = [-1n, -5n, 2n ** 63n - 1n, -(2n ** 63n), 5n];
      for (const id of ids) {
        assert.equal((await db.kv.leases.grant(60, id)).id, id);
        await db.kv.put(putArgs(`neg/${id}`, 'v', { lease: id }));
      }
      for (const id of ids) {
        const ttl = await db.kv.leases.timeToLive(id, true);
        assert.deepEqual(
          ttl.keys.map((k) => k.toString()),
          [`neg/${id}`],
          `lease ${id} holds exactly its key`,
        );
      }
      assert.ok((await db.kv.leases.list()).ids.includes(-5n));
      for (const [i, id] of ids.entries()) {
        await db.kv.leases.revoke(id);
        const left = text((await db.kv.range(rangeArgs(prefixSpan(b('neg/'))))).kvs);
        assert.deepEqual(
          left,
          ids
            .slice(i + 1)
            .map((x) => `neg/${x}`)
            .sort(),
          `revoking ${id} deletes only its key`,
        );
      }
    });

    it('an expired lease deletes its keys', async () => {
      const db = dbOf();
      const lease = await db.kv.leases.grant(2, 0n);
      await db.kv.put(putArgs('exp/k', 'v', { lease: lease.id }));
      const c = new Collector();
      db.kv.watch({ span: singleKey(b('exp/k')), startRev: 0, noPut: true, noDelete: false }, c.sink);
      // Expiry runs in the background: wait for the delete event (the TTL is 2 s).
      await c.until(1, 'the delete of the expired key');
      assert.equal(c.events[0]!.type, 'delete');
      assert.equal((await db.kv.range(rangeArgs(singleKey(b('exp/k'))))).count, 0);
    });

    it('watch: replay from an old revision then live, in order, no gaps or duplicates, prev_kv', async () => {
      const db = dbOf();
      const start = (await db.kv.put(putArgs('w/a', '1'))).rev;
      await db.kv.put(putArgs('w/a', '2'));
      await db.kv.deleteKey('w/a');
      await db.kv.put(putArgs('elsewhere', 'x'));
      const c = new Collector();
      const w = db.kv.watch({ span: prefixSpan(b('w/')), startRev: start, noPut: false, noDelete: false }, c.sink);
      await c.until(3);
      await db.kv.txn({
        compare: [],
        success: [{ put: putArgs('w/b', '1') }, { put: putArgs('w/c', '1') }],
        failure: [],
      });
      await c.until(5);
      db.kv.unwatch(w);
      assert.deepEqual(c.events.map(describeEvent), [
        `put w/a@${start}`,
        `put w/a@${start + 1}`,
        `delete w/a@${start + 2}`,
        `put w/b@${start + 4}`,
        `put w/c@${start + 4}`,
      ]);
      assert.equal(c.events[1]!.prev?.value.toString(), '1');
      assert.equal(c.events[2]!.prev?.value.toString(), '2');
      const filtered = new Collector();
      const f = db.kv.watch(
        { span: prefixSpan(b('w/')), startRev: start, noPut: true, noDelete: false },
        filtered.sink,
      );
      await filtered.until(1);
      db.kv.unwatch(f);
      assert.deepEqual(filtered.events.map(describeEvent), [`delete w/a@${start + 2}`]);
    });

    it('a slow watcher falls behind, then catches up from history with every event once', async () => {
      const db = dbOf();
      const c = new Collector();
      c.full = true;
      const w = db.kv.watch({ span: prefixSpan(b('slow/')), startRev: 0, noPut: false, noDelete: false }, c.sink);
      const N = 300;
      // Ten batches of 30: the first is delivered live, then the consumer is full.
      for (let chunk = 0; chunk < N; chunk += 30) {
        await Promise.all(
          Array.from({ length: 30 }, (_, i) => db.kv.setValue(`slow/${(chunk + i) % 7}`, String(chunk + i))),
        );
      }
      const taken = c.events.length;
      assert.ok(taken < N, 'a full consumer stops receiving live events');
      assert.ok(db.kv.hub.states().behind >= 1, 'the hub holds the watcher back (nothing is buffered for it)');
      c.full = false;
      db.kv.hub.resume(w);
      await c.until(N);
      db.kv.unwatch(w);
      const revs = c.events.map((e) => e.kv.modRev);
      assert.equal(new Set(revs).size, N, 'no duplicates');
      assert.deepEqual(
        revs,
        [...revs].sort((x, y) => x - y),
        'in order',
      );
      assert.equal(revs[N - 1]! - revs[0]!, N - 1, 'no gaps');
    });
  });
}
