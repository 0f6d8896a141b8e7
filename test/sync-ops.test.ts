/**
 * Running sync: prefixes, an edge that starts (and restarts) with its hub unreachable, a copied
 * store taking a new identity, a hub with auth on, a site away longer than --sync-max-offline
 * (reset), and a hub on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { makePki } from './helpers/ops.js';
import { CLI, eventually, TEST_BACKENDS } from './helpers/server.js';
import { converged, deleteKeys, isCompacted, Site, setKeys, valueIn } from './helpers/sync.js';

const BACKEND = 'sqlite';

async function withSites(fn: (track: (s: Site) => Site) => Promise<void>): Promise<void> {
  const sites: Site[] = [];
  try {
    await fn((s) => {
      sites.push(s);
      return s;
    });
  } finally {
    await Promise.all(sites.map((s) => s.dispose()));
  }
}

describe('sync in operation', { concurrency: 3 }, () => {
  it('--sync-push-prefix and --sync-pull-prefix limit what goes up and comes down', () =>
    withSites(async (track) => {
      const hub = track(await Site.start('hub', BACKEND));
      const edge = track(
        await Site.start('edge', BACKEND, [
          '--sync-to',
          hub.addr,
          '--sync-push-prefix',
          'up/',
          '--sync-pull-prefix',
          'down/',
        ]),
      );
      await setKeys(edge.addr, [
        ['up/1', 'goes'],
        ['local/1', 'stays'],
      ]);
      await setKeys(hub.addr, [
        ['down/1', 'comes'],
        ['hubonly/1', 'stays'],
      ]);
      await eventually(async () => valueIn(await hub.dump(), 'up/1') === 'goes', 'up/1 reaches the hub');
      await eventually(async () => valueIn(await edge.dump(), 'down/1') === 'comes', 'down/1 reaches the edge');
      await eventually(async () => (await edge.status()).waitingUp === 0n, 'nothing left to send');
      assert.equal(valueIn(await hub.dump(), 'local/1'), undefined);
      assert.equal(valueIn(await edge.dump(), 'hubonly/1'), undefined);
      await deleteKeys(edge.addr, ['up/1', 'local/1']);
      await eventually(async () => valueIn(await hub.dump(), 'up/1') === undefined, 'the delete of up/1 goes up');
    }));

  it('an edge starts, serves and restarts while its hub is unreachable, then catches up', () =>
    withSites(async (track) => {
      const hub = track(await Site.start('hub', BACKEND));
      const hubAddr = hub.addr;
      await hub.stop();
      const edge = track(await Site.start('edge', BACKEND, ['--sync-to', hubAddr]));
      await setKeys(edge.addr, [['offline/1', 'a']]);
      await edge.kill9();
      await edge.restart();
      await setKeys(edge.addr, [['offline/2', 'b']]);
      assert.equal((await edge.status()).connected, false);
      await hub.restart();
      const dump = await converged([hub, edge], 'the hub gets what the edge wrote offline');
      assert.equal(valueIn(dump, 'offline/1'), 'a');
      assert.equal(valueIn(dump, 'offline/2'), 'b');
    }));

  it('a copied store takes a new site identity: writes of the original and the copy all arrive', () =>
    withSites(async (track) => {
      const hub = track(await Site.start('hub', BACKEND));
      const edge = track(await Site.start('edge', BACKEND, ['--sync-to', hub.addr]));
      await setKeys(edge.addr, [['copy/base', '0']]);
      await converged([hub, edge], 'the edge has synced once');
      const site = (await edge.status()).site;
      await edge.stop();
      const copy = track(await Site.start('copy', BACKEND, ['--sync-to', hub.addr]));
      await copy.stop();
      for (const f of readdirSync(edge.stores.dir)) cpSync(join(edge.stores.dir, f), join(copy.stores.dir, f));
      await copy.restart();
      await edge.restart();
      assert.equal((await edge.status()).site, site, 'the original keeps its identity');
      assert.notEqual((await copy.status()).site, site, 'the copy takes a new one');
      await setKeys(edge.addr, [['copy/original', 'o']]);
      await setKeys(copy.addr, [['copy/copy', 'c']]);
      const dump = await converged([hub, edge, copy], 'writes of both reach every site');
      assert.equal(valueIn(dump, 'copy/original'), 'o');
      assert.equal(valueIn(dump, 'copy/copy'), 'c');
    }));

  it('a store restored in place from an older copy (same file) is told by the hub to take a new identity', () =>
    withSites(async (track) => {
      const hub = track(await Site.start('hub', BACKEND));
      const edge = track(await Site.start('edge', BACKEND, ['--sync-to', hub.addr]));
      await setKeys(edge.addr, [['restore/1', 'a']]);
      await converged([hub, edge], 'first sync');
      await edge.stop();
      const saved = join(edge.stores.dir, 'saved');
      mkdirSync(saved);
      const files = readdirSync(edge.stores.dir).filter((f) => f.startsWith('kv.db'));
      for (const f of files) cpSync(join(edge.stores.dir, f), join(saved, f));
      await edge.restart();
      await setKeys(edge.addr, [['restore/2', 'b']]);
      await converged([hub, edge], 'second sync');
      const site = (await edge.status()).site;
      await edge.stop();
      // Back to the older image, over the same files (same inode): only the hub can tell.
      for (const f of readdirSync(edge.stores.dir)) {
        if (f.startsWith('kv.db') && !files.includes(f)) rmSync(join(edge.stores.dir, f));
      }
      // Written over in place: the files keep their inodes.
      for (const f of files) writeFileSync(join(edge.stores.dir, f), readFileSync(join(saved, f)));
      await edge.restart();
      await edge.proc!.waitForStderr(/restored or copied image: it took a new sync identity/, 30_000);
      assert.doesNotMatch(edge.proc!.stderr(), /lives somewhere new/);
      assert.notEqual((await edge.status()).site, site);
      await setKeys(edge.addr, [['restore/3', 'c']]);
      const dump = await converged([hub, edge], 'writes after the restore arrive, and the hub state comes back');
      assert.equal(valueIn(dump, 'restore/2'), 'b');
      assert.equal(valueIn(dump, 'restore/3'), 'c');
    }));

  it('a hub with auth on takes an edge with a sync token, and refuses one without', () =>
    withSites(async (track) => {
      const hub = track(await Site.start('hub', BACKEND));
      const token = spawnSync(
        process.execPath,
        [CLI, 'auth', 'add-token', 'edge', '--auth-file', 'auth.json', '--sync'],
        {
          cwd: hub.stores.dir,
          encoding: 'utf8',
        },
      );
      assert.equal(token.status, 0, token.stderr);
      await hub.stop();
      await hub.restart(['--auth-file', 'auth.json']);
      const good = track(
        await Site.start('good', BACKEND, ['--sync-to', hub.addr, '--sync-token', token.stdout.trim()]),
      );
      const bad = track(await Site.start('bad', BACKEND, ['--sync-to', hub.addr]));
      await setKeys(good.addr, [['auth/good', 'in']]);
      await setKeys(bad.addr, [['auth/bad', 'out']]);
      await eventually(async () => (await good.status()).waitingUp === 0n, 'the edge with a token syncs');
      await eventually(
        async () => /token|UNAUTHENTICATED/i.test((await bad.status()).lastError),
        'the other is refused',
      );
      assert.equal((await bad.status()).connected, false);
      const get = spawnSync(
        process.execPath,
        [CLI, 'kv', 'get', 'auth/good', '--addr', hub.addr, '--token', token.stdout.trim()],
        { encoding: 'utf8' },
      );
      // The sync right alone does not read keys through Kv.
      assert.equal(get.status, 4, get.stderr);
    }));

  it('an edge reaches a hub that serves TLS with --sync-tls-ca', () =>
    withSites(async (track) => {
      const hub = track(await Site.start('tlshub', BACKEND));
      const pki = makePki(hub.stores.dir);
      await hub.stop();
      await hub.restart(['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey]);
      const edge = track(await Site.start('edge', BACKEND, ['--sync-to', hub.addr, '--sync-tls-ca', pki.caCert]));
      await setKeys(edge.addr, [['tls/up', 'secure']]);
      const cli = (...args: string[]) =>
        spawnSync(process.execPath, [CLI, 'kv', ...args, '--addr', hub.addr, '--tls-ca', pki.caCert], {
          encoding: 'utf8',
        });
      await eventually(() => cli('get', 'tls/up').stdout === 'secure', 'the write reaches the TLS hub');
      assert.equal(cli('set', 'tls/down', 'back').status, 0);
      await eventually(async () => valueIn(await edge.dump(), 'tls/down') === 'back', 'and comes back down');
    }));

  it('a site away longer than --sync-max-offline gets a reset: deleted keys stay deleted, its own writes arrive', () =>
    withSites(async (track) => {
      const hub = track(await Site.start('hub', BACKEND, ['--sync-max-offline', '1', '--auto-compact', '1']));
      const edge = track(await Site.start('edge', BACKEND, ['--sync-to', hub.addr]));
      await setKeys(hub.addr, [
        ['reset/gone', 'x'],
        ['reset/kept', 'y'],
      ]);
      await converged([hub, edge], 'the edge has the keys');
      await edge.stop();
      await deleteKeys(hub.addr, ['reset/gone']);
      await setKeys(hub.addr, [
        ['reset/kept', 'y2'],
        ['reset/more', '1'],
        ['reset/more', '2'],
        ['reset/more', '3'],
      ]);
      // Compaction passes the edge's cursor once the edge is away longer than 1 s.
      await eventually(
        () => isCompacted(hub.addr, 6),
        'the hub compacts the history the edge has not received',
        30_000,
      );
      await edge.restart();
      await edge.proc!.waitForStderr(/receiving its current state \(reset\)/, 30_000);
      await setKeys(edge.addr, [['reset/mine', 'z']]);
      const dump = await converged([hub, edge], 'hub and edge converge after the reset');
      assert.equal(valueIn(dump, 'reset/gone'), undefined);
      assert.equal(valueIn(dump, 'reset/kept'), 'y2');
      assert.equal(valueIn(dump, 'reset/mine'), 'z');
    }));

  it(
    'a hub on PostgreSQL serves sqlite edges',
    { skip: !TEST_BACKENDS.includes('postgres') && 'postgres is not under test' },
    () =>
      withSites(async (track) => {
        const hub = track(await Site.start('pghub', 'postgres'));
        const e1 = track(await Site.start('e1', BACKEND, ['--sync-to', hub.addr]));
        const e2 = track(await Site.start('e2', BACKEND, ['--sync-to', hub.addr]));
        await setKeys(e1.addr, [['pg/e1', '1']]);
        await setKeys(e2.addr, [['pg/e2', '2']]);
        await setKeys(hub.addr, [['pg/hub', 'h']]);
        const dump = await converged([hub, e1, e2], 'a postgres hub and two sqlite edges converge');
        assert.equal(valueIn(dump, 'pg/e1'), '1');
      }),
  );
});
