/**
 * The transitive (in-process) client's call objects: ordering, errors, cancellation, async
 * iteration and backpressure in both directions, over real store files.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import { openTransitive, type TransitiveClients } from '../src/client/transitive.js';
import { bidi, eventually, fold, tempDir } from './helpers/server.js';

describe('transitive client calls', () => {
  let dir: string;
  let t: TransitiveClients;
  before(async () => {
    dir = tempDir('buffdb-transitive-');
    t = await openTransitive({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
  });
  after(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers in request order; a failure comes after the answers before it, with a status', async () => {
    await bidi(t.kv.set(), [{ key: 'p', value: 'present' }]);
    const statuses: number[] = [];
    const call = t.kv.get();
    call.on('status', (s: { code: number }) => statuses.push(s.code));
    const res = await bidi(call, [{ key: 'p' }, { key: 'missing' }, { key: 'p' }]);
    assert.deepEqual(res.out, [{ value: 'present' }]);
    assert.equal(res.err?.code, status.NOT_FOUND);
    assert.match(res.err!.details, /missing/);
    assert.deepEqual(statuses, [status.NOT_FOUND]);
  });

  it('a client stream (Eq) answers through its callback, also on a missing key', async () => {
    await bidi(t.kv.set(), [
      { key: 'e1', value: 'x' },
      { key: 'e2', value: 'x' },
    ]);
    assert.deepEqual(await fold((cb) => t.kv.eq(cb), [{ key: 'e1' }, { key: 'e2' }]), { value: true });
    const missing = await fold((cb) => t.kv.eq(cb), [{ key: 'e1' }, { key: 'no-such' }]);
    assert.equal(missing.err?.code, status.NOT_FOUND);
  });

  it('for await over a call yields the answers, then ends', async () => {
    const call = t.kv.set();
    for (let i = 0; i < 100; i++) call.write({ key: `it-${i}`, value: String(i) });
    call.end();
    const keys: string[] = [];
    for await (const answer of call as AsyncIterable<{ key: string }>) keys.push(answer.key);
    assert.deepEqual(
      keys,
      Array.from({ length: 100 }, (_, i) => `it-${i}`),
    );
  });

  it('cancel() ends the call with CANCELLED; nothing after it is applied', async () => {
    const call = t.kv.set();
    const failed = once(call, 'error') as Promise<[ServiceError]>;
    const first = once(call, 'data');
    call.write({ key: 'before-cancel', value: 'v' });
    await first;
    call.cancel();
    call.write({ key: 'after-cancel', value: 'v' });
    const [err] = await failed;
    assert.equal(err.code, status.CANCELLED);
    assert.deepEqual((await bidi(t.kv.get(), [{ key: 'before-cancel' }])).out, [{ value: 'v' }]);
    assert.equal((await bidi(t.kv.get(), [{ key: 'after-cancel' }])).err?.code, status.NOT_FOUND);
  });

  it('a fast writer is held back: write() answers false, then drain, and every write is answered', async () => {
    const call = t.kv.set();
    let answered = 0;
    call.on('data', () => answered++);
    const ended = once(call, 'end');
    let written = 0;
    while (call.write({ key: `fast-${written}`, value: 'v' })) {
      written++;
      assert.ok(written < 100_000, 'write() never answered false');
    }
    written++;
    await once(call, 'drain');
    call.end();
    await ended;
    assert.equal(answered, written);
  });

  it('a consumer that stops reading stops the server: answers are held, writes answer false, no drain', async () => {
    const call = t.kv.set();
    let answered = 0;
    call.on('data', () => answered++);
    call.pause();
    let drained = false;
    call.on('drain', () => {
      drained = true;
    });
    let written = 0;
    while (call.write({ key: `slow-${written}`, value: 'v' })) written++;
    // Once the server has committed what it took, it has answers to give and nowhere to put them.
    await eventually(async () => {
      const r = await bidi(t.kv.get(), [{ key: 'slow-0' }]);
      return r.err === undefined;
    }, 'the writes the server took are committed');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(answered, 0, 'answers reached a paused consumer');
    assert.equal(drained, false, 'the server kept reading although nobody reads its answers');
    call.resume();
    await once(call, 'drain');
    assert.ok(answered > 0);
    call.end();
    await once(call, 'end');
    assert.equal(answered, written + 1);
  });

  it('unary calls (transactions) answer through their callback', async () => {
    const begun = await new Promise<{ transactionId: string }>((resolve, reject) =>
      t.kv.beginTransaction({}, (err, res) => (err ? reject(err) : resolve(res!))),
    );
    assert.match(begun.transactionId, /\S/);
    const done = await new Promise<{ success: boolean }>((resolve, reject) =>
      t.kv.commitTransaction({ transactionId: begun.transactionId }, (err, res) => (err ? reject(err) : resolve(res!))),
    );
    assert.equal(done.success, true);
  });
});
