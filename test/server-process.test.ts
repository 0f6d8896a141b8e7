/** `buffdb run` as users run it: the built executable, real files, real signals. */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import { connect } from '../src/client/network.js';
import { bidi, CLI, eventually, spawnServer, tempDir } from './helpers/server.js';

describe('buffdb run', () => {
  it('serves on the given address with default store files in the working directory, logs the address', async () => {
    const dir = tempDir();
    const srv = await spawnServer(['127.0.0.1:0'], dir);
    assert.match(srv.stderr(), /listening on 127\.0\.0\.1:\d+/);
    const c = connect(srv.addr);
    assert.deepEqual((await bidi(c.kv.set(), [{ key: 'k', value: 'v' }])).out, [{ key: 'k' }]);
    c.close();
    srv.child.kill('SIGTERM');
    assert.deepEqual(await srv.exited, { code: 0, signal: null });
    assert.ok(existsSync(join(dir, 'kv_store.db')));
    assert.ok(existsSync(join(dir, 'blob_store.db')));
    rmSync(dir, { recursive: true, force: true });
  });

  it('acknowledged writes survive kill -9 and a restart on the same files', async () => {
    const dir = tempDir();
    const args = ['--addr', '127.0.0.1:0', '--kv-store', 'k.db', '--blob-store', 'b.db'];
    const first = await spawnServer(args, dir);
    let c = connect(first.addr);
    const sets = Array.from({ length: 500 }, (_, i) => ({ key: `crash-${i}`, value: `v${i}` }));
    assert.equal((await bidi(c.kv.set(), sets)).out.length, 500);
    const ids = (await bidi(c.blob.store(), [{ bytes: Buffer.from([0, 1, 2, 255]), metadata: 'm' }])).out.map(
      (r) => r.id,
    );
    c.close();
    first.child.kill('SIGKILL');
    await first.exited;
    const second = await spawnServer(args, dir);
    c = connect(second.addr);
    const got = await bidi(
      c.kv.get(),
      sets.map(({ key }) => ({ key })),
    );
    assert.deepEqual(
      got.out.map((r) => r.value),
      sets.map((s) => s.value),
    );
    assert.deepEqual((await bidi(c.blob.get(), [{ id: ids[0]! }])).out, [
      { bytes: Buffer.from([0, 1, 2, 255]), metadata: 'm' },
    ]);
    const next = (await bidi(c.blob.store(), [{ bytes: Buffer.from('n') }])).out[0]!.id;
    assert.ok(next > ids[0]!);
    c.close();
    second.child.kill('SIGTERM');
    await second.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it('SIGTERM lets an in-flight stream finish: a write sent during shutdown is acknowledged and committed', async () => {
    const dir = tempDir();
    const srv = await spawnServer(['127.0.0.1:0'], dir);
    const c = connect(srv.addr);
    const call = c.kv.set();
    const acks: string[] = [];
    call.on('data', (r: { key: string }) => acks.push(r.key));
    const ended = new Promise<ServiceError | undefined>((resolve) => {
      call.on('end', () => resolve(undefined));
      call.on('error', resolve);
    });
    const firstAck = once(call, 'data');
    call.write({ key: 'before-term', value: '1' });
    await firstAck;
    srv.child.kill('SIGTERM');
    // The server logs this line when it starts shutting down: from here on the stream is in flight.
    await srv.waitForStderr(/SIGTERM: finishing in-flight streams/);
    call.write({ key: 'during-term', value: '2' });
    call.end();
    const err = await ended;
    assert.equal(err, undefined, `the stream ends OK: ${err?.details}`);
    assert.deepEqual(acks, ['before-term', 'during-term'], 'both writes are acknowledged');
    c.close();
    assert.deepEqual(await srv.exited, { code: 0, signal: null }, srv.stderr());
    const again = await spawnServer(['127.0.0.1:0'], dir);
    const c2 = connect(again.addr);
    const got = await bidi(c2.kv.get(), [{ key: 'before-term' }, { key: 'during-term' }]);
    assert.equal(got.err, undefined, got.err?.details);
    assert.deepEqual(got.out, [{ value: '1' }, { value: '2' }], 'both are present after a restart');
    c2.close();
    again.child.kill('SIGTERM');
    await again.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses the same file for both stores with one clear line and a non-zero exit', () => {
    const dir = tempDir();
    const res = spawnSync(
      process.execPath,
      [CLI, 'run', '127.0.0.1:0', '--kv-store', 'same.db', '--blob-store', 'same.db'],
      { cwd: dir, encoding: 'utf8' },
    );
    assert.notEqual(res.status, 0);
    assert.match(res.stderr, /different files/);
    assert.equal(res.stderr.trim().split('\n').length, 1, res.stderr);
    assert.doesNotMatch(res.stderr, /\n\s+at /);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a bad listen address fails with one clear line', () => {
    const dir = tempDir();
    const res = spawnSync(process.execPath, [CLI, 'run', 'not-an-address:99999'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.notEqual(res.status, 0);
    assert.match(res.stderr, /not-an-address/);
    assert.doesNotMatch(res.stderr, /\n\s+at /);
    rmSync(dir, { recursive: true, force: true });
  });

  it('--transaction-timeout sets how long an abandoned transaction lives', async () => {
    const dir = tempDir();
    const srv = await spawnServer(['127.0.0.1:0', '--transaction-timeout', '150'], dir);
    const c = connect(srv.addr);
    const begun = await new Promise<{ transactionId: string }>((resolve, reject) =>
      c.kv.beginTransaction({}, (err, res) => (err ? reject(err) : resolve(res!))),
    );
    const tx = begun.transactionId;
    assert.equal((await bidi(c.kv.set(), [{ key: 'early', value: 'v', transactionId: tx }])).err, undefined);
    // Wait for the expiry itself (the default lifetime, 30 s, is far beyond this deadline).
    let last: ServiceError | undefined;
    await eventually(async () => {
      last = (await bidi(c.kv.get(), [{ key: 'early', transactionId: tx }])).err;
      return last !== undefined;
    }, 'the transaction expires');
    assert.equal(last!.code, status.FAILED_PRECONDITION);
    assert.match(last!.details, /expired\b.*\b150 ms/);
    assert.equal((await bidi(c.kv.get(), [{ key: 'early' }])).err?.code, status.NOT_FOUND, 'rolled back');
    c.close();
    srv.child.kill('SIGTERM');
    await srv.exited;
    const bad = spawnSync(process.execPath, [CLI, 'run', '127.0.0.1:0', '--transaction-timeout', 'soon'], {
      cwd: dir,
      encoding: 'utf8',
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /milliseconds/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps serving after a bad request', async () => {
    const dir = tempDir();
    const srv = await spawnServer(['127.0.0.1:0'], dir);
    const c = connect(srv.addr);
    assert.equal((await bidi(c.kv.get(), [{ key: 'missing' }])).err?.code, status.NOT_FOUND);
    assert.deepEqual((await bidi(c.kv.set(), [{ key: 'k', value: 'v' }])).out, [{ key: 'k' }]);
    c.close();
    srv.child.kill('SIGTERM');
    await srv.exited;
    rmSync(dir, { recursive: true, force: true });
  });
});
