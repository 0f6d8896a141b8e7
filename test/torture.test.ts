/** Crash loop, short variant: kill -9 under write load, restart, every acknowledged write is there. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runTorture } from '../scripts/torture.js';
import { storeLocator } from './helpers/postgres.js';
import { TEST_BACKENDS } from './helpers/server.js';

for (const backend of TEST_BACKENDS) {
  describe(`crash loop [${backend}]`, () => {
    it('3 kill -9 loops lose no acknowledged write (buffdb or etcd API), reuse no revision, leave no phantom data', async () => {
      const lines: string[] = [];
      const stores = await storeLocator(backend);
      const result = await runTorture({
        backend,
        loops: 3,
        clients: 4,
        maxRunMs: 800,
        log: (l) => lines.push(l),
        stores: stores.locate('torture'),
      }).finally(() => stores.dispose());
      assert.equal(result.loops, 3);
      assert.ok(result.ackedWrites > 0, 'no write was acknowledged: the loop tested nothing');
      assert.ok(result.keysChecked > 0 && result.blobsChecked > 0);
      assert.ok(result.etcdAcked > 0, 'no etcd write was acknowledged');
    });
  });
}
