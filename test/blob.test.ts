/** Blob service over a real loopback server, once per backend. */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import type { BlobClient } from '../src/client/network.js';
import type { StoreRequest } from '../src/generated/blob.js';
import { bidi, fold, startTestServer, TEST_BACKENDS, type TestServer } from './helpers/server.js';

async function storeOne(blob: BlobClient, req: StoreRequest): Promise<bigint> {
  const res = await bidi(blob.store(), [req]);
  assert.equal(res.err, undefined);
  assert.equal(res.out.length, 1);
  return res.out[0]!.id;
}

const U64_MAX = 2n ** 64n - 1n;

for (const backend of TEST_BACKENDS) {
  describe(`Blob service [${backend}]`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({ backend });
    });
    after(async () => {
      await srv.dispose();
    });
    const blob = () => srv.clients.blob;

    it('store then get returns the bytes and metadata (none, or set)', async () => {
      const a = await storeOne(blob(), { bytes: Buffer.from('abcdef') });
      const b = await storeOne(blob(), { bytes: Buffer.from('abcdef'), metadata: '{}' });
      const res = await bidi(blob().get(), [{ id: a }, { id: b }]);
      assert.equal(res.err, undefined);
      assert.deepEqual(res.out[0], { bytes: Buffer.from('abcdef'), metadata: undefined });
      assert.deepEqual(res.out[1], { bytes: Buffer.from('abcdef'), metadata: '{}' });
    });

    it('ids are positive and increase, and are never reused after a delete', async () => {
      const ids = (
        await bidi(
          blob().store(),
          [1, 2, 3].map((i) => ({ bytes: Buffer.from([i]) })),
        )
      ).out.map((r) => r.id);
      assert.ok(ids[0]! > 0n);
      assert.ok(ids[0]! < ids[1]! && ids[1]! < ids[2]!);
      await bidi(blob().delete(), [{ id: ids[2]! }]);
      const next = await storeOne(blob(), { bytes: Buffer.from('after delete') });
      assert.ok(next > ids[2]!, `id ${next} must be larger than deleted ${ids[2]}`);
    });

    it('empty data, empty metadata and unicode metadata round-trip', async () => {
      const id = await storeOne(blob(), { bytes: Buffer.alloc(0), metadata: '' });
      const id2 = await storeOne(blob(), { bytes: Buffer.from([0, 255, 0]), metadata: 'ключ 🦁' });
      const res = await bidi(blob().get(), [{ id }, { id: id2 }]);
      assert.deepEqual(res.out, [
        { bytes: Buffer.alloc(0), metadata: '' },
        { bytes: Buffer.from([0, 255, 0]), metadata: 'ключ 🦁' },
      ]);
    });

    it('a 5 MiB blob round-trips byte for byte', async () => {
      const data = randomBytes(5 * 1024 * 1024);
      const id = await storeOne(blob(), { bytes: data, metadata: 'big' });
      const res = await bidi(blob().get(), [{ id }]);
      assert.equal(res.err, undefined);
      assert.ok(res.out[0]!.bytes.equals(data));
    });

    it('update both: data and metadata replaced', async () => {
      const id = await storeOne(blob(), { bytes: Buffer.from('abcdef') });
      const up = await bidi(blob().update(), [
        { id, bytes: Buffer.from('def'), shouldUpdateMetadata: true, metadata: '{}' },
      ]);
      assert.deepEqual(up.out, [{ id }]);
      assert.deepEqual((await bidi(blob().get(), [{ id }])).out, [{ bytes: Buffer.from('def'), metadata: '{}' }]);
    });

    it('update bytes only: metadata untouched even if metadata is sent', async () => {
      const id = await storeOne(blob(), { bytes: Buffer.from('abcdef'), metadata: 'keep' });
      const up = await bidi(blob().update(), [
        { id, bytes: Buffer.from('def'), shouldUpdateMetadata: false, metadata: '{}' },
      ]);
      assert.deepEqual(up.out, [{ id }]);
      assert.deepEqual((await bidi(blob().get(), [{ id }])).out, [{ bytes: Buffer.from('def'), metadata: 'keep' }]);
    });

    it('update metadata only: data untouched; unset metadata means null', async () => {
      const id = await storeOne(blob(), { bytes: Buffer.from('def'), metadata: '{}' });
      await bidi(blob().update(), [{ id, shouldUpdateMetadata: true, metadata: 'new' }]);
      assert.deepEqual((await bidi(blob().get(), [{ id }])).out, [{ bytes: Buffer.from('def'), metadata: 'new' }]);
      await bidi(blob().update(), [{ id, shouldUpdateMetadata: true }]);
      assert.deepEqual((await bidi(blob().get(), [{ id }])).out, [{ bytes: Buffer.from('def'), metadata: undefined }]);
    });

    it('update with neither bytes nor metadata changes nothing', async () => {
      const id = await storeOne(blob(), { bytes: Buffer.from('same'), metadata: 'm' });
      assert.deepEqual((await bidi(blob().update(), [{ id, shouldUpdateMetadata: false }])).out, [{ id }]);
      assert.deepEqual((await bidi(blob().get(), [{ id }])).out, [{ bytes: Buffer.from('same'), metadata: 'm' }]);
    });

    it('update of a missing id is NOT_FOUND, except setting metadata to null', async () => {
      const missing = U64_MAX - 7n;
      const data = await bidi(blob().update(), [{ id: missing, bytes: Buffer.from('x'), shouldUpdateMetadata: false }]);
      assert.equal(data.err?.code, status.NOT_FOUND);
      assert.match(data.err!.details, new RegExp(String(missing)));
      const meta = await bidi(blob().update(), [{ id: 999_999n, shouldUpdateMetadata: true, metadata: 'm' }]);
      assert.equal(meta.err?.code, status.NOT_FOUND);
      const both = await bidi(blob().update(), [{ id: 999_999n, bytes: Buffer.from('x'), shouldUpdateMetadata: true }]);
      assert.equal(both.err?.code, status.NOT_FOUND);
      const toNull = await bidi(blob().update(), [{ id: 999_999n, shouldUpdateMetadata: true }]);
      assert.equal(toNull.err, undefined);
      assert.deepEqual(toNull.out, [{ id: 999_999n }]);
      assert.equal((await bidi(blob().get(), [{ id: 999_999n }])).err?.code, status.NOT_FOUND);
    });

    it('delete with and without metadata; get and delete afterwards are NOT_FOUND', async () => {
      for (const metadata of ['{}', undefined]) {
        const id = await storeOne(blob(), { bytes: Buffer.from('abcdef'), metadata });
        assert.deepEqual((await bidi(blob().delete(), [{ id }])).out, [{ id }]);
        const get = await bidi(blob().get(), [{ id }]);
        assert.equal(get.err?.code, status.NOT_FOUND);
        assert.match(get.err!.details, new RegExp(`${id}`));
        assert.equal((await bidi(blob().delete(), [{ id }])).err?.code, status.NOT_FOUND);
      }
    });

    it('get of id 0 and of u64::MAX are NOT_FOUND naming the id', async () => {
      const res = await bidi(blob().get(), [{ id: 0n }]);
      assert.equal(res.err?.code, status.NOT_FOUND);
      const max = await bidi(blob().get(), [{ id: U64_MAX }]);
      assert.equal(max.err?.code, status.NOT_FOUND);
      assert.match(max.err!.details, /18446744073709551615/);
    });

    it('eq-data and not-eq-data compare data only', async () => {
      const a = await storeOne(blob(), { bytes: Buffer.from('abcdef') });
      const b = await storeOne(blob(), { bytes: Buffer.from('abcdef'), metadata: 'different metadata' });
      const c = await storeOne(blob(), { bytes: Buffer.from('ghijkl') });
      assert.deepEqual(await fold(blob().eqData.bind(blob()), [{ id: a }, { id: b }]), { value: true });
      assert.deepEqual(await fold(blob().eqData.bind(blob()), [{ id: a }, { id: c }]), { value: false });
      assert.deepEqual(await fold(blob().notEqData.bind(blob()), [{ id: a }, { id: b }]), { value: false });
      assert.deepEqual(await fold(blob().notEqData.bind(blob()), [{ id: a }, { id: c }]), { value: true });
      assert.deepEqual(await fold(blob().eqData.bind(blob()), []), { value: true });
      assert.deepEqual(await fold(blob().notEqData.bind(blob()), []), { value: true });
    });

    it('eq-data and not-eq-data on missing ids are NOT_FOUND', async () => {
      const ids = [U64_MAX, U64_MAX - 1n, U64_MAX - 2n, U64_MAX - 3n].map((id) => ({ id }));
      const eq = await fold(blob().eqData.bind(blob()), ids);
      assert.equal(eq.err?.code, status.NOT_FOUND);
      assert.match(eq.err!.details, /18446744073709551615/);
      const ne = await fold(blob().notEqData.bind(blob()), ids);
      assert.equal(ne.err?.code, status.NOT_FOUND);
    });

    it('one open stream can interleave store and read the answers', async () => {
      const call = blob().store();
      const ids: bigint[] = [];
      for (let i = 0; i < 3; i++) {
        const p = new Promise<{ id: bigint }>((resolve) => call.once('data', resolve));
        call.write({ bytes: Buffer.from(`inter ${i}`) });
        ids.push((await p).id);
        assert.deepEqual((await bidi(blob().get(), [{ id: ids[i]! }])).out[0]?.bytes, Buffer.from(`inter ${i}`));
      }
      call.end();
      await new Promise((resolve) => call.on('end', resolve));
      assert.ok(ids[0]! < ids[1]! && ids[1]! < ids[2]!);
    });
  });
}
