/** Query service: raw SQL on the KV and BLOB stores (SQL backends), sandboxed. */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { loadBackend } from '../src/backends/index.js';
import { TargetStore } from '../src/generated/query.js';
import { unpackValue } from '../src/server/any-values.js';
import { bidi, startTestServer, TEST_BACKENDS, type TestServer } from './helpers/server.js';

/** A two-byte value 0x00 0xFF in each dialect. */
const BYTES_LITERAL: Record<string, string> = {
  sqlite: "x'00ff'",
  duckdb: "'\\x00\\xFF'::BLOB",
  postgres: "'\\x00ff'::bytea",
};

for (const backend of TEST_BACKENDS) {
  describe(`Query service [${backend}]`, async () => {
    const { capabilities } = await loadBackend(backend);
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({ backend });
    });
    after(async () => {
      await srv.dispose();
    });
    const q = () => srv.clients.query;

    if (!capabilities.sqlDialect) {
      it('answers UNIMPLEMENTED naming the backend and the ones that support SQL', async () => {
        const res = await bidi(q().query(), [{ query: 'SELECT 1', target: TargetStore.KV }]);
        assert.equal(res.err?.code, status.UNIMPLEMENTED);
        assert.match(res.err!.details, new RegExp(backend));
        assert.match(res.err!.details, /sqlite/);
        const ex = await bidi(q().execute(), [{ query: 'SELECT 1', target: TargetStore.BLOB }]);
        assert.equal(ex.err?.code, status.UNIMPLEMENTED);
      });
      return;
    }

    it('query on the KV store sees the kv table; values are packed as well-known types', async () => {
      await bidi(srv.clients.kv.set(), [
        { key: 'k1', value: 'v1' },
        { key: 'k2', value: 'v2' },
      ]);
      const res = await bidi(q().query(), [
        {
          // Raw SQL is the engine's dialect: DuckDB and PostgreSQL have no x'..' bytes literal.
          query: `SELECT key, value, 42, 2.5, NULL, ${BYTES_LITERAL[capabilities.sqlDialect ?? 'sqlite']}, 9223372036854775807 FROM kv WHERE key IN ('k1','k2') ORDER BY key`,
          target: TargetStore.KV,
        },
      ]);
      assert.equal(res.err, undefined);
      assert.equal(res.out.length, 2);
      const urls = res.out[0]!.fields.map((f) => f.typeUrl);
      assert.deepEqual(urls, [
        'type.googleapis.com/google.protobuf.StringValue',
        'type.googleapis.com/google.protobuf.StringValue',
        'type.googleapis.com/google.protobuf.Int64Value',
        'type.googleapis.com/google.protobuf.DoubleValue',
        'type.googleapis.com/google.protobuf.Value',
        'type.googleapis.com/google.protobuf.BytesValue',
        'type.googleapis.com/google.protobuf.Int64Value',
      ]);
      assert.deepEqual(res.out[0]!.fields.map(unpackValue), [
        'k1',
        'v1',
        42n,
        2.5,
        null,
        Buffer.from([0, 255]),
        9223372036854775807n,
      ]);
      assert.deepEqual(res.out[1]!.fields.map(unpackValue).slice(0, 2), ['k2', 'v2']);
    });

    it('query on the BLOB store sees blob (id, data, metadata) with the blob ids', async () => {
      const stored = await bidi(srv.clients.blob.store(), [{ bytes: Buffer.from('abcdef'), metadata: 'm' }]);
      const id = stored.out[0]!.id;
      const res = await bidi(q().query(), [
        { query: `SELECT id, data, metadata FROM blob WHERE id = ${id}`, target: TargetStore.BLOB },
      ]);
      assert.deepEqual(
        res.out.map((r) => r.fields.map(unpackValue)),
        [[id, Buffer.from('abcdef'), 'm']],
      );
      const count = await bidi(q().query(), [{ query: 'SELECT COUNT(*) FROM blob', target: TargetStore.BLOB }]);
      assert.equal(count.out.length, 1);
      assert.equal(count.out[0]!.fields.length, 1);
    });

    it('several queries on one stream answer in order', async () => {
      const res = await bidi(q().query(), [
        { query: 'SELECT 1', target: TargetStore.KV },
        { query: "SELECT 'two'", target: TargetStore.BLOB },
      ]);
      assert.deepEqual(
        res.out.map((r) => r.fields.map(unpackValue)),
        [[1n], ['two']],
      );
    });

    it('a 100k-row result streams completely', async () => {
      const res = await bidi(q().query(), [
        {
          // DuckDB runs a recursive CTE one step per row (seconds per 10k rows); range() streams the same rows.
          query:
            backend === 'duckdb'
              ? 'SELECT i FROM range(1, 100001) t(i)'
              : 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) SELECT i FROM n',
          target: TargetStore.KV,
        },
      ]);
      assert.equal(res.err, undefined);
      assert.equal(res.out.length, 100_000);
      assert.deepEqual(res.out[99_999]!.fields.map(unpackValue), [100_000n]);
    });

    it('execute answers rows changed, on both stores', async () => {
      // Raw SQL writes `kv` only on backends that turn them into revisions (sqlKvWrites); elsewhere
      // they are refused (conformance suite) and a table of the SQL's own stands in for it here.
      const table = capabilities.sqlKvWrites ? 'kv' : 'kv_notes';
      const res = await bidi(q().execute(), [
        ...(capabilities.sqlKvWrites
          ? []
          : [{ query: `CREATE TABLE ${table} (key TEXT PRIMARY KEY, value TEXT)`, target: TargetStore.KV }]),
        { query: `INSERT INTO ${table} (key, value) VALUES ('e1', 'x'), ('e2', 'y')`, target: TargetStore.KV },
        { query: `UPDATE ${table} SET value = 'z' WHERE key IN ('e1', 'e2')`, target: TargetStore.KV },
        { query: 'CREATE TABLE IF NOT EXISTS notes (n TEXT)', target: TargetStore.BLOB },
        { query: 'DELETE FROM blob WHERE id < 0', target: TargetStore.BLOB },
      ]);
      assert.equal(res.err, undefined);
      assert.deepEqual(res.out.map((r) => r.rowsChanged).slice(capabilities.sqlKvWrites ? 0 : 1), [2n, 2n, 0n, 0n]);
      if (capabilities.sqlKvWrites) {
        // Visible to the Kv service.
        const got = await bidi(srv.clients.kv.get(), [{ key: 'e1' }]);
        assert.deepEqual(got.out, [{ value: 'z' }]);
      }
    });

    it('bad SQL is a clean INVALID_ARGUMENT and the server keeps serving', async () => {
      const res = await bidi(q().query(), [{ query: 'SELEKT nonsense', target: TargetStore.KV }]);
      assert.equal(res.err?.code, status.INVALID_ARGUMENT);
      assert.ok(res.err!.details.length > 0);
      const missing = await bidi(q().execute(), [{ query: 'DELETE FROM no_such_table', target: TargetStore.KV }]);
      assert.equal(missing.err?.code, status.INVALID_ARGUMENT);
      assert.match(missing.err!.details, /no_such_table/);
      const ok = await bidi(q().query(), [{ query: 'SELECT 1', target: TargetStore.KV }]);
      assert.equal(ok.err, undefined);
    });

    it('an unknown target store is INVALID_ARGUMENT', async () => {
      const res = await bidi(q().query(), [{ query: 'SELECT 1', target: 7 as TargetStore }]);
      assert.equal(res.err?.code, status.INVALID_ARGUMENT);
      assert.match(res.err!.details, /target/);
    });

    it('cannot reach outside its store: ATTACH, extensions and file access are refused', async () => {
      for (const query of [
        "ATTACH DATABASE '/tmp/buffdb-evil.db' AS evil",
        "SELECT load_extension('/tmp/evil.so')",
        "VACUUM INTO '/tmp/buffdb-copy.db'",
        'PRAGMA synchronous = OFF',
        "SELECT readfile('/etc/passwd')",
      ]) {
        for (const call of [q().query(), q().execute()]) {
          const res = await bidi(call, [{ query, target: TargetStore.KV }]);
          assert.ok(res.err, `${query} must be refused`);
          assert.ok(
            [status.PERMISSION_DENIED, status.INVALID_ARGUMENT].includes(res.err.code),
            `${query}: ${res.err.code}`,
          );
        }
      }
    });
  });
}
