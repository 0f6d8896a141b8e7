/**
 * The real-etcd harness (test/helpers/etcd.ts) against a real etcd: etcdctl and the etcd3 npm
 * client both read and write through it. Skips where the Debian etcd binaries are not installed.
 */

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { etcdctl, etcdctlVersion, etcdMissing, type RunningEtcd, startEtcd } from './helpers/etcd.js';

const missing = etcdMissing();

describe('real etcd harness', () => {
  let etcd: RunningEtcd | undefined;
  let client: Etcd3 | undefined;
  before(async () => {
    if (missing) return;
    etcd = await startEtcd();
    client = new Etcd3({ hosts: etcd.url });
  });
  after(async () => {
    client?.close();
    await etcd?.stop();
  });

  it('etcdctl puts and gets through the harness', async (t) => {
    if (!etcd) return t.skip(missing);
    assert.deepEqual(await etcdctl(etcd.endpoint, ['put', 'greeting', 'hello']), {
      code: 0,
      stdout: 'OK\n',
      stderr: '',
      timedOut: false,
    });
    const got = await etcdctl(etcd.endpoint, ['get', 'greeting']);
    assert.deepEqual([got.code, got.stdout], [0, 'greeting\nhello\n']);
  });

  it('the etcd3 npm client reads what etcdctl wrote and writes what etcdctl reads', async (t) => {
    if (!etcd || !client) return t.skip(missing);
    assert.equal((await etcdctl(etcd.endpoint, ['put', 'from-ctl', 'v1'])).code, 0);
    assert.equal(await client.get('from-ctl').string(), 'v1');
    await client.put('from-npm').value('v2');
    const got = await etcdctl(etcd.endpoint, ['get', 'from-npm', '--print-value-only']);
    assert.deepEqual([got.code, got.stdout], [0, 'v2\n']);
  });

  it('endpoint health reports the endpoint healthy', async (t) => {
    if (!etcd) return t.skip(missing);
    const health = await etcdctl(etcd.endpoint, ['endpoint', 'health']);
    assert.equal(health.code, 0, health.stderr);
    // etcdctl prints the health line on stderr.
    assert.match(health.stderr, new RegExp(`^${etcd.endpoint} is healthy: successfully committed proposal: took = `));
    assert.match((await etcdctlVersion()) ?? '', /^3\.\d+\.\d+/);
  });

  it('etcdctl stops a watch once `until` sees the event', async (t) => {
    if (!etcd || !client) return t.skip(missing);
    await client.put('watched').value('x');
    // From revision 1 the watch replays the put, so nothing races with the watch's start.
    const watch = await etcdctl(etcd.endpoint, ['watch', 'watched', '--rev=1'], {
      until: (out) => out.includes('PUT\nwatched\nx\n'),
    });
    assert.deepEqual([watch.stdout, watch.timedOut], ['PUT\nwatched\nx\n', false]);
  });

  it('a command that does not end is killed at the timeout', async (t) => {
    if (!etcd) return t.skip(missing);
    const watch = await etcdctl(etcd.endpoint, ['watch', 'never-written'], { timeoutMs: 500 });
    assert.deepEqual([watch.code, watch.timedOut, watch.stdout], [null, true, '']);
  });

  it('stop() ends etcd and removes its temp dir', async (t) => {
    if (missing) return t.skip(missing);
    const other = await startEtcd();
    assert.ok(existsSync(other.dataDir));
    await other.stop();
    assert.notEqual(other.child.exitCode ?? other.child.signalCode, null);
    assert.equal(existsSync(other.dataDir), false);
    const refused = await etcdctl(other.endpoint, ['get', 'k', '--dial-timeout=1s', '--command-timeout=1s']);
    assert.notEqual(refused.code, 0);
  });
});
