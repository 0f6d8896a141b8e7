/**
 * Edge ⇄ hub sync with real processes on loopback (docs/sync.md): a hub and two edges converge to
 * the same content after writes on every side while apart, conflicts resolve the same way
 * everywhere, and `buffdb sync status` follows the link.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { clockPassed } from '../src/conformance/sync-suite.js';
import { CLI, eventually } from './helpers/server.js';
import { converged, deleteKeys, Site, setKeys, valueIn, versionsUnder } from './helpers/sync.js';
import { startProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const BACKEND = 'sqlite';

function statusJson(addr: string): { connected: boolean; waitingUp: number; conflicts: number; site: string } {
  const r = spawnSync(process.execPath, [CLI, 'sync', 'status', '--addr', addr, '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('sync: a hub and two edges', () => {
  let hub: Site;
  let e1: Site;
  let e2: Site;
  let p1: TcpProxy;
  let p2: TcpProxy;
  const hubTarget = () => {
    const [host, port] = [
      hub.addr.slice(0, hub.addr.lastIndexOf(':')),
      Number(hub.addr.slice(hub.addr.lastIndexOf(':') + 1)),
    ];
    return { host, port };
  };

  before(async () => {
    hub = await Site.start('hub', BACKEND);
    p1 = await startProxy(hubTarget());
    p2 = await startProxy(hubTarget());
    e1 = await Site.start('e1', BACKEND, ['--sync-to', p1.address]);
    e2 = await Site.start('e2', BACKEND, ['--sync-to', p2.address, '--metrics-addr', '127.0.0.1:0']);
  });
  after(async () => {
    await Promise.all([e1?.dispose(), e2?.dispose(), hub?.dispose()]);
    p1?.close();
    p2?.close();
  });

  it('writes on every site reach every other site', async () => {
    await setKeys(hub.addr, [['from/hub', 'h']]);
    await setKeys(e1.addr, [['from/e1', '1']]);
    await setKeys(e2.addr, [['from/e2', '2']]);
    const dump = await converged([hub, e1, e2], 'all three sites hold the same keys');
    assert.equal(valueIn(dump, 'from/hub'), 'h');
    assert.equal(valueIn(dump, 'from/e1'), '1');
    assert.equal(valueIn(dump, 'from/e2'), '2');
    const metricsUrl = /^metrics on (\S+)/m.exec(e2.proc!.stdout())![1]!;
    const metrics = await (await fetch(metricsUrl)).text();
    assert.match(metrics, /^buffdb_sync_connected 1$/m);
    assert.match(metrics, /^buffdb_sync_waiting_up_changes 0$/m);
    assert.match(metrics, /^buffdb_sync_sent_bytes [1-9]\d*$/m);
    await deleteKeys(e2.addr, ['from/hub']);
    const after = await converged([hub, e1, e2], 'a delete on an edge reaches every site');
    assert.equal(valueIn(after, 'from/hub'), undefined);
  });

  it('with the hub down, edges keep serving; when it returns on its address all converge, and the later of two conflicting writes wins everywhere', async () => {
    await hub.kill9();
    // Edges read and write while the hub is away (a write never waits for it).
    await setKeys(e1.addr, [
      ['apart/e1', 'one'],
      ['conflict', 'e1-older'],
    ]);
    await clockPassed(Date.now()); // e2's write is the later one by wall clock
    await setKeys(e2.addr, [
      ['apart/e2', 'two'],
      ['conflict', 'e2-later'],
    ]);
    assert.equal(statusJson(e1.addr).waitingUp >= 2, true, 'local changes wait for the hub');
    await eventually(() => statusJson(e1.addr).connected === false, 'e1 reports the hub lost', 30_000);
    await hub.restart();
    await setKeys(hub.addr, [['apart/hub', 'h2']]);
    await eventually(() => statusJson(e1.addr).connected && statusJson(e2.addr).connected, 'edges reconnect', 60_000);
    const dump = await converged([hub, e1, e2], 'all three converge after the hub returns');
    assert.equal(valueIn(dump, 'conflict'), 'e2-later');
    assert.equal(valueIn(dump, 'apart/e1'), 'one');
    assert.equal(valueIn(dump, 'apart/hub'), 'h2');
    // The loser is listed where the two writes met: the hub; or, when the hub had passed one edge's
    // write on to the other before that edge's own write reached it, that edge — e2 (e1's write
    // came first) or e1 (e2 reconnected first) (docs/sync.md, "Conflicts").
    const listed = [hub, e1, e2].flatMap((site) => {
      const out = spawnSync(process.execPath, [CLI, 'sync', 'conflicts', '--addr', site.addr, '--json'], {
        encoding: 'utf8',
      });
      assert.equal(out.status, 0, out.stderr);
      return out.stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { key: string; loser: string });
    });
    assert.ok(
      listed.some((c) => c.key === 'conflict' && c.loser === 'e1-older'),
      `the losing write is listed: ${JSON.stringify(listed)}`,
    );
  });

  it('a link cut mid-stream resumes and applies every change once', async () => {
    const keys: [string, string][] = Array.from({ length: 3000 }, (_, i) => [
      `bulk/${String(i).padStart(5, '0')}`,
      `v${i}`,
    ]);
    await setKeys(e1.addr, keys);
    p1.cut();
    await setKeys(e1.addr, [['bulk/after-cut', 'x']]);
    const dump = await converged([hub, e1, e2], 'the bulk reaches every site after a cut');
    assert.equal(dump.kv.filter(([k]) => Buffer.from(k, 'base64').toString().startsWith('bulk/')).length, 3001);
    assert.equal(statusJson(e1.addr).waitingUp, 0);
    // Applied once: each key was written once on e1, so it is at version 1 everywhere.
    for (const site of [hub, e2]) {
      const versions = await versionsUnder(site.addr, 'bulk/');
      assert.equal(versions.size, 3001);
      assert.deepEqual([...new Set(versions.values())], [1], `${site.name}: every key written once`);
    }
  });
});
