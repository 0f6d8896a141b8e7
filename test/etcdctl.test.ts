/**
 * etcdctl (Debian etcd-client 3.4), as users run it, against a real `buffdb run` process, once per
 * backend. The main check: the same script of commands (every get/put/del flag, txn in both stdin
 * forms, watch with --rev and --prev-kv, leases, compaction, errors) prints exactly what it prints
 * against a real etcd 3.4 started by the harness, once ids, addresses and timings are normalised.
 * Then the commands whose output names the server (endpoint status/health, member list) and the
 * streaming ones (lease keep-alive) against buffdb alone.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { etcdctl, etcdMissing, findEtcdctl, type RunningEtcd, startEtcd, unlessCi } from './helpers/etcd.js';
import { type ServerProcess, type ServerStores, serverStores, spawnServer, TEST_BACKENDS } from './helpers/server.js';

interface Step {
  args: string[];
  input?: string;
  /** For commands that do not end (watch): stop once stdout has this many lines. */
  lines?: number;
}

const TXN_CAS = 'value("k") = "v"\n\nput k v2\nget k\n\nput k nope\n\n';
const TXN_MULTI = 'mod("k") > "1"\nver("k") = "2"\ncreate("k") < "1000"\n\ndel k --prev-kv\nput z 1\n\nget k\n\n';

/** Every command runs against a fresh store on both sides, so revisions line up. `$LEASE`: the lease granted first. */
const SCRIPT: Step[] = [
  { args: ['put', 'foo', 'bar'] },
  { args: ['put', 'foo', 'baz', '--prev-kv'] },
  { args: ['put', 'new', 'x', '--prev-kv'] },
  { args: ['put', 'a', '1'] },
  { args: ['put', 'b', '2'] },
  { args: ['put', 'c', '3'] },
  { args: ['put', 'p/1', 'one'] },
  { args: ['put', 'p/2', 'two'] },
  { args: ['put', 'p0', 'after the prefix'] },
  { args: ['get', 'foo'] },
  { args: ['get', 'a', 'c'] },
  { args: ['get', 'b', '--from-key'] },
  { args: ['get', 'p/', '--prefix'] },
  { args: ['get', '', '--prefix', '--limit=2'] },
  { args: ['get', 'foo', '--rev=2'] },
  { args: ['get', 'foo', '--rev=-1'] },
  { args: ['get', '', '--prefix', '--keys-only'] },
  { args: ['get', '', '--prefix', '--print-value-only'] },
  { args: ['get', '', '--prefix', '--sort-by=VALUE', '--order=DESCEND'] },
  { args: ['get', '', '--prefix', '--sort-by=MODIFY', '--order=DESCEND'] },
  { args: ['get', '', '--prefix', '--sort-by=CREATE'] },
  { args: ['get', '', '--prefix', '--sort-by=VERSION', '--order=ASCEND'] },
  { args: ['get', '', '--prefix', '--sort-by=KEY', '--order=DESCEND', '--limit=3'] },
  { args: ['get', '', '--prefix', '--min-mod-rev=5', '--max-create-rev=8'] },
  { args: ['get', '', '--prefix', '-w', 'json'] },
  { args: ['get', 'p/', '--prefix', '--limit=1', '-w', 'json'] },
  { args: ['get', 'nothing'] },
  { args: ['get', 'nothing', '-w', 'json'] },
  { args: ['get', 'foo', '--rev=100'] },
  { args: ['put', 'foo', '--ignore-value'] },
  { args: ['put', 'foo', 'v', '--ignore-value'] },
  { args: ['get', 'foo', '-w', 'json'] },
  { args: ['put', '', 'v'] },
  { args: ['put', 'stdin-value'], input: 'from stdin' },
  { args: ['get', 'stdin-value', '--print-value-only'] },
  { args: ['del', 'nothing'] },
  { args: ['del', 'a', '--prev-kv'] },
  { args: ['del', 'p/', '--prefix', '--prev-kv'] },
  { args: ['del', 'new', '--from-key'] },
  { args: ['get', '', '--prefix', '--keys-only'] },
  { args: ['put', 'k', 'v'] },
  { args: ['lease', 'grant', '100'] },
  { args: ['lease', 'list'] },
  { args: ['put', 'leased', 'v', '--lease=$LEASE'] },
  { args: ['put', 'leased', 'v2', '--ignore-lease'] },
  { args: ['get', 'leased', '-w', 'json'] },
  { args: ['put', 'leased', 'v3', '--lease=1234'] },
  { args: ['put', 'leased', 'v3', '--lease=nothex'] },
  { args: ['lease', 'timetolive', '$LEASE', '--keys'] },
  { args: ['lease', 'timetolive', '$LEASE', '-w', 'json'] },
  { args: ['lease', 'keep-alive', '--once', '$LEASE'] },
  { args: ['lease', 'revoke', '$LEASE'] },
  { args: ['lease', 'timetolive', '$LEASE'] },
  { args: ['lease', 'revoke', '$LEASE'] },
  { args: ['lease', 'keep-alive', '--once', '$LEASE'] },
  { args: ['lease', 'grant', '1'] },
  { args: ['get', 'leased'] },
  { args: ['txn'], input: TXN_CAS },
  { args: ['txn'], input: TXN_CAS },
  { args: ['txn', '-i'], input: TXN_MULTI },
  { args: ['txn'], input: 'val("nope") = "x"\n\n\nput q 1\nput q 2\n\n' },
  { args: ['txn', '-w', 'json'], input: TXN_CAS },
  { args: ['txn'], input: 'bad compare\n\n' },
  { args: ['watch', 'k', '--rev=1', '--prev-kv'], lines: 18 },
  { args: ['watch', '', '--prefix', '--rev=20'], lines: 21 },
  { args: ['compaction', '20'] },
  { args: ['compaction', '3'] },
  { args: ['compaction', '1000'] },
  { args: ['get', 'k', '--rev=19'] },
  { args: ['get', 'k', '--rev=20'] },
  { args: ['watch', 'k', '--rev=2'] },
  { args: ['alarm', 'list'] },
  { args: ['endpoint', 'health', '-w', 'json'] },
];

interface Transcript {
  step: string;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** What differs between two servers by nature: addresses, ids, raft terms, timings, client ids. */
function normalise(text: string, endpoint: string, lease: string | undefined): string {
  let out = text.split(endpoint).join('ENDPOINT');
  if (lease) {
    out = out
      .split(lease)
      .join('LEASE')
      .split(BigInt(`0x${lease}`).toString())
      .join('LEASE');
  }
  return out
    .replace(/^\{"level":"warn".*\n/gm, 'CLIENT-RETRY-WARNING\n')
    .replace(/"(cluster_id|member_id)":\d+/g, '"$1":ID')
    .replace(/"raft_term":\d+/g, '"raft_term":TERM')
    .replace(/"took":"[^"]*"/g, '"took":TIME')
    .replace(/remaining\(\d+s\)/g, 'remaining(Ns)')
    .replace(/"ttl":\d+/g, '"ttl":N')
    .replace(/lease [0-9a-f]{16} granted with TTL\(2s\)/g, 'lease OTHER granted with TTL(2s)');
}

async function runScript(endpoint: string): Promise<Transcript[]> {
  const out: Transcript[] = [];
  let lease: string | undefined;
  for (const step of SCRIPT) {
    const args = step.args.map((a) => a.replace('$LEASE', lease ?? ''));
    const lines = step.lines;
    const r = await etcdctl(endpoint, args, {
      input: step.input,
      until: lines === undefined ? undefined : (s) => s.split('\n').length > lines,
    });
    lease ??= /^lease ([0-9a-f]{16}) granted/.exec(r.stdout)?.[1];
    out.push({
      step: step.args.join(' '),
      code: r.code,
      stdout: normalise(r.stdout, endpoint, lease),
      stderr: normalise(r.stderr, endpoint, lease),
    });
  }
  return out;
}

const noCtl = unlessCi(findEtcdctl() ? undefined : 'etcdctl not installed: apt-get install etcd-client');

describe('etcdctl against buffdb', { skip: noCtl, concurrency: true }, () => {
  let reference: Transcript[] | undefined;
  let etcd: RunningEtcd | undefined;
  before(async () => {
    if (etcdMissing()) return;
    etcd = await startEtcd();
    reference = await runScript(etcd.endpoint);
    await etcd.stop();
  });
  after(async () => {
    await etcd?.stop();
  });

  it('the real etcd answers the script as this suite expects (the reference is sound)', (t) => {
    if (!reference) return t.skip(etcdMissing());
    const at = (step: string) => reference!.find((r) => r.step === step)!;
    assert.deepEqual(at('put foo baz --prev-kv').stdout, 'OK\nfoo\nbar\n');
    assert.deepEqual(at('watch k --rev=2').code, 5);
    assert.match(at('lease timetolive $LEASE --keys').stdout, /attached keys\(\[leased\]\)/);
  });

  for (const backend of TEST_BACKENDS) {
    describe(`[${backend}]`, () => {
      let stores: ServerStores;
      let server: ServerProcess;
      let ours: Transcript[];
      before(async () => {
        stores = await serverStores(backend, 'buffdb-etcdctl-');
        server = await spawnServer(stores.args('--etcd-listen', '127.0.0.1:0'), stores.dir);
        ours = await runScript(server.addr);
      });
      after(async () => {
        server.child.kill('SIGTERM');
        await server.exited;
        await stores.dispose();
      });

      it('prints exactly what it prints against etcd 3.4 for every command of the script', (t) => {
        if (!reference) return t.skip(etcdMissing());
        for (const [i, expected] of reference.entries())
          assert.deepEqual(ours[i], expected, `etcdctl ${expected.step}`);
      });

      it('prints etcd’s documented formats (checked without a reference etcd)', () => {
        const at = (step: string) => ours.find((r) => r.step === step)!;
        assert.deepEqual(at('put foo bar'), { step: 'put foo bar', code: 0, stdout: 'OK\n', stderr: '' });
        assert.equal(at('get foo').stdout, 'foo\nbaz\n');
        assert.equal(at('get a c').stdout, 'a\n1\nb\n2\n');
        assert.equal(at('get p/ --prefix').stdout, 'p/1\none\np/2\ntwo\n');
        assert.equal(at('del a --prev-kv').stdout, '1\na\n1\n');
        assert.equal(at('lease timetolive $LEASE').stdout, 'lease LEASE already expired\n');
        assert.equal(at('txn').stdout, 'SUCCESS\n\nOK\n\nk\nv2\n');
        assert.equal(
          at('txn -i').stdout,
          'compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nFAILURE\n\nk\nnope\n',
        );
        assert.equal(at('compaction 20').stdout, 'compacted revision 20\n');
        assert.deepEqual(
          [at('put  v').code, at('put  v').stderr.split('\n').at(-2)],
          [1, 'Error: etcdserver: key is not provided'],
        );
        const watch = at('watch k --rev=2');
        assert.deepEqual(
          [watch.code, watch.stdout, watch.stderr],
          [
            5,
            '',
            'watch was canceled (etcdserver: mvcc: required revision has been compacted)\nError: watch is canceled by the server\n',
          ],
        );
      });

      it('endpoint status, endpoint health and member list name this one member, the leader', async () => {
        const status = await etcdctl(server.addr, ['endpoint', 'status']);
        assert.equal(status.code, 0, status.stderr);
        const m = /^(\S+), ([0-9a-f]+), 3\.5\.0, \d+(\.\d+)? [kMG]?B, true, false, 1, (\d+), (\d+), \n$/.exec(
          status.stdout,
        );
        assert.ok(m, `endpoint status printed ${JSON.stringify(status.stdout)}`);
        assert.equal(m[1], server.addr);
        const members = await etcdctl(server.addr, ['member', 'list']);
        assert.equal(members.stdout, `${m[2]}, started, buffdb, , http://${server.addr}, false\n`);
        const health = await etcdctl(server.addr, ['endpoint', 'health']);
        assert.equal(health.code, 0);
        assert.match(
          health.stderr,
          new RegExp(`^${server.addr} is healthy: successfully committed proposal: took = \\S+\\n$`),
        );
      });

      it('the --etcd-listen address serves the same store, and names itself in member list', async () => {
        const addr = server.etcdAddr!;
        assert.equal((await etcdctl(addr, ['put', 'via-etcd-port', 'yes'])).stdout, 'OK\n');
        assert.equal((await etcdctl(server.addr, ['get', 'via-etcd-port', '--print-value-only'])).stdout, 'yes\n');
        assert.match((await etcdctl(addr, ['member', 'list'])).stdout, new RegExp(`, http://${addr}, false\\n$`));
      });

      it('lease keep-alive renews until the lease is revoked, then says so', async () => {
        const granted = await etcdctl(server.addr, ['lease', 'grant', '3']);
        const id = /^lease ([0-9a-f]+) granted with TTL\(3s\)\n$/.exec(granted.stdout)?.[1];
        assert.ok(id, granted.stdout);
        let revoked = false;
        const keepAlive = etcdctl(server.addr, ['lease', 'keep-alive', id], {
          timeoutMs: 20_000,
          until: (out) => {
            if (!revoked && out.includes('keepalived')) {
              revoked = true;
              void etcdctl(server.addr, ['lease', 'revoke', id]);
            }
            return out.includes('expired or revoked');
          },
        });
        const r = await keepAlive;
        assert.equal(r.timedOut, false, r.stdout + r.stderr);
        const lines = r.stdout.trim().split('\n');
        assert.match(lines[0]!, new RegExp(`^lease ${id} keepalived with TTL\\(3\\)$`));
        assert.equal(lines.at(-1), `lease ${id} expired or revoked.`);
      });
    });
  }
});
