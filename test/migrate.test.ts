/** `buffdb migrate`: a store copied to another backend keeps its keys, revisions, history, leases and blob ids. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BuffDb } from '../src/store/buffdb.js';
import { singleKey } from '../src/store/kv/key-span.js';
import { rangeArgs } from '../src/store/kv/kv-api.js';
import { storeLocator } from './helpers/postgres.js';
import { CLI, tempDir } from './helpers/server.js';

const rangeOf = (key: string, revision = 0) => rangeArgs(singleKey(Buffer.from(key)), { revision });

function migrate(from: string, to: string): { status: number | null; stderr: string } {
  const res = spawnSync(process.execPath, [CLI, 'migrate', '--from', from, '--to', to], { encoding: 'utf8' });
  return { status: res.status, stderr: res.stderr };
}

describe('buffdb migrate', () => {
  const dir = tempDir('buffdb-migrate-');
  let pg: Awaited<ReturnType<typeof storeLocator>>;
  const src = { kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') };
  let expected: { rev: number; compactRev: number; midRev: number; ids: number[]; deletedTop: number; lease: bigint };

  before(async () => {
    pg = await storeLocator('postgres');
    const db = await BuffDb.open({ backend: 'sqlite', ...src, autoCompact: false });
    await db.kv.setValue('a', '1');
    await db.kv.setValue('a', '2');
    const midRev = db.kv.status().rev;
    await db.kv.setValue('a', '3');
    await db.kv.setValue('gone', 'x');
    await db.kv.deleteKey('gone');
    await db.kv.put({
      key: Buffer.from('bin'),
      value: Buffer.from([0, 255, 1]),
      lease: 0n,
      prevKv: false,
      ignoreValue: false,
      ignoreLease: false,
    });
    const { id: lease } = await db.kv.leases.grant(3600, 0n);
    await db.kv.put({
      key: Buffer.from('leased'),
      value: Buffer.from('v'),
      lease,
      prevKv: false,
      ignoreValue: false,
      ignoreLease: false,
    });
    await db.kv.compact(2, true);
    const ids = [await db.blob.storeBlob(Buffer.from('b1'), 'm1'), await db.blob.storeBlob(Buffer.from('b2'))];
    const deletedTop = await db.blob.storeBlob(Buffer.from('b3'));
    await db.blob.deleteBlob(deletedTop);
    expected = { rev: db.kv.status().rev, compactRev: 2, midRev, ids, deletedTop, lease };
    await db.close();
  });
  after(async () => {
    await pg.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  async function check(db: BuffDb): Promise<void> {
    assert.equal(await db.kv.getValue('a'), '3');
    assert.equal(db.kv.status().rev, expected.rev, 'the revision carries over');
    assert.equal(db.kv.status().compactRev, expected.compactRev);
    // History: the key as it was at an older revision.
    const old = await db.kv.range(rangeOf('a', expected.midRev));
    assert.equal(old.kvs[0]!.value.toString(), '2');
    const now = await db.kv.range(rangeOf('a'));
    assert.equal(now.kvs[0]!.version, 3);
    assert.deepEqual((await db.kv.range(rangeOf('bin'))).kvs[0]!.value, Buffer.from([0, 255, 1]));
    const ttl = await db.kv.leases.timeToLive(expected.lease, true);
    assert.ok(ttl.ttl > 3000, `lease ttl ${ttl.ttl}`);
    assert.deepEqual(
      ttl.keys.map((k) => k.toString()),
      ['leased'],
    );
    const b1 = await db.blob.getBlob(expected.ids[0]!);
    assert.equal(Buffer.from(b1.data).toString(), 'b1');
    assert.equal(b1.metadata, 'm1');
    assert.equal((await db.blob.getBlob(expected.ids[1]!)).metadata, null);
    const next = await db.blob.storeBlob(Buffer.from('new'));
    assert.ok(next > expected.deletedTop, `new id ${next} reuses an id up to ${expected.deletedTop}`);
    await db.kv.setValue('a', '4');
    assert.equal(db.kv.status().rev, expected.rev + 1);
  }

  it('copies sqlite to postgres, then back to sqlite, keeping revisions, history, leases and ids', async () => {
    const target = pg.locate('migrated');
    const to = `postgres:${target.kvStore},${target.blobStore}`;
    const res = migrate(`sqlite:${src.kvStore},${src.blobStore}`, to);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stderr, /copied \d+ keys/);
    // A second copy into the now non-empty destination is refused.
    const again = migrate(`sqlite:${src.kvStore},${src.blobStore}`, to);
    assert.equal(again.status, 4);
    assert.match(again.stderr, /^buffdb: .*not empty/);
    const back = { kvStore: join(dir, 'back-kv.db'), blobStore: join(dir, 'back-blob.db') };
    const res2 = migrate(to, `sqlite:${back.kvStore},${back.blobStore}`);
    assert.equal(res2.status, 0, res2.stderr);
    for (const [backend, stores] of [
      ['postgres', target],
      ['sqlite', back],
    ] as const) {
      const db = await BuffDb.open({ backend, ...stores, autoCompact: false });
      try {
        await check(db);
      } finally {
        await db.close();
      }
    }
  });
});
