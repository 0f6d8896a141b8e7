/**
 * Online backup and restore, with the real CLI against a real server on every backend under test:
 * a backup taken under write load holds every write acknowledged before it began and is one point
 * in time (a sequential writer's history is a prefix, transactions are whole); restored stores
 * hand out blob ids above the restored ones (and pass the conformance suite:
 * backup-conformance.test.ts); damaged or truncated backups are refused with one line and nothing
 * written.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { type BackendName, capabilitiesOf } from '../src/backends/index.js';
import { BuffDb } from '../src/store/buffdb.js';
import { cliSync as cli, cliAsync } from './helpers/ops.js';
import { bidi, eventually, startTestServer, TEST_BACKENDS, type TestServer, tempDir } from './helpers/server.js';

const pad = (n: number): string => String(n).padStart(6, '0');
const begin = (server: TestServer) =>
  new Promise<string>((resolve, reject) =>
    server.clients.kv.beginTransaction({}, (err: ServiceError | null, res) =>
      err ? reject(err) : resolve(res!.transactionId),
    ),
  );
const commit = (server: TestServer, transactionId: string) =>
  new Promise<void>((resolve, reject) =>
    server.clients.kv.commitTransaction({ transactionId }, (err: ServiceError | null) =>
      err ? reject(err) : resolve(),
    ),
  );

/** Writers that run until stopped, recording every acknowledged write in order. */
function writeLoad(server: TestServer) {
  let running = true;
  /** The sequential writer's history: kv seq/N, then a blob with metadata seq/N, one at a time. */
  const seq: { kind: 'kv' | 'blob'; n: number; id?: bigint }[] = [];
  const streamed: string[] = [];
  const transactions: { n: number; blobId: bigint }[] = [];
  const sequential = (async () => {
    for (let n = 1; running; n++) {
      const set = await bidi(server.clients.kv.set(), [{ key: `seq/${pad(n)}`, value: String(n) }]);
      assert.equal(set.err, undefined);
      seq.push({ kind: 'kv', n });
      const stored = await bidi(server.clients.blob.store(), [
        { bytes: Buffer.from(`blob ${n}`), metadata: `seq/${n}` },
      ]);
      assert.equal(stored.err, undefined);
      seq.push({ kind: 'blob', n, id: stored.out[0]!.id });
    }
  })();
  const streams = [0, 1, 2].map(async (w) => {
    for (let round = 0; running; round++) {
      const keys = Array.from({ length: 25 }, (_, i) => `w${w}/${pad(round)}/${i}`);
      const r = await bidi(
        server.clients.kv.set(),
        keys.map((key) => ({ key, value: key })),
      );
      assert.equal(r.err, undefined);
      streamed.push(...r.out.map((o) => o.key));
    }
  });
  const transactional = (async () => {
    for (let n = 1; running; n++) {
      const transactionId = await begin(server);
      await bidi(server.clients.kv.set(), [{ key: `tx/${pad(n)}`, value: String(n), transactionId }]);
      const stored = await bidi(server.clients.blob.store(), [
        { bytes: Buffer.from(`tx ${n}`), metadata: `tx/${n}`, transactionId },
      ]);
      await commit(server, transactionId);
      transactions.push({ n, blobId: stored.out[0]!.id });
    }
  })();
  return {
    seq,
    streamed,
    transactions,
    stop: async () => {
      running = false;
      await Promise.all([sequential, ...streams, transactional]);
    },
  };
}

async function has<T>(p: Promise<T>): Promise<boolean> {
  return p.then(
    () => true,
    () => false,
  );
}

/** Backends that can copy themselves online (capability `snapshot`); the others say so. */
const withSnapshots = TEST_BACKENDS.filter((b) => capabilitiesOf(b as BackendName).snapshot);

for (const backend of TEST_BACKENDS.filter((b) => !withSnapshots.includes(b))) {
  test(`backup of a ${backend} server is refused with one line naming the backend; no file is written`, async () => {
    const dir = tempDir(`buffdb-backup-${backend}-`);
    const server = await startTestServer({ backend, dir });
    try {
      const r = await cliAsync(dir, ['backup', '--addr', server.addr, 'x.buffdb']);
      assert.equal(r.status, 4, r.stderr);
      assert.match(r.stderr, new RegExp(`^buffdb: the ${backend} backend cannot make online backups[^\\n]*\\n$`));
      assert.deepEqual(
        readdirSync(dir).filter((n) => n.startsWith('x.buffdb')),
        [],
      );
      // The server goes on serving.
      await server.db.kv.setValue('after', 'ok');
      assert.equal(await server.db.kv.getValue('after'), 'ok');
    } finally {
      await server.dispose();
    }
  });
}

for (const backend of withSnapshots) {
  describe(`backup and restore [${backend}]`, () => {
    let dir: string;
    before(() => {
      dir = tempDir(`buffdb-backup-${backend}-`);
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    test('under write load: every acknowledged write is in it, and it is one point in time', async () => {
      const server = await startTestServer({ backend, dir });
      const load = writeLoad(server);
      let before: { seq: number; streamed: string[]; transactions: number };
      try {
        // Let the writers get going, then note what is acknowledged when the backup begins.
        await eventually(
          () => load.seq.length >= 20 && load.transactions.length >= 3,
          'the writers acknowledging 20 writes and 3 transactions',
          60_000,
        );
        before = { seq: load.seq.length, streamed: [...load.streamed], transactions: load.transactions.length };
        const backup = await cliAsync(dir, ['backup', '--addr', server.addr, 'load.buffdb']);
        assert.equal(backup.status, 0, backup.stderr);
        assert.equal(backup.stderr, '');
        assert.ok(load.seq.length > before.seq, 'writes went on while the backup ran');
      } finally {
        await load.stop();
        await server.stop();
      }
      assert.ok(!existsSync(join(dir, 'load.buffdb.partial')), 'no partial file left');
      assert.ok(!readdirSync(dir).some((n) => n.startsWith('.buffdb-backup-')), 'the server cleaned up its copies');

      const restored = cli(dir, ['restore', 'load.buffdb', '--kv-store', 'r.kv.db', '--blob-store', 'r.blob.db']);
      assert.equal(restored.status, 0, restored.stderr);
      const db = await BuffDb.open({ backend, kvStore: join(dir, 'r.kv.db'), blobStore: join(dir, 'r.blob.db') });
      try {
        // 1. Everything acknowledged before the backup began.
        for (const key of before.streamed) assert.equal(await db.kv.getValue(key), key);
        for (const w of load.seq.slice(0, before.seq)) {
          if (w.kind === 'kv') assert.equal(await db.kv.getValue(`seq/${pad(w.n)}`), String(w.n));
          else assert.equal((await db.blob.getBlob(w.id!)).metadata, `seq/${w.n}`);
        }
        // 2. One point in time: the sequential writer's history, across both stores, is a prefix.
        const present: boolean[] = [];
        for (const w of load.seq) {
          present.push(
            w.kind === 'kv' ? await has(db.kv.getValue(`seq/${pad(w.n)}`)) : await has(db.blob.getBlob(w.id!)),
          );
        }
        const cut = present.indexOf(false);
        assert.ok(cut === -1 || present.slice(cut).every((p) => !p), `a prefix of the history: ${present.join('')}`);
        assert.ok(
          cut === -1 || cut >= before.seq,
          `the cut ${cut} is after what was acknowledged before (${before.seq})`,
        );
        // 3. Transactions are whole: their KV and BLOB writes are both there or both absent.
        for (const t of load.transactions) {
          const kv = await has(db.kv.getValue(`tx/${pad(t.n)}`));
          const blob = await has(db.blob.getBlob(t.blobId));
          assert.equal(kv, blob, `transaction ${t.n}: kv ${kv}, blob ${blob}`);
          if (t.n <= before.transactions) assert.ok(kv, `transaction ${t.n} committed before the backup`);
        }
        // 4. New blob ids are above every restored one.
        let maxRestored = 0;
        for (const id of [
          ...load.seq.flatMap((w) => (w.id ? [w.id] : [])),
          ...load.transactions.map((t) => t.blobId),
        ]) {
          if (await has(db.blob.getBlob(id))) maxRestored = Math.max(maxRestored, Number(id));
        }
        const next = await db.blob.storeBlob(Buffer.from('after restore'));
        assert.ok(maxRestored > 0 && next > maxRestored, `new id ${next} above ${maxRestored}`);
      } finally {
        await db.close();
      }
    });

    test('damaged, truncated or foreign backups are refused with one line and nothing is written', async () => {
      const server = await startTestServer({ backend, dir });
      try {
        await server.db.kv.setValue('k', 'v');
        assert.equal((await cliAsync(dir, ['backup', '--addr', server.addr, 'small.buffdb'])).status, 0);
        const again = await cliAsync(dir, ['backup', '--addr', server.addr, 'small.buffdb']);
        assert.equal(again.status, 4);
        assert.match(again.stderr, /^buffdb: small\.buffdb already exists; a backup is written to a new path\n$/);
      } finally {
        await server.stop();
      }
      const good = readFileSync(join(dir, 'small.buffdb'));
      const flipped = Buffer.from(good);
      flipped[Math.floor(flipped.length / 2)]! ^= 0xff;
      writeFileSync(join(dir, 'flipped.buffdb'), flipped);
      writeFileSync(join(dir, 'cut.buffdb'), good.subarray(0, good.length - 100));
      writeFileSync(join(dir, 'foreign.buffdb'), 'just some text\n');
      const cases: [string, RegExp][] = [
        ['flipped.buffdb', /^buffdb: backup flipped\.buffdb is damaged: .*\n$/],
        ['cut.buffdb', /^buffdb: backup cut\.buffdb is truncated/],
        ['foreign.buffdb', /^buffdb: foreign\.buffdb is not a buffdb backup\n$/],
        ['missing.buffdb', /^buffdb: cannot read the backup missing\.buffdb: no such file\n$/],
      ];
      for (const [file, message] of cases) {
        const r = cli(dir, ['restore', file, '--kv-store', 'x.kv.db', '--blob-store', 'x.blob.db']);
        assert.equal(r.status, 4, r.stderr);
        assert.match(r.stderr, message);
        assert.deepEqual(
          readdirSync(dir).filter((n) => n.startsWith('x.') || n.startsWith('.buffdb-restore-')),
          [],
          'nothing written',
        );
      }
      const exists = cli(dir, ['restore', 'small.buffdb', '--kv-store', 'kv_store.db', '--blob-store', 'y.blob.db']);
      assert.equal(exists.status, 4);
      assert.match(exists.stderr, /the KV store kv_store\.db already exists .*move it away first/);
    });
  });
}

describe('backup permissions', () => {
  test('with auth on, backup needs --admin', async () => {
    const dir = tempDir('buffdb-backup-auth-');
    const token = (name: string, ...flags: string[]) =>
      cli(dir, ['auth', 'add-token', name, '--auth-file', 'auth.json', ...flags]).out.trim();
    const reader = token('reader', '--kv-read', '--blob-read');
    const admin = token('admin', '--admin');
    const { AuthFileSource } = await import('../src/auth/auth-file.js');
    const { startServer } = await import('../src/server/server.js');
    const db = await BuffDb.open({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
    const running = await startServer(db, { addr: '127.0.0.1:0', auth: new AuthFileSource(join(dir, 'auth.json')) });
    try {
      const denied = await cliAsync(dir, ['backup', '--addr', running.addr, '--token', reader, 'a.buffdb']);
      assert.equal(denied.status, 4);
      assert.match(denied.stderr, /^buffdb: permission denied: token "reader" lacks admin\n$/);
      assert.ok(!existsSync(join(dir, 'a.buffdb')) && !existsSync(join(dir, 'a.buffdb.partial')));
      const ok = await cliAsync(dir, ['backup', '--addr', running.addr, '--token', admin, 'a.buffdb']);
      assert.equal(ok.status, 0, ok.stderr);
    } finally {
      await running.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
