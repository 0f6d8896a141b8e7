/**
 * Wire compatibility: clients built only from the .proto files (as any language's generated client
 * would be) talk to the server, with the contract's method paths and field numbers.
 */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { BlobClient as GeneratedBlobClient } from '../src/generated/blob.js';
import { KvClient as GeneratedKvClient } from '../src/generated/kv.js';
import { bidi, fold, ROOT, startTestServer, type TestServer } from './helpers/server.js';

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
type Method = protoLoader.MethodDefinition<object, object>;
interface RawResult {
  out: unknown[];
  err?: grpc.ServiceError;
}

/** Calls `m` by its path on a plain grpc-js client, with the serializers proto-loader built from proto/. */
function callRaw(client: grpc.Client, m: Method, requests: object[]): Promise<RawResult> {
  const ser = m.requestSerialize;
  const de = m.responseDeserialize;
  if (m.requestStream && m.responseStream) return bidi(client.makeBidiStreamRequest(m.path, ser, de), requests);
  if (m.responseStream) {
    assert.equal(requests.length, 1, `${m.path} takes one request`);
    const call = client.makeServerStreamRequest(m.path, ser, de, requests[0]!);
    return new Promise((resolve) => {
      const out: unknown[] = [];
      call.on('data', (d: unknown) => out.push(d));
      call.on('error', (err: grpc.ServiceError) => resolve({ out, err }));
      call.on('end', () => resolve({ out }));
    });
  }
  return new Promise((resolve) => {
    const done = (err: grpc.ServiceError | null, value?: object): void =>
      resolve(err ? { out: [], err } : { out: [value] });
    if (m.requestStream) {
      const call = client.makeClientStreamRequest(m.path, ser, de, done);
      for (const r of requests) call.write(r);
      call.end();
    } else {
      assert.equal(requests.length, 1, `${m.path} takes one request`);
      client.makeUnaryRequest(m.path, ser, de, requests[0]!, done);
    }
  });
}

describe('interop with clients generated from the .proto files', () => {
  let srv: TestServer;
  let kv: AnyClient;
  let blob: AnyClient;
  let query: AnyClient;
  let def: protoLoader.PackageDefinition;
  before(async () => {
    srv = await startTestServer();
    def = protoLoader.loadSync(
      readdirSync(join(ROOT, 'proto')).filter((f) => f.endsWith('.proto')),
      {
        includeDirs: [join(ROOT, 'proto')],
        keepCase: true,
        longs: String,
        defaults: true,
        oneofs: true,
      },
    );
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      buffdb: {
        kv: { Kv: typeof grpc.Client };
        blob: { Blob: typeof grpc.Client };
        query: { Query: typeof grpc.Client };
      };
    };
    const creds = grpc.credentials.createInsecure();
    kv = new pkg.buffdb.kv.Kv(srv.addr, creds) as AnyClient;
    blob = new pkg.buffdb.blob.Blob(srv.addr, creds) as AnyClient;
    query = new pkg.buffdb.query.Query(srv.addr, creds) as AnyClient;
  });
  after(async () => {
    kv.close();
    blob.close();
    query.close();
    await srv.dispose();
  });

  it('serves every RPC declared in proto/*.proto at its path, answering each correctly', async () => {
    const methods = new Map<string, Method>();
    for (const entry of Object.values(def)) {
      if ('format' in entry) continue; // a message type, not a service
      for (const m of Object.values(entry)) methods.set(m.path, m as Method);
    }
    assert.ok(methods.has('/buffdb.kv.Kv/Get') && methods.has('/buffdb.blob.Blob/Store'), 'contract paths');
    assert.ok(methods.has('/buffdb.query.Query/Execute'), 'contract paths');
    const raw = new grpc.Client(srv.addr, grpc.credentials.createInsecure());
    const called = new Set<string>();
    const call = (path: string, requests: object[]): Promise<RawResult> => {
      const m = methods.get(path);
      assert.ok(m, `${path} is not declared in proto/`);
      called.add(path);
      return callRaw(raw, m, requests);
    };
    try {
      const ok = (r: RawResult): unknown[] => {
        assert.equal(r.err, undefined, r.err?.details);
        return r.out;
      };
      assert.deepEqual(
        ok(
          await call('/buffdb.kv.Kv/Set', [
            { key: 'rpc-a', value: 'same' },
            { key: 'rpc-b', value: 'same' },
          ]),
        ),
        [{ key: 'rpc-a' }, { key: 'rpc-b' }],
      );
      assert.deepEqual(ok(await call('/buffdb.kv.Kv/Get', [{ key: 'rpc-b' }])), [{ value: 'same' }]);
      assert.deepEqual(ok(await call('/buffdb.kv.Kv/Eq', [{ key: 'rpc-a' }, { key: 'rpc-b' }])), [{ value: true }]);
      assert.deepEqual(ok(await call('/buffdb.kv.Kv/NotEq', [{ key: 'rpc-a' }, { key: 'rpc-b' }])), [{ value: false }]);
      assert.deepEqual(ok(await call('/buffdb.kv.Kv/Delete', [{ key: 'rpc-a' }])), [{ key: 'rpc-a' }]);
      assert.equal((await bidi(srv.clients.kv.get(), [{ key: 'rpc-a' }])).err?.code, grpc.status.NOT_FOUND);

      const begin = async (): Promise<string> => {
        const [res] = ok(await call('/buffdb.kv.Kv/BeginTransaction', [{}])) as { transaction_id: string }[];
        assert.match(res!.transaction_id, /\S/);
        return res!.transaction_id;
      };
      const committed = await begin();
      await bidi(srv.clients.kv.set(), [{ key: 'rpc-tx', value: 'v', transactionId: committed }]);
      const [commit] = ok(await call('/buffdb.kv.Kv/CommitTransaction', [{ transaction_id: committed }]));
      assert.equal((commit as { success: boolean }).success, true);
      assert.deepEqual((await bidi(srv.clients.kv.get(), [{ key: 'rpc-tx' }])).out, [{ value: 'v' }]);
      const rolledBack = await begin();
      const [rollback] = ok(await call('/buffdb.kv.Kv/RollbackTransaction', [{ transaction_id: rolledBack }]));
      assert.equal((rollback as { success: boolean }).success, true);

      const ids = (
        ok(
          await call('/buffdb.blob.Blob/Store', [
            { bytes: Buffer.from('blob') },
            { bytes: Buffer.from('blob'), metadata: 'm' },
          ]),
        ) as { id: string }[]
      ).map((r) => r.id);
      assert.equal(ids.length, 2);
      const [first, second] = ids;
      const [got] = ok(await call('/buffdb.blob.Blob/Get', [{ id: second }])) as { bytes: Buffer; metadata: string }[];
      assert.deepEqual([got!.bytes, got!.metadata], [Buffer.from('blob'), 'm']);
      assert.deepEqual(
        ok(
          await call('/buffdb.blob.Blob/Update', [
            { id: second, bytes: Buffer.from('new'), should_update_metadata: false },
          ]),
        ),
        [{ id: second }],
      );
      assert.deepEqual(ok(await call('/buffdb.blob.Blob/EqData', [{ id: first }, { id: second }])), [{ value: false }]);
      assert.deepEqual(ok(await call('/buffdb.blob.Blob/NotEqData', [{ id: first }, { id: second }])), [
        { value: true },
      ]);
      assert.deepEqual(ok(await call('/buffdb.blob.Blob/Delete', [{ id: first }])), [{ id: first }]);
      assert.equal((await bidi(srv.clients.blob.get(), [{ id: BigInt(first!) }])).err?.code, grpc.status.NOT_FOUND);

      // Large blobs (blob-streams.md): a resumable upload in two calls, its status, a ranged download.
      const data = Buffer.from('0123456789abcdef');
      const sha256 = createHash('sha256').update(data).digest();
      const partial = await call('/buffdb.blob.Blob/Upload', [
        { header: { upload_id: 'rpc-up', size: data.length, sha256, metadata: 'big' } },
        { chunk: data.subarray(0, 6) },
      ]);
      assert.equal(partial.err?.code, grpc.status.FAILED_PRECONDITION, 'ended short of its size: kept, not complete');
      assert.match(partial.err!.details, /offset 6/);
      const [st] = ok(await call('/buffdb.blob.Blob/UploadStatus', [{ upload_id: 'rpc-up' }])) as {
        received: string;
        exists: boolean;
      }[];
      assert.deepEqual(st, { received: '6', exists: true });
      const [done] = ok(
        await call('/buffdb.blob.Blob/Upload', [
          { header: { upload_id: 'rpc-up', size: data.length, sha256, offset: 6, metadata: 'big' } },
          { chunk: data.subarray(6) },
        ]),
      ) as { id: string; size: string; sha256: Buffer }[];
      assert.equal(done!.size, String(data.length));
      assert.deepEqual(done!.sha256, sha256);
      const parts = ok(
        await call('/buffdb.blob.Blob/Download', [{ id: done!.id, offset: 2, length: 5, chunk_size: 2 }]),
      ) as { header?: { size: string; offset: string; length: string; metadata: string }; chunk?: Buffer }[];
      assert.deepEqual(
        { size: parts[0]!.header!.size, offset: parts[0]!.header!.offset, length: parts[0]!.header!.length },
        { size: '16', offset: '2', length: '5' },
      );
      assert.deepEqual(Buffer.concat(parts.slice(1).map((p) => p.chunk!)), data.subarray(2, 7));

      const archive = ok(await call('/buffdb.admin.Admin/Backup', [{}])) as { data: Buffer }[];
      assert.ok(archive.length > 0 && archive.every((c) => c.data.length > 0), 'Backup streams the archive');

      assert.deepEqual(
        ok(
          await call('/buffdb.query.Query/Execute', [{ query: "INSERT INTO kv VALUES ('rpc-q', 'q')", target: 'KV' }]),
        ),
        [{ rows_changed: '1' }],
      );
      const [row] = ok(
        await call('/buffdb.query.Query/Query', [{ query: "SELECT value FROM kv WHERE key = 'rpc-q'", target: 'KV' }]),
      ) as { fields: { type_url: string; value: Buffer }[] }[];
      assert.equal(row!.fields[0]!.type_url, 'type.googleapis.com/google.protobuf.StringValue');

      // Sync: this server is a hub, not an edge; links must open with a Hello of a known protocol.
      const [status] = ok(await call('/buffdb.sync.Sync/Status', [{}])) as { edge: boolean; site: string }[];
      assert.equal(status!.edge, false);
      assert.match(status!.site, /^[0-9a-f]{16}$/);
      assert.deepEqual(ok(await call('/buffdb.sync.Sync/Conflicts', [{}])), []);
      const badHello = await call('/buffdb.sync.Sync/Exchange', [
        { hello: { protocol: 99, site: Buffer.alloc(8, 1) } },
      ]);
      assert.equal(badHello.err?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(badHello.err!.details, /protocol 99 is not supported/);
      const noHello = await call('/buffdb.sync.Sync/BlobExchange', [{}]);
      assert.equal(noHello.err?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(noHello.err!.details, /first message of a link must be BlobHello/);
    } finally {
      raw.close();
    }
    assert.deepEqual([...called].sort(), [...methods.keys()].sort(), 'every declared RPC was called');
  });

  it('Kv Set/Get/Delete/Eq/NotEq from a proto-loader client', async () => {
    const set = await bidi(kv.Set!() as grpc.ClientDuplexStream<object, { key: string }>, [
      { key: 'pl-a', value: 'x' },
      { key: 'pl-b', value: 'x' },
    ]);
    assert.deepEqual(set.out, [{ key: 'pl-a' }, { key: 'pl-b' }]);
    const get = await bidi(kv.Get!() as grpc.ClientDuplexStream<object, { value: string }>, [{ key: 'pl-b' }]);
    assert.deepEqual(get.out, [{ value: 'x' }]);
    const eq = await fold((cb) => kv.Eq!(cb) as grpc.ClientWritableStream<object>, [{ key: 'pl-a' }, { key: 'pl-b' }]);
    assert.deepEqual(eq.value, { value: true } as unknown);
    const ne = await fold(
      (cb) => kv.NotEq!(cb) as grpc.ClientWritableStream<object>,
      [{ key: 'pl-a' }, { key: 'pl-b' }],
    );
    assert.deepEqual(ne.value, { value: false } as unknown);
    const del = await bidi(kv.Delete!() as grpc.ClientDuplexStream<object, { key: string }>, [
      { key: 'pl-a' },
      { key: 'pl-a' },
    ]);
    assert.deepEqual(del.out, [{ key: 'pl-a' }]);
    assert.equal(del.err?.code, grpc.status.NOT_FOUND);
  });

  it('Blob Store/Get/Update with optional fields from a proto-loader client', async () => {
    const stored = await bidi(blob.Store!() as grpc.ClientDuplexStream<object, { id: string }>, [
      { bytes: Buffer.from('abc') },
      { bytes: Buffer.from('abc'), metadata: '{}' },
    ]);
    const [a, b] = stored.out.map((r) => r.id);
    const got = await bidi(blob.Get!() as grpc.ClientDuplexStream<object, Record<string, unknown>>, [
      { id: a },
      { id: b },
    ]);
    assert.deepEqual(got.out[0]!.bytes, Buffer.from('abc'));
    assert.equal(got.out[0]!.metadata, undefined, 'unset optional metadata stays unset');
    assert.equal(got.out[1]!.metadata, '{}');
    const up = await bidi(blob.Update!() as grpc.ClientDuplexStream<object, { id: string }>, [
      { id: b, should_update_metadata: true },
    ]);
    assert.deepEqual(up.out, [{ id: b }]);
    const after = await bidi(blob.Get!() as grpc.ClientDuplexStream<object, Record<string, unknown>>, [{ id: b }]);
    assert.equal(after.out[0]!.metadata, undefined);
  });

  it('Query and Execute are served (the Rust original forgot to serve Query)', async () => {
    const ex = await bidi(query.Execute!() as grpc.ClientDuplexStream<object, { rows_changed: string }>, [
      { query: "INSERT INTO kv VALUES ('pl-q', 'v')", target: 'KV' },
    ]);
    assert.deepEqual(ex.out, [{ rows_changed: '1' }]);
    const res = await bidi(
      query.Query!() as grpc.ClientDuplexStream<object, { fields: { type_url: string; value: Buffer }[] }>,
      [{ query: "SELECT value FROM kv WHERE key = 'pl-q'", target: 'KV' }],
    );
    assert.equal(res.out[0]!.fields[0]!.type_url, 'type.googleapis.com/google.protobuf.StringValue');
    assert.deepEqual(res.out[0]!.fields[0]!.value, Buffer.from([10, 1, 118]));
  });

  it('the committed ts-proto generated clients work unchanged', async () => {
    const creds = grpc.credentials.createInsecure();
    const gkv = new GeneratedKvClient(srv.addr, creds);
    const gblob = new GeneratedBlobClient(srv.addr, creds);
    try {
      assert.deepEqual((await bidi(gkv.set(), [{ key: 'gen', value: 'v' }])).out, [{ key: 'gen' }]);
      assert.deepEqual((await bidi(gkv.get(), [{ key: 'gen' }])).out, [{ value: 'v' }]);
      const id = (await bidi(gblob.store(), [{ bytes: Buffer.from('g') }])).out[0]!.id;
      assert.ok(id > 0n);
      const eq = await fold((cb) => gkv.eq(cb), [{ key: 'gen' }]);
      assert.equal(eq.value, true);
    } finally {
      gkv.close();
      gblob.close();
    }
  });

  it('invalid UTF-8 in a string field is INVALID_ARGUMENT and the server keeps serving', async () => {
    const raw = new grpc.Client(srv.addr, grpc.credentials.createInsecure());
    // SetRequest { key = 1: bytes ff fe, value = 2: "v" }
    const bad = Buffer.from([0x0a, 0x02, 0xff, 0xfe, 0x12, 0x01, 0x76]);
    const call = raw.makeBidiStreamRequest(
      '/buffdb.kv.Kv/Set',
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    const res = await bidi(call, [bad]);
    assert.equal(res.err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(res.err!.details, /UTF-8/);
    const garbage = await bidi(
      raw.makeBidiStreamRequest(
        '/buffdb.kv.Kv/Get',
        (b: Buffer) => b,
        (b: Buffer) => b,
      ),
      [Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])],
    );
    assert.equal(garbage.err?.code, grpc.status.INVALID_ARGUMENT);
    raw.close();
    assert.deepEqual((await bidi(srv.clients.kv.get(), [{ key: 'gen' }])).out, [{ value: 'v' }]);
  });

  it('a message over the size limit is RESOURCE_EXHAUSTED and the server keeps serving', async () => {
    const big = Buffer.alloc(65 * 1024 * 1024, 1);
    const client = new GeneratedBlobClient(srv.addr, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': 128 * 1024 * 1024,
    });
    const res = await bidi(client.store(), [{ bytes: big }]);
    client.close();
    assert.equal(res.err?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.deepEqual((await bidi(srv.clients.kv.get(), [{ key: 'gen' }])).out, [{ value: 'v' }]);
  });
});
