/** Kv service over a real loopback server, once per backend. */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { bidi, fold, startTestServer, TEST_BACKENDS, type TestServer } from './helpers/server.js';

for (const backend of TEST_BACKENDS) {
  describe(`Kv service [${backend}]`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({ backend });
    });
    after(async () => {
      await srv.dispose();
    });
    const kv = () => srv.clients.kv;

    it('set then get answers one response per request, in order', async () => {
      const set = await bidi(kv().set(), [
        { key: 'key_set', value: 'value_set' },
        { key: 'a', value: '1' },
        { key: 'b', value: '2' },
      ]);
      assert.equal(set.err, undefined);
      assert.deepEqual(set.out, [{ key: 'key_set' }, { key: 'a' }, { key: 'b' }]);
      const get = await bidi(kv().get(), [{ key: 'b' }, { key: 'key_set' }, { key: 'a' }]);
      assert.equal(get.err, undefined);
      assert.deepEqual(get.out, [{ value: '2' }, { value: 'value_set' }, { value: '1' }]);
    });

    it('set replaces an existing value', async () => {
      await bidi(kv().set(), [
        { key: 'r', value: 'old' },
        { key: 'r', value: 'new' },
      ]);
      assert.deepEqual((await bidi(kv().get(), [{ key: 'r' }])).out, [{ value: 'new' }]);
    });

    it('get of a missing key is NOT_FOUND naming the key; earlier answers stay', async () => {
      await bidi(kv().set(), [{ key: 'present', value: 'p' }]);
      const res = await bidi(kv().get(), [{ key: 'present' }, { key: 'no-such-key' }, { key: 'present' }]);
      assert.deepEqual(res.out, [{ value: 'p' }]);
      assert.equal(res.err?.code, status.NOT_FOUND);
      assert.match(res.err!.details, /no-such-key/);
    });

    it('delete removes the key; deleting a missing key is NOT_FOUND', async () => {
      await bidi(kv().set(), [{ key: 'key_delete', value: 'v' }]);
      const del = await bidi(kv().delete(), [{ key: 'key_delete' }]);
      assert.deepEqual(del.out, [{ key: 'key_delete' }]);
      const get = await bidi(kv().get(), [{ key: 'key_delete' }]);
      assert.equal(get.err?.code, status.NOT_FOUND);
      const again = await bidi(kv().delete(), [{ key: 'key_delete' }]);
      assert.equal(again.err?.code, status.NOT_FOUND);
      assert.match(again.err!.details, /key_delete/);
    });

    it('a failed message ends the stream: later messages are not applied, earlier ones are durable', async () => {
      await bidi(kv().set(), [
        { key: 'x1', value: 'v' },
        { key: 'x1-after', value: 'still here' },
      ]);
      const res = await bidi(kv().delete(), [{ key: 'x1' }, { key: 'missing-x' }, { key: 'x1-after' }]);
      assert.deepEqual(res.out, [{ key: 'x1' }]);
      assert.equal(res.err?.code, status.NOT_FOUND);
      assert.match(res.err!.details, /missing-x/);
      // The delete before the failure was applied; the one after it was not.
      const gone = await bidi(kv().get(), [{ key: 'x1' }]);
      assert.equal(gone.err?.code, status.NOT_FOUND);
      assert.deepEqual((await bidi(kv().get(), [{ key: 'x1-after' }])).out, [{ value: 'still here' }]);
    });

    it('empty strings and unicode round-trip exactly', async () => {
      const pairs = [
        { key: '', value: '' },
        { key: 'emoji 🦁', value: 'naïve café — 漢字 🦀\u0000nul' },
        { key: 'é', value: 'x'.repeat(100_000) },
      ];
      assert.equal((await bidi(kv().set(), pairs)).err, undefined);
      const got = await bidi(
        kv().get(),
        pairs.map(({ key }) => ({ key })),
      );
      assert.deepEqual(
        got.out.map((r) => r.value),
        pairs.map((p) => p.value),
      );
    });

    it('eq is true for equal values, false for different, true for an empty stream', async () => {
      await bidi(kv().set(), [
        { key: 'e1', value: 'same' },
        { key: 'e2', value: 'same' },
        { key: 'e3', value: 'other' },
      ]);
      assert.deepEqual(await fold(kv().eq.bind(kv()), [{ key: 'e1' }, { key: 'e2' }]), { value: true });
      assert.deepEqual(await fold(kv().eq.bind(kv()), [{ key: 'e1' }, { key: 'e2' }, { key: 'e3' }]), { value: false });
      assert.deepEqual(await fold(kv().eq.bind(kv()), []), { value: true });
      assert.deepEqual(await fold(kv().eq.bind(kv()), [{ key: 'e3' }]), { value: true });
    });

    it('eq answers false as soon as known, even if a later key is missing', async () => {
      const res = await fold(kv().eq.bind(kv()), [{ key: 'e1' }, { key: 'e3' }, { key: 'missing-after-false' }]);
      assert.deepEqual(res, { value: false });
    });

    it('eq and not-eq on missing keys are NOT_FOUND naming the key', async () => {
      const eq = await fold(kv().eq.bind(kv()), [{ key: 'missing-1' }, { key: 'missing-2' }]);
      assert.equal(eq.err?.code, status.NOT_FOUND);
      assert.match(eq.err!.details, /missing-1/);
      const ne = await fold(kv().notEq.bind(kv()), [{ key: 'missing-3' }]);
      assert.equal(ne.err?.code, status.NOT_FOUND);
      assert.match(ne.err!.details, /missing-3/);
    });

    it('not-eq is true when all values differ, false when any two are equal', async () => {
      await bidi(kv().set(), [
        { key: 'n1', value: 'a' },
        { key: 'n2', value: 'b' },
        { key: 'n3', value: 'a' },
      ]);
      assert.deepEqual(await fold(kv().notEq.bind(kv()), [{ key: 'n1' }, { key: 'n2' }]), { value: true });
      assert.deepEqual(await fold(kv().notEq.bind(kv()), [{ key: 'n1' }, { key: 'n2' }, { key: 'n3' }]), {
        value: false,
      });
      assert.deepEqual(await fold(kv().notEq.bind(kv()), []), { value: true });
    });

    it('one open stream can interleave writes and reads (write, read the answer, write again)', async () => {
      const call = kv().set();
      const answers: { key: string }[] = [];
      const next = () => new Promise<{ key: string }>((resolve) => call.once('data', resolve));
      for (let i = 0; i < 5; i++) {
        const p = next();
        call.write({ key: `inter-${i}`, value: `v${i}` });
        answers.push(await p);
        // Each acknowledged write is already visible to another stream.
        const got = await bidi(kv().get(), [{ key: `inter-${i}` }]);
        assert.deepEqual(got.out, [{ value: `v${i}` }]);
      }
      call.end();
      await new Promise((resolve) => call.on('end', resolve));
      assert.deepEqual(
        answers.map((a) => a.key),
        [0, 1, 2, 3, 4].map((i) => `inter-${i}`),
      );
    });

    it('many concurrent streams each get their own answers in order', async () => {
      const streams = Array.from({ length: 16 }, (_, s) =>
        bidi(
          kv().set(),
          Array.from({ length: 200 }, (_, i) => ({ key: `c${s}-${i}`, value: `${s}:${i}` })),
        ),
      );
      const results = await Promise.all(streams);
      results.forEach((r, s) => {
        assert.equal(r.err, undefined);
        assert.deepEqual(
          r.out.map((x) => x.key),
          Array.from({ length: 200 }, (_, i) => `c${s}-${i}`),
        );
      });
      const got = await bidi(kv().get(), [{ key: 'c7-199' }, { key: 'c0-0' }]);
      assert.deepEqual(got.out, [{ value: '7:199' }, { value: '0:0' }]);
    });

    it('an unknown transaction id is FAILED_PRECONDITION naming the id, never silently ignored', async () => {
      const res = await bidi(kv().set(), [{ key: 'tx-key', value: 'v', transactionId: 'no-such-transaction' }]);
      assert.deepEqual(res.out, []);
      assert.equal(res.err?.code, status.FAILED_PRECONDITION, res.err?.details);
      assert.match(res.err!.details, /no-such-transaction/);
      assert.equal((await bidi(kv().get(), [{ key: 'tx-key' }])).err?.code, status.NOT_FOUND);
    });
  });
}
