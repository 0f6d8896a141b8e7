/**
 * Security: raw SQL stays inside its own store (no ATTACH, no extensions, no file access, no
 * durability changes, whatever the spelling), `run --read-only` refuses writes, logs hold no data.
 */

import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { loadBackend } from '../src/backends/index.js';
import { connect } from '../src/client/network.js';
import { TargetStore } from '../src/generated/query.js';
import { unpackValue } from '../src/server/any-values.js';
import { BuffDb } from '../src/store/buffdb.js';
import { storeLocator } from './helpers/postgres.js';
import { bidi, spawnServer, startTestServer, TEST_BACKENDS, type TestServer, tempDir } from './helpers/server.js';

/** Statements that must never run; `F` is replaced by a path in a scratch directory. */
const ATTACKS: string[] = [
  // ATTACH another database.
  "ATTACH DATABASE 'F' AS x",
  "attach 'F' as x",
  "/* hi */ AtTaCh 'F' AS x",
  "-- comment\nATTACH 'F' AS x",
  "ATTACH/**/'F'/**/AS/**/x",
  "SELECT 1; ATTACH 'F' AS x",
  "SELECT 1;ATTACH 'F' AS x;",
  "SELECT 1\0; ATTACH 'F' AS x",
  "\0ATTACH 'F' AS x",
  "WITH a AS (SELECT 1) ATTACH 'F' AS x",
  "EXPLAIN ATTACH 'F' AS x",
  "EXPLAIN QUERY PLAN ATTACH 'F' AS x",
  'DETACH x',
  // Extensions.
  "SELECT load_extension('F')",
  "SELECT LOAD_EXTENSION('F', 'entry')",
  'SELECT "load_extension"(\'F\')',
  "SELECT [load_extension]('F')",
  "SELECT `load_extension`('F')",
  "SELECT load_extension /* c */ ('F')",
  "SELECT load_extension\n('F')",
  "WITH t AS (SELECT load_extension('F')) SELECT * FROM t",
  "EXPLAIN SELECT load_extension('F')",
  "SELECT key FROM kv WHERE load_extension('F') IS NULL",
  "LOAD 'F'",
  "INSTALL 'F'",
  // Reading or writing files.
  "VACUUM INTO 'F'",
  "vacuum main into 'F'",
  "EXPLAIN VACUUM INTO 'F'",
  "/*x*/VACUUM/*y*/INTO/*z*/'F'",
  'VACUUM',
  "SELECT readfile('/etc/passwd')",
  "SELECT writefile('F', 'owned')",
  "SELECT fts3_tokenizer('simple')",
  "SELECT fts3_tokenizer('evil', x'0000000000000000')",
  'SELECT * FROM sqlite_dbpage',
  "SELECT * FROM read_csv('/etc/passwd')",
  "COPY kv TO 'F'",
  "SELECT * FROM 'F'",
  "SELECT * FROM kv JOIN '/etc/passwd'",
  // Durability and safety pragmas, spelled every way.
  'PRAGMA synchronous=OFF',
  'PRAGMA synchronous = 0',
  'PRAGMA synchronous(OFF)',
  'pragma main.synchronous=off',
  'PRAGMA "synchronous"=OFF',
  "PRAGMA 'synchronous'=OFF",
  'PRAGMA [synchronous] = OFF',
  '/* x */ PRAGMA synchronous=OFF',
  'EXPLAIN PRAGMA synchronous=OFF',
  'SELECT 1; PRAGMA synchronous=OFF',
  'PRAGMA journal_mode=OFF',
  'PRAGMA journal_mode=DELETE',
  'PRAGMA journal_mode = MEMORY',
  'PRAGMA main.journal_mode=OFF',
  'PRAGMA journal_mode(OFF)',
  'PRAGMA query_only=ON',
  'PRAGMA query_only = 1',
  'PRAGMA query_only',
  'PRAGMA writable_schema=ON',
  'PRAGMA writable_schema = RESET',
  'PRAGMA locking_mode=EXCLUSIVE',
  'PRAGMA max_page_count=1',
  'PRAGMA mmap_size=1000000',
  "PRAGMA temp_store_directory='F'",
  'PRAGMA wal_checkpoint(TRUNCATE)',
  'PRAGMA secure_delete=OFF',
  'PRAGMA foreign_keys=OFF',
  'PRAGMA trusted_schema=ON',
  'SELECT * FROM pragma_synchronous(0)',
  "SELECT * FROM pragma_journal_mode('off')",
  // Transaction control belongs to buffdb.
  'BEGIN',
  'BEGIN IMMEDIATE',
  'COMMIT',
  'END',
  'ROLLBACK',
  'SAVEPOINT s',
  'RELEASE s',
  // Schema the services depend on.
  'DROP TABLE kv',
  'DROP TABLE blob',
  'ALTER TABLE kv RENAME TO kv2',
  // DuckDB replaces objects in place, and the blob ids come from a sequence.
  'CREATE OR REPLACE TABLE blob AS SELECT 1 AS id',
  'CREATE OR REPLACE TABLE main.blob (id BIGINT, data BLOB, metadata TEXT)',
  "CREATE OR REPLACE VIEW kv AS SELECT 'k' AS key, 'v' AS value",
  'CREATE OR REPLACE VIEW "kv" AS SELECT 1',
  'DROP SEQUENCE blob_id_seq',
  'CREATE OR REPLACE SEQUENCE blob_id_seq START 1',
  'ALTER SEQUENCE blob_id_seq RESTART WITH 1',
  "UPDATE sqlite_schema SET sql = 'x'",
  "UPDATE sqlite_master SET sql = 'x'",
  'UPDATE sqlite_sequence SET seq = 0',
  'DELETE FROM sqlite_sequence',
  "INSERT INTO sqlite_sequence VALUES ('blob', 0)",
  'WITH c AS (SELECT 1) DELETE FROM sqlite_sequence',
  'WITH c AS (SELECT 1) UPDATE sqlite_sequence SET seq = 0',
  'WITH c AS (SELECT 1) DELETE FROM "sqlite_sequence"',
];

/** Legitimate statements that merely mention dangerous words: must not be refused. */
const HARMLESS: string[] = [
  "SELECT 'ATTACH DATABASE x AS y', 'PRAGMA synchronous=OFF', 'load_extension(x)'",
  "SELECT key FROM kv WHERE value = 'VACUUM INTO /tmp/x' -- ATTACH in a comment",
  // A write with a dangerous word in a literal, into a table of its own (not every backend lets raw SQL write kv).
  "CREATE TABLE sec_harmless AS SELECT 'readfile(''/etc/passwd'')' AS note",
  'SELECT count(*) FROM kv /* pragma synchronous=off */',
];

/** SQLite introspection that stays allowed. */
const HARMLESS_SQLITE: string[] = [
  'PRAGMA table_info(kv)',
  'PRAGMA synchronous',
  'PRAGMA journal_mode',
  'PRAGMA integrity_check',
  "SELECT name FROM pragma_table_info('kv')",
  'SELECT name FROM sqlite_schema',
];

for (const backend of TEST_BACKENDS) {
  describe(`raw SQL sandbox [${backend}]`, async () => {
    const { capabilities } = await loadBackend(backend);
    if (!capabilities.sqlDialect) {
      it('has no raw SQL at all (UNIMPLEMENTED)', async () => {
        const srv = await startTestServer({ backend });
        try {
          const res = await bidi(srv.clients.query.execute(), [{ query: "ATTACH 'x' AS y", target: TargetStore.KV }]);
          assert.equal(res.err?.code, status.UNIMPLEMENTED);
        } finally {
          await srv.dispose();
        }
      });
      return;
    }
    let srv: TestServer;
    let scratch: string;
    before(async () => {
      srv = await startTestServer({ backend });
      scratch = tempDir('buffdb-sec-scratch-');
    });
    after(async () => {
      await srv.dispose();
      rmSync(scratch, { recursive: true, force: true });
    });

    it(`refuses ${ATTACKS.length} escape attempts on both stores, through Query and Execute`, async () => {
      let n = 0;
      for (const attack of ATTACKS) {
        const file = join(scratch, `target-${n++}.db`);
        const sql = attack.replaceAll('F', file);
        for (const target of [TargetStore.KV, TargetStore.BLOB]) {
          for (const rpc of ['query', 'execute'] as const) {
            const res = await bidi(srv.clients.query[rpc](), [{ query: sql, target }]);
            assert.ok(res.err, `${rpc} ${JSON.stringify(sql)} was not refused`);
            assert.ok(
              res.err.code === status.PERMISSION_DENIED || res.err.code === status.INVALID_ARGUMENT,
              `${rpc} ${JSON.stringify(sql)}: unexpected ${res.err.code} ${res.err.details}`,
            );
            assert.ok(res.err.details.length > 10, `${JSON.stringify(sql)}: message too short: ${res.err.details}`);
            assert.equal(res.out.length, 0);
          }
        }
      }
      assert.deepEqual(readdirSync(scratch), [], 'a refused statement created a file');
    });

    it('refusals say what was refused and why', async () => {
      const cases: [string, RegExp][] = [
        ["ATTACH 'x.db' AS x", /ATTACH/],
        ["SELECT load_extension('x')", /load_extension/],
        ["VACUUM INTO 'x.db'", /VACUUM/],
        ['PRAGMA synchronous=OFF', /PRAGMA synchronous/],
        ['SELECT 1; SELECT 2', /one SQL statement/],
      ];
      for (const [sql, re] of cases) {
        const res = await bidi(srv.clients.query.execute(), [{ query: sql, target: TargetStore.KV }]);
        assert.equal(res.err?.code, status.PERMISSION_DENIED, sql);
        assert.match(res.err!.details, re);
      }
    });

    it('durability settings and the schema are untouched after the attempts; the server still serves', async () => {
      const ask = async (sql: string, target: TargetStore): Promise<unknown[]> => {
        const res = await bidi(srv.clients.query.query(), [{ query: sql, target }]);
        assert.equal(res.err, undefined, `${sql}: ${res.err?.details}`);
        return res.out.map((r) => r.fields.map(unpackValue)[0]);
      };
      if (backend === 'sqlite') {
        for (const target of [TargetStore.KV, TargetStore.BLOB]) {
          assert.deepEqual(await ask('PRAGMA synchronous', target), [2n]);
          assert.deepEqual(await ask('PRAGMA journal_mode', target), ['wal']);
        }
      }
      const set = await bidi(srv.clients.kv.set(), [{ key: 'after-attacks', value: 'ok' }]);
      assert.equal(set.err, undefined);
      assert.deepEqual((await bidi(srv.clients.kv.get(), [{ key: 'after-attacks' }])).out, [{ value: 'ok' }]);
      const stored = await bidi(srv.clients.blob.store(), [{ bytes: Buffer.from('b') }]);
      assert.equal(stored.err, undefined);
    });

    it('does not refuse harmless statements that mention dangerous words', async () => {
      // Backends that refuse raw SQL writes to kv (they would bypass watch) refuse the INSERT for that reason.
      const harmless = HARMLESS.filter((sql) => capabilities.sqlKvWrites || !sql.startsWith('INSERT INTO kv'));
      for (const sql of [...harmless, ...(backend === 'sqlite' ? HARMLESS_SQLITE : [])]) {
        const res = await bidi(srv.clients.query.query(), [{ query: sql, target: TargetStore.KV }]);
        assert.equal(res.err, undefined, `${sql}: ${res.err?.details}`);
      }
    });
  });
}

for (const backend of TEST_BACKENDS)
  describe(`run --read-only [${backend}]`, async () => {
    const { capabilities } = await loadBackend(backend);
    let dir: string;
    let proc: Awaited<ReturnType<typeof spawnServer>>;
    let clients: ReturnType<typeof connect>;
    let blobId: bigint;
    let stores: Awaited<ReturnType<typeof storeLocator>>;
    before(async () => {
      dir = tempDir('buffdb-ro-');
      stores = await storeLocator(backend);
      const { kvStore, blobStore } = stores.locate('ro');
      const db = await BuffDb.open({ backend, kvStore, blobStore });
      await db.kv.setValue('present', 'value');
      blobId = BigInt(await db.blob.committer.run((ops) => ops.insert(Buffer.from('data'), 'meta')));
      await db.close();
      proc = await spawnServer(
        ['127.0.0.1:0', '-b', backend, '--kv-store', kvStore, '--blob-store', blobStore, '--read-only'],
        dir,
      );
      clients = connect(proc.addr);
    });
    after(async () => {
      clients.close();
      proc.child.kill('SIGTERM');
      await proc.exited;
      await stores.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('serves reads', async () => {
      assert.deepEqual((await bidi(clients.kv.get(), [{ key: 'present' }])).out, [{ value: 'value' }]);
      const blob = await bidi(clients.blob.get(), [{ id: blobId }]);
      assert.equal(blob.err, undefined);
      assert.equal(Buffer.from(blob.out[0]!.bytes).toString(), 'data');
      if (capabilities.sqlDialect) {
        const q = await bidi(clients.query.query(), [{ query: 'SELECT value FROM kv', target: TargetStore.KV }]);
        assert.deepEqual(
          q.out.map((r) => r.fields.map(unpackValue)),
          [['value']],
        );
      }
    });

    it('refuses every kind of write with FAILED_PRECONDITION naming read-only mode', async () => {
      const writes = [
        bidi(clients.kv.set(), [{ key: 'new', value: 'v' }]),
        bidi(clients.kv.delete(), [{ key: 'present' }]),
        bidi(clients.blob.store(), [{ bytes: Buffer.from('x') }]),
        bidi(clients.blob.update(), [{ id: blobId, bytes: Buffer.from('y'), shouldUpdateMetadata: false }]),
        bidi(clients.blob.delete(), [{ id: blobId }]),
        ...(capabilities.sqlDialect
          ? [bidi(clients.query.execute(), [{ query: "INSERT INTO kv VALUES ('q', 'v')", target: TargetStore.KV }])]
          : []),
      ];
      for (const res of await Promise.all(writes)) {
        assert.equal(res.err?.code, status.FAILED_PRECONDITION, res.err?.details);
        assert.match(res.err!.details, /read-only/);
      }
      // Nothing changed, and reads interleaved with refused writes still work.
      assert.deepEqual((await bidi(clients.kv.get(), [{ key: 'present' }, { key: 'present' }])).out, [
        { value: 'value' },
        { value: 'value' },
      ]);
      const missing = await bidi(clients.kv.get(), [{ key: 'new' }]);
      assert.equal(missing.err?.code, status.NOT_FOUND);
    });

    it('refuses to start on a store that does not exist, in one line', async () => {
      const urls = capabilities.storeLocation === 'url';
      const missing = urls ? stores.locate('nope').kvStore : 'nope.db';
      await assert.rejects(
        spawnServer(
          [
            '127.0.0.1:0',
            '-b',
            backend,
            '--kv-store',
            missing,
            '--blob-store',
            stores.locate('ro').blobStore,
            '--read-only',
          ],
          dir,
        ),
        urls ? /holds no buffdb store \(--read-only serves existing stores only\)/ : /KV store nope\.db does not exist/,
      );
      if (!urls) assert.equal(existsSync(join(dir, 'nope.db')), false);
    });
  });

describe('logs', () => {
  it('never contain keys, values, blob data or SQL text', async () => {
    const dir = tempDir('buffdb-logs-');
    const proc = await spawnServer(['127.0.0.1:0', '--kv-store', 'kv.db', '--blob-store', 'blob.db'], dir);
    const clients = connect(proc.addr);
    try {
      const secret = 'S3CRET-token-do-not-log';
      // Each request reaches the server and takes its path (success, not found, refusal, bad SQL).
      const set = await bidi(clients.kv.set(), [{ key: `${secret}-key`, value: `${secret}-value` }]);
      assert.deepEqual(set.out, [{ key: `${secret}-key` }]);
      const get = await bidi(clients.kv.get(), [{ key: `${secret}-missing` }]);
      assert.equal(get.err?.code, status.NOT_FOUND);
      const stored = await bidi(clients.blob.store(), [{ bytes: Buffer.from(secret), metadata: secret }]);
      assert.equal(stored.out.length, 1);
      const attach = await bidi(clients.query.execute(), [
        { query: `ATTACH '${secret}' AS x`, target: TargetStore.KV },
      ]);
      assert.equal(attach.err?.code, status.PERMISSION_DENIED);
      const bad = await bidi(clients.query.query(), [
        { query: `SELECT '${secret}' FROM nowhere`, target: TargetStore.KV },
      ]);
      assert.equal(bad.err?.code, status.INVALID_ARGUMENT);
    } finally {
      clients.close();
      proc.child.kill('SIGTERM');
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    }
    assert.doesNotMatch(proc.stderr(), /S3CRET/);
  });
});
