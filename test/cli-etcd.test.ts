/**
 * `buffdb kv list`, `kv watch` and `kv set --ttl` on store files, run as users run them (the built
 * CLI as a child process), per backend. `kv watch` follows other processes' writes by polling the
 * store; on backends that allow one process per store only its own replay is checked.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { capabilitiesOf, isBackendName } from '../src/backends/index.js';
import { BuffDb } from '../src/store/buffdb.js';
import { assertOneLineError, ok, run } from './cli/cases.js';
import { Inbox } from './helpers/inbox.js';
import { storeLocator } from './helpers/postgres.js';
import { CLI, eventually, TEST_BACKENDS, tempDir } from './helpers/server.js';

/** `buffdb kv watch …` as a child process; its stdout lines arrive in an inbox. */
function startWatch(
  cwd: string,
  args: string[],
): { child: ChildProcess; lines: Inbox<string>; exit: Promise<number | null>; stderr: () => string } {
  const child = spawn(process.execPath, [CLI, 'kv', 'watch', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = new Inbox<string>();
  let partial = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop()!;
    for (const line of parts) lines.push(line);
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  void exit.then(() => lines.end());
  return { child, lines, exit, stderr: () => stderr };
}

for (const backend of TEST_BACKENDS) {
  describe(`kv list / watch / set --ttl on a store file [${backend}]`, () => {
    let dir: string;
    let locator: Awaited<ReturnType<typeof storeLocator>>;
    /** The stores: files in their own directory, or (URL backends) a schema each. */
    let stores: { kvStore: string; blobStore: string };
    const kv = (...args: string[]) => run(dir, ['kv', ...args, '-b', backend, '-s', stores.kvStore]);
    before(async () => {
      dir = tempDir('buffdb-cli-etcd-');
      locator = await storeLocator(backend);
      stores = locator.locate('cli');
    });
    after(async () => {
      await locator.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('kv list: KEY<tab>VALUE in byte order, a prefix, --keys-only, --limit, --json', async () => {
      for (const [k, v] of [
        ['user/b', 'bob'],
        ['user/a', 'alice'],
        ['users', 'not under user/'],
        ['other', 'x'],
      ])
        ok(kv('set', k!, v!));
      assert.equal(ok(kv('list')).out, 'other\tx\nuser/a\talice\nuser/b\tbob\nusers\tnot under user/\n');
      assert.equal(ok(kv('list', 'user/')).out, 'user/a\talice\nuser/b\tbob\n');
      assert.equal(ok(kv('list', 'user', '--keys-only')).out, 'user/a\nuser/b\nusers\n');
      assert.equal(ok(kv('ls', '--limit', '2')).out, 'other\tx\nuser/a\talice\n');
      assert.equal(ok(kv('list', 'nothing/')).out, '');
      const json = ok(kv('list', 'user/', '--json'))
        .out.trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.deepEqual(
        json.map((r) => [r.key, r.value, r.version]),
        [
          ['user/a', 'alice', 1],
          ['user/b', 'bob', 1],
        ],
      );
      assert.ok((json[0]!.mod_revision as number) > 1);
      // A key that is not UTF-8 (written through the etcd API) is listed in base64.
      const db = await BuffDb.open({ backend, ...stores });
      await db.kv.put({
        key: Buffer.from([0x62, 0xff]),
        value: Buffer.from('v'),
        lease: 0n,
        prevKv: false,
        ignoreValue: false,
        ignoreLease: false,
      });
      await db.close();
      assert.match(ok(kv('list', 'b', '--json')).out, /^\{"key_base64":"Yv8=","value":"v",/);
      assertOneLineError(kv('list', '--limit', 'many'), 2, /--limit/);
    });

    it('kv set --ttl: the key carries a lease and is gone once it expires', async () => {
      // Two keys: a long TTL to see the lease attached however slow the machine, a short one to expire.
      ok(kv('set', 'lasting', 'token', '--ttl', '300'));
      ok(kv('set', 'session', 'token', '--ttl', '1'));
      const [listed] = ok(kv('list', 'lasting', '--json'))
        .out.trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { lease?: string });
      assert.ok(listed?.lease && BigInt(listed.lease) > 0n, 'attached to a lease');
      // Expiry is observed, not slept for: the store revokes expired leases when it is next opened.
      await eventually(() => kv('get', 'session').status !== 0, 'the key gone within 30 s of its 1 s TTL', 30_000);
      assertOneLineError(kv('get', 'session'), 3, 'session');
      assertOneLineError(kv('set', 'k', 'v', '--ttl', 'soon'), 2, /--ttl/);
    });

    it('kv watch --rev replays the history, one line per event; --json; interrupted, it exits 0', async () => {
      ok(kv('set', 'w/a', '1'));
      ok(kv('set', 'w/a', '2'));
      ok(kv('delete', 'w/a'));
      const first = JSON.parse(ok(kv('list', 'w/', '--json')).out || '{}') as unknown;
      assert.deepEqual(first, {});
      const w = startWatch(dir, ['w/', '--rev', '1', '-b', backend, '-s', stores.kvStore]);
      const lines = await w.lines.count(3, 'the replayed events');
      assert.deepEqual(lines.slice(0, 3), ['PUT\tw/a\t1', 'PUT\tw/a\t2', 'DELETE\tw/a']);
      w.child.kill('SIGINT');
      assert.equal(await w.exit, 0, w.stderr());
      assert.equal(w.stderr(), '');
      const j = startWatch(dir, ['w/', '--rev', '1', '--json', '-b', backend, '-s', stores.kvStore]);
      const [put] = await j.lines.count(1, 'a JSON line');
      j.child.kill('SIGTERM');
      assert.equal(await j.exit, 0);
      const record = JSON.parse(put!) as { type: string; key: string; value: string; revision: number };
      assert.deepEqual([record.type, record.key, record.value], ['PUT', 'w/a', '1']);
      assert.ok(record.revision > 1);
    });

    it('kv watch follows what other processes write to the store file', async (t) => {
      if (!isBackendName(backend) || !capabilitiesOf(backend).multiProcess) {
        return t.skip(`${backend} lets one process open a store at a time`);
      }
      const w = startWatch(dir, ['live/', '-b', backend, '--interval', '50', '-s', stores.kvStore]);
      // The watcher is up once it has opened the store: wait for a write it must see to show up.
      const deadline = Date.now() + 15_000;
      let n = 0;
      while (w.lines.items.length === 0) {
        assert.ok(Date.now() < deadline, `kv watch never printed anything: ${w.stderr()}`);
        ok(kv('set', 'live/probe', String(n++)));
        await w.lines.until((l) => l.length > 0, 'the probe', 1000).catch(() => {});
      }
      ok(kv('set', 'live/k', 'one'));
      ok(kv('delete', 'live/k'));
      ok(kv('set', 'elsewhere', 'not watched'));
      const lines = await w.lines.until((l) => l.includes('DELETE\tlive/k'), 'the delete');
      const after = lines.slice(lines.indexOf('PUT\tlive/k\tone'));
      assert.deepEqual(after, ['PUT\tlive/k\tone', 'DELETE\tlive/k']);
      w.child.kill('SIGINT');
      assert.equal(await w.exit, 0);
    });

    it('kv watch from a compacted revision: one line naming the compaction, exit 4', async () => {
      const db = await BuffDb.open({ backend, ...stores });
      await db.kv.setValue('c/k', '1');
      await db.kv.setValue('c/k', '2');
      const rev = db.kv.status().rev;
      await db.kv.compact(rev, true);
      await db.close();
      const w = startWatch(dir, ['c/', '--rev', '1', '-b', backend, '-s', stores.kvStore]);
      assert.equal(await w.exit, 4);
      assert.equal(
        w.stderr(),
        `buffdb: the history before revision ${rev} is compacted: watch from --rev ${rev} or later\n`,
      );
    });
  });
}
