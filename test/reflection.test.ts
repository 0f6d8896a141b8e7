/**
 * Server reflection with a real third-party client (buf curl, shipped in devDependencies): list
 * every method and call them with no .proto at hand, over reflection v1 and v1alpha.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildFileDescriptors, servedProtoSources } from '../src/server/reflection.js';
import { bufCurl } from './helpers/ops.js';
import { startTestServer, type TestServer, tempDir } from './helpers/server.js';

describe('reflection', () => {
  let server: TestServer;
  let url: string;
  before(async () => {
    server = await startTestServer();
    url = `http://${server.addr}`;
  });
  after(() => server.dispose());

  for (const protocol of ['grpc-v1', 'grpc-v1alpha']) {
    test(`${protocol}: buf curl lists every method of Kv, Blob, Query and Health`, async () => {
      const r = await bufCurl(['--http2-prior-knowledge', '--reflect-protocol', protocol, '--list-methods', url]);
      assert.equal(r.code, 0, r.stderr);
      const methods = r.stdout.trim().split('\n');
      for (const m of [
        'buffdb.kv.Kv/Get',
        'buffdb.kv.Kv/Set',
        'buffdb.kv.Kv/Eq',
        'buffdb.kv.Kv/BeginTransaction',
        'buffdb.blob.Blob/Store',
        'buffdb.blob.Blob/NotEqData',
        'buffdb.query.Query/Query',
        'buffdb.query.Query/Execute',
        'grpc.health.v1.Health/Check',
        'grpc.health.v1.Health/Watch',
      ]) {
        assert.ok(methods.includes(m), `${m} listed: ${r.stdout}`);
      }
    });
  }

  test('a round trip through reflection: Set, Get, Eq (BoolValue from wrappers.proto), Blob Store, Health', async () => {
    const call = (method: string, body: object, protocol = 'grpc-v1') =>
      bufCurl([
        '--http2-prior-knowledge',
        '--reflect-protocol',
        protocol,
        '-d',
        JSON.stringify(body),
        `${url}/${method}`,
      ]);
    const set = await call('buffdb.kv.Kv/Set', { key: 'via-reflection', value: 'hello ✓' });
    assert.equal(set.code, 0, set.stderr);
    assert.deepEqual(JSON.parse(set.stdout), { key: 'via-reflection' });
    const get = await call('buffdb.kv.Kv/Get', { key: 'via-reflection' }, 'grpc-v1alpha');
    assert.equal(get.code, 0, get.stderr);
    assert.deepEqual(JSON.parse(get.stdout), { value: 'hello ✓' });
    const eq = await call('buffdb.kv.Kv/Eq', { key: 'via-reflection' });
    assert.equal(eq.code, 0, eq.stderr);
    assert.equal(JSON.parse(eq.stdout), true);
    const stored = await call('buffdb.blob.Blob/Store', { bytes: Buffer.from([0, 1, 255]).toString('base64') });
    assert.equal(stored.code, 0, stored.stderr);
    assert.match(JSON.parse(stored.stdout).id, /^\d+$/);
    const health = await call('grpc.health.v1.Health/Check', {});
    assert.deepEqual(JSON.parse(health.stdout), { status: 'SERVING' });
    // The value really is in the store the server serves.
    assert.equal(await server.db.kv.getValue('via-reflection'), 'hello ✓');
  });

  test('a missing key through reflection is NOT_FOUND with the key in the message', async () => {
    const r = await bufCurl(['--http2-prior-knowledge', '-d', '{"key":"nope"}', `${url}/buffdb.kv.Kv/Get`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not[_ ]found/i);
    assert.match(r.stderr, /nope/);
  });

  test('every .proto under the directory is described, with its imports, under its own name', () => {
    const dir = tempDir('buffdb-reflect-');
    mkdirSync(join(dir, 'extra'));
    writeFileSync(
      join(dir, 'extra', 'more.proto'),
      'syntax = "proto3";\npackage extra.v1;\nimport "google/protobuf/timestamp.proto";\n' +
        'service More { rpc Now(Req) returns (google.protobuf.Timestamp); }\nmessage Req { map<string, Req> children = 1; }\n',
    );
    // An import that is not there (a vendored file missing) is left out, not fatal.
    writeFileSync(
      join(dir, 'extra', 'options.proto'),
      'syntax = "proto3";\npackage extra.v1;\nimport "gogoproto/gogo.proto";\noption (gogoproto.marshaler_all) = true;\n' +
        'message Opt { string name = 1 [(gogoproto.nullable) = false]; }\n',
    );
    const names = buildFileDescriptors(servedProtoSources(dir)).map((b) => Buffer.from(b).toString('latin1'));
    assert.ok(names.some((n) => n.includes('extra/options.proto') && !n.includes('gogoproto/gogo.proto')));
    assert.ok(names.some((n) => n.includes('extra/more.proto') && n.includes('google/protobuf/timestamp.proto')));
    assert.ok(
      names.some((n) => n.includes('ChildrenEntry')),
      'map entries are named as protoc names them',
    );
    assert.ok(names.some((n) => n.includes('grpc/health/v1/health.proto')));
  });
});
