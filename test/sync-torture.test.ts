/**
 * The sync crash loop, short (`npm run sync-torture` is the long one): a hub and two edges behind
 * fault proxies, writers on all three, links cut, blocked, delayed and throttled, sites killed
 * with kill -9 and restarted; then every site must hold the same content, with every acknowledged
 * write there unless a later write beat it, and transactions whole (scripts/sync-torture-check.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSyncTorture } from '../scripts/sync-torture.js';

test('sync crash loop: 15 s of writes, faults and kill -9 on a hub and two edges, then convergence with nothing lost', async () => {
  const lines: string[] = [];
  const result = await runSyncTorture({ seconds: 15, convergeSeconds: 60, log: (l) => lines.push(l) });
  assert.deepEqual(result.violations, [], `seed ${result.seed}:\n${lines.join('\n')}`);
  assert.ok(result.writes.acked > 100, `only ${result.writes.acked} acknowledged writes: the loop did not run`);
  assert.ok(Object.values(result.faults).reduce((a, b) => a + b, 0) > 0, 'no fault was injected');
});
