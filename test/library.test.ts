/** The library API: the transitive (in-process) client, embedding in your own server, the store API. */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  addBuffDbServices,
  type BlobTransfer,
  BuffDb,
  connect,
  downloadBlob,
  openTransitive,
  StoreError,
  uploadBlob,
} from '../src/index.js';
import { bidi, fold, startTestServer, tempDir } from './helpers/server.js';

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p);
  return Buffer.concat(parts);
}

/** upload (bytes, a file, a stream) and download (whole, a range, a missing id) through `c`. */
async function transferCases(c: BlobTransfer, dir: string): Promise<void> {
  const data = Buffer.alloc(3 * 1024 * 1024 + 5);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  const fromBytes = await c.upload(data, { metadata: 'bytes' });
  assert.deepEqual([fromBytes.size, fromBytes.sha256], [BigInt(data.length), sha256(data)]);
  writeFileSync(join(dir, 'up.bin'), data);
  const fromFile = await c.upload(join(dir, 'up.bin'));
  const fromStream = await c.upload(Readable.from([data.subarray(0, 100), data.subarray(100)]), { chunkSize: 65536 });
  assert.ok(fromFile.id > fromBytes.id && fromStream.id > fromFile.id);
  for (const r of [fromFile, fromStream]) assert.deepEqual(r.sha256, sha256(data));
  const whole = c.download(fromBytes.id);
  const header = await whole.header;
  assert.deepEqual([header.size, header.metadata, header.sha256], [BigInt(data.length), 'bytes', sha256(data)]);
  assert.ok((await readAll(whole)).equals(data));
  const range = c.download(Number(fromStream.id), { offset: 1_000_000n, length: 10n });
  assert.equal((await range.header).length, 10n);
  assert.ok((await readAll(range)).equals(data.subarray(1_000_000, 1_000_010)));
  await assert.rejects(c.download(999_999n).header, (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
  await assert.rejects(
    c.upload(data, { id: 999_999n }),
    (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND,
  );
}

describe('library API', () => {
  it('upload / download on the network client (connect) and the transitive client; uploadBlob / downloadBlob exported', async () => {
    const srv = await startTestServer({ backend: 'sqlite' });
    const dir = tempDir();
    const local = await openTransitive({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
    try {
      await transferCases(srv.clients, dir);
      await transferCases(local, dir);
      const { id } = await uploadBlob(local.blob, Buffer.from('plain'));
      assert.equal((await readAll(downloadBlob(local.blob, id))).toString(), 'plain');
    } finally {
      await local.close();
      await srv.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('transitive client: same methods and messages as the gRPC client, no network', async () => {
    const dir = tempDir();
    const { kv, blob, query, close } = await openTransitive({
      kvStore: join(dir, 'kv.db'),
      blobStore: join(dir, 'blob.db'),
    });
    try {
      assert.deepEqual((await bidi(kv.set(), [{ key: 'key_set', value: 'value_set' }])).out, [{ key: 'key_set' }]);
      assert.deepEqual((await bidi(kv.get(), [{ key: 'key_set' }])).out, [{ value: 'value_set' }]);
      const missing = await bidi(kv.get(), [{ key: 'nope' }]);
      assert.equal(missing.err?.code, grpc.status.NOT_FOUND);
      assert.match(missing.err!.details, /nope/);
      assert.deepEqual(await fold((cb) => kv.eq(cb), [{ key: 'key_set' }, { key: 'key_set' }]), { value: true });
      const id = (await bidi(blob.store(), [{ bytes: Buffer.from('abc'), metadata: 'm' }])).out[0]!.id;
      assert.equal(typeof id, 'bigint');
      assert.deepEqual((await bidi(blob.get(), [{ id }])).out, [{ bytes: Buffer.from('abc'), metadata: 'm' }]);
      const rows = await bidi(query.query(), [{ query: 'SELECT count(*) FROM kv', target: 0 }]);
      assert.equal(rows.out.length, 1);
    } finally {
      await close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('transitive writes are durable once acknowledged (visible after close and reopen)', async () => {
    const dir = tempDir();
    const opts = { kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') };
    const first = await openTransitive(opts);
    await bidi(first.kv.set(), [{ key: 'persist', value: 'yes' }]);
    await first.close();
    const second = await openTransitive(opts);
    assert.deepEqual((await bidi(second.kv.get(), [{ key: 'persist' }])).out, [{ value: 'yes' }]);
    await second.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('embeds the services in your own grpc-js server beside your own service', async () => {
    const dir = tempDir();
    const db = await BuffDb.open({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
    const server = new grpc.Server();
    addBuffDbServices(server, db);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const clients = connect(`127.0.0.1:${port}`);
    try {
      assert.deepEqual((await bidi(clients.kv.set(), [{ key: 'embedded', value: 'v' }])).out, [{ key: 'embedded' }]);
      assert.deepEqual((await bidi(clients.kv.get(), [{ key: 'embedded' }])).out, [{ value: 'v' }]);
    } finally {
      clients.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('store promise API: get/set/delete and blob operations with typed errors', async () => {
    const dir = tempDir();
    const db = await BuffDb.open({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
    try {
      await db.kv.setValue('a', '1');
      assert.equal(await db.kv.getValue('a'), '1');
      await db.kv.deleteKey('a');
      await assert.rejects(
        db.kv.getValue('a'),
        (e: unknown) => e instanceof StoreError && e.code === grpc.status.NOT_FOUND,
      );
      const id = await db.blob.storeBlob(Buffer.from('data'), 'meta');
      await db.blob.updateBlob(id, { shouldUpdateMetadata: true, metadata: 'new' });
      const record = await db.blob.getBlob(id);
      assert.deepEqual([Buffer.from(record.data).toString(), record.metadata], ['data', 'new']);
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('Get answers a value exactly as stored, and FAILED_PRECONDITION for bytes that are not UTF-8', async () => {
    const dir = tempDir();
    const local = await openTransitive({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
    const texts: Record<string, string> = {
      empty: '',
      multibyte: 'héllo € 𝄞',
      replacement: 'a\uFFFDb',
      nul: 'a\u0000b',
    };
    const notText: Record<string, Buffer> = {
      invalid: Buffer.from([0x61, 0xff, 0x62]),
      surrogate: Buffer.from([0xed, 0xa0, 0x80]),
      overlong: Buffer.from([0xc0, 0xaf]),
      truncated: Buffer.from([0x61, 0xe2, 0x82]),
    };
    const put = (key: string, value: Buffer) =>
      local.db.kv.put({
        key: Buffer.from(key),
        value,
        lease: 0n,
        prevKv: false,
        ignoreValue: false,
        ignoreLease: false,
      });
    try {
      for (const [key, text] of Object.entries(texts)) await put(key, Buffer.from(text, 'utf8'));
      for (const [key, bytes] of Object.entries(notText)) await put(key, bytes);
      for (const [key, text] of Object.entries(texts)) assert.equal(await local.db.kv.getValue(key), text, key);
      for (const key of Object.keys(notText)) {
        await assert.rejects(
          local.db.kv.getValue(key),
          (e: unknown) => e instanceof StoreError && e.code === grpc.status.FAILED_PRECONDITION,
          key,
        );
      }
      // The same through the transitive client's Get stream: the answers in order, then the error.
      const answers: string[] = [];
      const failure = await new Promise<grpc.ServiceError>((resolve, reject) => {
        const call = local.kv.get();
        call.on('data', (res: { value: string }) => answers.push(res.value));
        call.on('error', resolve);
        call.on('end', () => reject(new Error('the stream ended without the error')));
        for (const key of [...Object.keys(texts), 'invalid', 'empty']) call.write({ key, transactionId: undefined });
        call.end();
      });
      assert.deepEqual(answers, Object.values(texts));
      assert.equal(failure.code, grpc.status.FAILED_PRECONDITION);
    } finally {
      await local.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses the same file for the KV and the BLOB store', async () => {
    const dir = tempDir();
    await assert.rejects(
      BuffDb.open({ kvStore: join(dir, 'same.db'), blobStore: join(dir, '.', 'same.db') }),
      /different files/,
    );
    rmSync(dir, { recursive: true, force: true });
  });
});
