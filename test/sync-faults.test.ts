/**
 * Sync under faults, with real processes: kill -9 of an edge or the hub in the middle of a sync
 * loses no acknowledged write and applies none twice; a silent dead link is noticed within 30 s;
 * a slow, throttled link still converges.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { eventually } from './helpers/server.js';
import { converged, Site, setKeys, valueIn, versionsUnder } from './helpers/sync.js';
import { startProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const BACKEND = 'sqlite';

const target = (addr: string) => ({
  host: addr.slice(0, addr.lastIndexOf(':')),
  port: Number(addr.slice(addr.lastIndexOf(':') + 1)),
});

const keys = (prefix: string, n: number): [string, string][] =>
  Array.from({ length: n }, (_, i) => [`${prefix}${String(i).padStart(5, '0')}`, `value ${i} of ${prefix}`]);

/** Every key under `prefix` on `site` exactly once-written (version 1), and `n` of them. */
async function appliedOnce(site: Site, prefix: string, n: number): Promise<void> {
  const versions = await versionsUnder(site.addr, prefix);
  assert.equal(versions.size, n, `${site.name} holds every acknowledged write under ${prefix}`);
  assert.deepEqual([...new Set(versions.values())], [1], `${site.name}: no write applied twice`);
}

describe('sync under faults', () => {
  let hub: Site;
  let edge: Site;
  let proxy: TcpProxy;

  before(async () => {
    hub = await Site.start('hub', BACKEND);
    proxy = await startProxy(target(hub.addr));
    edge = await Site.start('edge', BACKEND, ['--sync-to', proxy.address]);
  });
  after(async () => {
    await Promise.all([edge?.dispose(), hub?.dispose()]);
    proxy?.close();
  });

  it('kill -9 of the edge right after its writes are acknowledged loses none and applies none twice', async () => {
    await setKeys(edge.addr, keys('k9edge/', 4000));
    await edge.kill9();
    await edge.restart();
    await converged([hub, edge], 'the hub gets every acknowledged write of the killed edge');
    await appliedOnce(hub, 'k9edge/', 4000);
  });

  it('kill -9 of the hub in the middle of receiving loses none and applies none twice', async () => {
    await setKeys(edge.addr, keys('k9hub/', 6000));
    await eventually(async () => (await versionsUnder(hub.addr, 'k9hub/')).size > 0, 'the hub has begun receiving');
    await hub.kill9();
    await hub.restart();
    await converged([hub, edge], 'the hub gets every write after its restart');
    await appliedOnce(hub, 'k9hub/', 6000);
    await appliedOnce(edge, 'k9hub/', 6000);
  });

  it("a value larger than gRPC's default 4 MiB message travels both ways", async () => {
    const big = (seed: number) => randomBytes(6 * 1024 * 1024).toString('base64') + seed;
    const down = big(1);
    const up = big(2);
    await setKeys(hub.addr, [['big/down', down]]);
    await setKeys(edge.addr, [['big/up', up]]);
    const dump = await converged([hub, edge], 'both large values reach the other side');
    assert.equal(valueIn(dump, 'big/down'), down);
    assert.equal(valueIn(dump, 'big/up'), up);
  });

  it('a silent dead link is noticed within 30 s; after it heals, both sides converge', async () => {
    await eventually(async () => (await edge.status()).connected, 'the edge is connected');
    proxy.block();
    await setKeys(edge.addr, keys('dead/e/', 10));
    await setKeys(hub.addr, keys('dead/h/', 10));
    await eventually(async () => !(await edge.status()).connected, 'the edge notices the dead link', 30_000);
    proxy.unblock();
    await eventually(async () => (await edge.status()).connected, 'the edge reconnects within a minute', 60_000);
    await converged([hub, edge], 'both sides converge after the link heals');
  });

  it('over a slow link (1 Mbit/s, 200 ms each way) writes on both sides converge', async () => {
    proxy.setRate(125_000);
    proxy.setDelay(200);
    try {
      proxy.cut();
      await setKeys(edge.addr, keys('slow/e/', 500));
      await setKeys(hub.addr, keys('slow/h/', 500));
      await converged([hub, edge], 'both sides converge over the slow link', 60_000);
    } finally {
      proxy.setRate(undefined);
      proxy.setDelay(0);
    }
  });
});
