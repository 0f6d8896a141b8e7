/**
 * `buffdb run --metrics-addr`: a real server process scraped over HTTP, its output parsed as
 * Prometheus text; and the logs (JSON lines, readable on a terminal, slow requests, no secrets).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { connectEtcd } from '../src/client/etcd.js';
import { connect } from '../src/client/network.js';
import { WatchCreateRequest } from '../src/generated/etcd/etcdserverpb/rpc.js';
import { TargetStore } from '../src/generated/query.js';
import { redact } from '../src/server/observe.js';
import { bidi, CLI, eventually, type ServerProcess, spawnServer, tempDir } from './helpers/server.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format strictly: every line is HELP, TYPE or a well-formed sample of a typed family. */
function parsePrometheus(text: string): Sample[] {
  const typed = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        assert.match(meta[3]!, /^(counter|gauge|histogram|summary|untyped)$/, line);
        typed.set(meta[2]!, meta[3]!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line);
    assert.ok(m, `a valid sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? []) {
      const i = pair.indexOf('=');
      labels[pair.slice(0, i)] = JSON.parse(pair.slice(i + 1)) as string;
    }
    const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
    assert.ok(typed.has(m[1]!) || typed.has(family), `${m[1]} has a TYPE line`);
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describe('metrics and logs', () => {
  let dir: string;
  let srv: ServerProcess;
  let metricsUrl: string;
  before(async () => {
    dir = tempDir('buffdb-metrics-');
    srv = await spawnServer(['127.0.0.1:0', '--metrics-addr', '127.0.0.1:0', '--slow-ms', '1'], dir);
    const m = /metrics on (http:\/\/\S+\/metrics)/.exec(srv.stdout());
    metricsUrl = m ? m[1]! : '';
  });
  after(async () => {
    srv.child.kill('SIGTERM');
    await srv.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  const scrape = async (): Promise<Sample[]> => {
    const res = await fetch(metricsUrl);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parsePrometheus(await res.text());
  };

  test('a scrape after real traffic: calls by method and code, latency, bytes, group commit, stores, transactions', async () => {
    assert.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const clients = connect(srv.addr);
    try {
      assert.equal(
        (
          await bidi(
            clients.kv.set(),
            [1, 2, 3].map((i) => ({ key: `k${i}`, value: 'v' })),
          )
        ).err,
        undefined,
      );
      assert.equal((await bidi(clients.kv.get(), [{ key: 'missing' }])).err?.code, 5);
      // The batch size counts operations: Gets queued together share one job, and count one each.
      const batched = async (): Promise<number> =>
        value(await scrape(), 'buffdb_group_commit_batch_size_sum', { store: 'kv' }) ?? 0;
      const before = await batched();
      assert.equal(
        (
          await bidi(
            clients.kv.get(),
            [1, 2, 3].map((i) => ({ key: `k${i}` })),
          )
        ).err,
        undefined,
      );
      assert.ok((await batched()) - before >= 3, 'three Gets counted as fewer operations');
      assert.equal((await bidi(clients.blob.store(), [{ bytes: Buffer.alloc(1000, 1) }])).err, undefined);
      const id = await new Promise<string>((resolve, reject) =>
        clients.kv.beginTransaction({}, (err: ServiceError | null, res) =>
          err ? reject(err) : resolve(res!.transactionId),
        ),
      );
      await bidi(clients.kv.set(), [{ key: 'tx', value: 'v', transactionId: id }]);
      await new Promise<void>((resolve, reject) =>
        clients.kv.commitTransaction({ transactionId: id }, (err: ServiceError | null) =>
          err ? reject(err) : resolve(),
        ),
      );
    } finally {
      clients.close();
    }
    const s = await scrape();
    assert.equal(value(s, 'buffdb_grpc_calls_total', { method: 'buffdb.kv.Kv/Set', code: '0' }), 2);
    assert.equal(value(s, 'buffdb_grpc_calls_total', { method: 'buffdb.kv.Kv/Get', code: '5' }), 1);
    assert.equal(
      value(s, 'buffdb_grpc_request_duration_seconds_count', { method: 'buffdb.kv.Kv/Set' }),
      4,
      'per message',
    );
    assert.equal(
      value(s, 'buffdb_grpc_request_duration_seconds_count', { method: 'buffdb.kv.Kv/BeginTransaction' }),
      1,
    );
    assert.equal(value(s, 'buffdb_grpc_streams_open', { method: 'buffdb.kv.Kv/Set' }), 0);
    assert.ok(value(s, 'buffdb_grpc_received_bytes_total', { method: 'buffdb.blob.Blob/Store' })! >= 1000);
    assert.ok(value(s, 'buffdb_grpc_sent_bytes_total', { method: 'buffdb.kv.Kv/Set' })! > 0);
    assert.ok(value(s, 'buffdb_group_commit_batch_size_count', { store: 'kv' })! >= 1);
    assert.ok(value(s, 'buffdb_group_commit_batch_size_sum', { store: 'kv' })! >= 4);
    assert.ok(value(s, 'buffdb_group_commit_seconds_count', { store: 'blob' })! >= 1);
    assert.ok(value(s, 'buffdb_store_bytes', { store: 'kv' })! > 0);
    assert.ok(value(s, 'buffdb_store_bytes', { store: 'blob' })! > 1000);
    assert.equal(value(s, 'buffdb_transactions_total', { outcome: 'committed' }), 1);
    assert.equal(value(s, 'buffdb_transactions_open'), 0);
    assert.ok(value(s, 'buffdb_process_resident_memory_bytes')! > 0);
  });

  test('other paths are 404', async () => {
    const res = await fetch(metricsUrl.replace(/\/metrics$/, '/'));
    assert.equal(res.status, 404);
  });

  test('slow requests are logged with the method and duration, never the SQL, keys or values', async () => {
    const clients = connect(srv.addr);
    try {
      const sql =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) SELECT count(*), 'SECRET-SQL' FROM n";
      const r = await bidi(clients.query.query(), [{ query: sql, target: TargetStore.KV }]);
      assert.equal(r.err, undefined);
      await bidi(clients.kv.set(), [{ key: 'SECRET-KEY', value: 'SECRET-VALUE' }]);
      await bidi(clients.kv.get(), [{ key: 'SECRET-MISSING' }]);
    } finally {
      clients.close();
    }
    await eventually(() => /"method":"buffdb.query.Query\/Query"/.test(srv.stderr()), 'the slow line', 10_000);
    const line = srv
      .stderr()
      .split('\n')
      .find((l) => l.includes('buffdb.query.Query/Query'))!;
    const record = JSON.parse(line) as Record<string, unknown>;
    assert.equal(record.msg, 'slow request');
    assert.equal(record.level, 40);
    assert.equal(typeof record.ms, 'number');
    assert.doesNotMatch(srv.stderr(), /SECRET/);
  });

  test('streams open by design (etcd Watch and LeaseKeepAlive) are not logged as slow requests', async () => {
    const etcd = connectEtcd(srv.addr);
    try {
      const watch = etcd.watch.watch();
      const keepAlive = etcd.lease.leaseKeepAlive();
      const created = new Promise((resolve, reject) => {
        watch.once('data', resolve);
        watch.once('error', reject);
      });
      watch.write({
        createRequest: WatchCreateRequest.fromPartial({ key: Buffer.from('slow/') }),
      });
      await created;
      const grant = await new Promise<{ ID: bigint }>((resolve, reject) =>
        etcd.lease.leaseGrant({ TTL: 60n, ID: 0n }, (err, res) => (err ? reject(err) : resolve(res!))),
      );
      const alive = new Promise((resolve, reject) => {
        keepAlive.once('data', resolve);
        keepAlive.once('error', reject);
      });
      keepAlive.write({ ID: grant.ID });
      await alive;
      // Both streams stay open well past --slow-ms 1.
      const opened = performance.now();
      await eventually(() => performance.now() - opened > 20, 'both streams open for 20 ms');
      // The client goes away (as etcd clients do): the server ends both calls.
      const closed = (call: typeof watch | typeof keepAlive): Promise<void> =>
        new Promise((resolve) => {
          call.on('error', () => {});
          call.on('status', () => resolve());
          call.cancel();
        });
      await Promise.all([closed(watch), closed(keepAlive)]);
    } finally {
      etcd.close();
    }
    // A slow Query after them: once its line is there, theirs would be too. (Slow lines are
    // throttled to one per method a second: the Query runs again until a new line shows.)
    const queryLines = (): number =>
      srv
        .stderr()
        .split('\n')
        .filter((l) => l.includes('Query/Query')).length;
    const before = queryLines();
    const clients = connect(srv.addr);
    try {
      const sql =
        'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) SELECT count(*) FROM n';
      await eventually(
        async () => {
          await bidi(clients.query.query(), [{ query: sql, target: TargetStore.KV }]);
          return queryLines() > before;
        },
        'a slow line after the streams closed',
        10_000,
      );
    } finally {
      clients.close();
    }
    assert.doesNotMatch(srv.stderr(), /etcdserverpb\.(Watch\/Watch|Lease\/LeaseKeepAlive)/);
  });

  test('every stderr line is one JSON object', () => {
    for (const line of srv.stderr().split('\n').filter(Boolean)) {
      const record = JSON.parse(line) as { level?: unknown; time?: unknown; msg?: unknown };
      assert.equal(typeof record.level, 'number');
      assert.equal(typeof record.time, 'number');
      assert.equal(typeof record.msg, 'string');
    }
  });
});

describe('logs', () => {
  test('on a terminal the log is readable lines, not JSON', () => {
    const dir = tempDir('buffdb-logtty-');
    try {
      // `script` gives the server a pseudo-terminal for stderr; stdout goes to a file, and once it
      // says "listening" the server is stopped with SIGTERM.
      const cmd =
        `"${process.execPath}" "${CLI}" run 127.0.0.1:0 > out.txt & pid=$!; ` +
        'for i in $(seq 600); do grep -q listening out.txt && break; sleep 0.05; done; kill -TERM $pid; wait $pid';
      const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: dir, timeout: 30_000 });
      const out = r.stdout.toString();
      assert.match(
        out,
        /^\d\d:\d\d:\d\d\.\d{3} INFO {2}listening on 127\.0\.0\.1:\d+ addr=127\.0\.0\.1:\d+ backend=sqlite/m,
      );
      assert.match(out, /INFO {2}SIGTERM: finishing in-flight streams/);
      assert.doesNotMatch(out, /\{"level"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('error details are logged with quoted parts blanked', () => {
    assert.equal(redact('key not found: "secret key"'), 'key not found: "…"');
    assert.equal(redact("near 'DROP TABLE x': syntax error"), 'near "…": syntax error');
  });
});
