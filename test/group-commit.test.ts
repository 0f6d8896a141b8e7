/**
 * Group commit (issue 5): operations that arrive together — within one stream and across streams —
 * run in one engine batch, and each is acknowledged only after that batch has committed.
 *
 * No mocks: every store is real SQLite on a real file. Where a test needs to see the batches, the
 * real engine is wrapped by a `StoreEngine` that counts `batch` calls and forwards everything.
 */

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import type { Backend, KvEngineOps, StoreEngine } from '../src/backends/backend.js';
import { loadBackend } from '../src/backends/index.js';
import { connect } from '../src/client/network.js';
import { type StoreError, status } from '../src/errors.js';
import * as blobPb from '../src/generated/blob.js';
import type * as kv from '../src/generated/kv.js';
import * as kvPb from '../src/generated/kv.js';
import { BlobDefinition, KvDefinition } from '../src/server/definitions.js';
import { startServer } from '../src/server/server.js';
import { BuffDb } from '../src/store/buffdb.js';
import { Sequence } from '../src/store/group-commit.js';
import { bidi, spawnServer, tempDir } from './helpers/server.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = tempDir('buffdb-gc-');
  dirs.push(d);
  return d;
}

/** What one batch did: how many operations it ran and whether it committed. */
interface BatchRecord {
  ops: number;
  committed: boolean;
}

/** The real SQLite backend, with its KV engine wrapped to record every batch and count its writes. */
async function countingBackend(): Promise<{ backend: Backend; batches: BatchRecord[] }> {
  const batches: BatchRecord[] = [];
  const sqlite = await loadBackend('sqlite');
  const backend: Backend = {
    ...sqlite,
    async openKv(path, options) {
      const inner = await sqlite.openKv(path, options);
      const engine: StoreEngine<KvEngineOps> = {
        sql: inner.sql,
        mapError: (err) => inner.mapError(err),
        close: () => inner.close(),
        async batch(work) {
          const record: BatchRecord = { ops: 0, committed: false };
          batches.push(record);
          const result = await inner.batch((ops) =>
            work({
              ...ops,
              get: (k) => ops.get(k),
              range: (q, keysOnly) => ops.range(q, keysOnly),
              count: (start, end) => ops.count(start, end),
              maps: ops.maps,
              put: (r) => {
                record.ops++;
                return ops.put(r);
              },
              delete: (k) => {
                record.ops++;
                return ops.delete(k);
              },
            }),
          );
          record.committed = true;
          return result;
        },
      };
      return engine;
    },
  };
  return { backend, batches };
}

/** The committed contents of a KV store file, read on an independent connection. */
function readKv(path: string): Map<string, string> {
  const reader = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const rows = reader.prepare('SELECT key, value FROM kv').all() as { key: string; value: string }[];
    return new Map(rows.map((r) => [r.key, r.value]));
  } finally {
    reader.close();
  }
}

interface Outcome {
  err: StoreError | null;
  answered: boolean;
}

/** Records each operation's answer by name, to check which were answered and how. */
function tracker() {
  const outcomes = new Map<string, Outcome>();
  const track = (name: string) => {
    const o: Outcome = { err: null, answered: false };
    outcomes.set(name, o);
    return (err: StoreError | null) => {
      o.err = err;
      o.answered = true;
    };
  };
  return { outcomes, track };
}

describe('group commit', () => {
  test('ops from several streams submitted in one tick run in one batch, answered after it commits', async () => {
    const d = dir();
    const { backend, batches } = await countingBackend();
    const db = await BuffDb.open({ backend, kvStore: join(d, 'kv.db'), blobStore: join(d, 'blob.db') });
    try {
      await db.kv.committer.idle();
      const before = batches.length;
      const streams = [new Sequence(), new Sequence(), new Sequence()];
      const answers: { stream: number; i: number; committedWhenAnswered: boolean }[] = [];
      const all: Promise<void>[] = [];
      for (let i = 0; i < 100; i++) {
        streams.forEach((seq, s) => {
          all.push(
            new Promise((resolve, reject) =>
              db.kv.set(
                `s${s}-${i}`,
                `v${i}`,
                (err) => {
                  if (err) return reject(err);
                  answers.push({ stream: s, i, committedWhenAnswered: batches.at(-1)!.committed });
                  resolve();
                },
                seq,
              ),
            ),
          );
        });
      }
      await Promise.all(all);
      assert.equal(batches.length - before, 1, 'all 300 operations ran in one batch');
      assert.equal(batches.at(-1)!.ops, 300);
      assert.ok(
        answers.every((a) => a.committedWhenAnswered),
        'no answer before the commit',
      );
      // Order within each stream is request order.
      for (let s = 0; s < 3; s++) {
        assert.deepEqual(
          answers.filter((a) => a.stream === s).map((a) => a.i),
          [...Array(100).keys()],
        );
      }
      assert.equal(readKv(join(d, 'kv.db')).size, 300);
    } finally {
      await db.close();
    }
  });

  test('a NOT_FOUND ends only its own stream: neighbours in the same batch commit, its earlier writes stay', async () => {
    const d = dir();
    const { backend, batches } = await countingBackend();
    const db = await BuffDb.open({ backend, kvStore: join(d, 'kv.db'), blobStore: join(d, 'blob.db') });
    try {
      await db.kv.committer.idle();
      const before = batches.length;
      const a = new Sequence();
      const b = new Sequence();
      const { outcomes, track } = tracker();
      db.kv.set('a1', '1', track('a1'), a);
      db.kv.set('b1', '1', track('b1'), b);
      db.kv.set('a2', '2', track('a2'), a);
      db.kv.delete('missing', track('a-delete-missing'), a);
      db.kv.set('b2', '2', track('b2'), b);
      db.kv.set('a3', '3', track('a3'), a); // after the failure: never applied, never answered
      db.kv.set('b3', '3', track('b3'), b);
      await db.kv.committer.idle();

      assert.equal(batches.length - before, 1, 'a buffdb error does not split the batch');
      for (const name of ['a1', 'a2', 'b1', 'b2', 'b3']) {
        assert.equal(outcomes.get(name)!.answered, true, name);
        assert.equal(outcomes.get(name)!.err, null, name);
      }
      assert.equal(outcomes.get('a-delete-missing')!.err?.code, status.NOT_FOUND);
      assert.equal(outcomes.get('a3')!.answered, false);
      assert.equal(a.failed, true);
      assert.equal(b.failed, false);
      const rows = readKv(join(d, 'kv.db'));
      assert.deepEqual([...rows.keys()].sort(), ['a1', 'a2', 'b1', 'b2', 'b3']);
    } finally {
      await db.close();
    }
  });

  test('an engine error (SQL constraint) in one op: the batch is retried op by op, neighbours still commit', async () => {
    const d = dir();
    const path = join(d, 'kv.db');
    // A real SQLite constraint: a trigger on the store's own table that refuses one key.
    await (await BuffDb.open({ kvStore: path, blobStore: join(d, 'blob.db') })).close();
    const setup = new Database(path);
    setup.exec(`CREATE TRIGGER refuse_poison BEFORE INSERT ON kv_state WHEN NEW.key = 'poison'
      BEGIN SELECT RAISE(ABORT, 'constraint failed: poison key refused'); END;`);
    setup.close();
    const { backend, batches } = await countingBackend();
    const db = await BuffDb.open({ backend, kvStore: path, blobStore: join(d, 'blob.db') });
    try {
      await db.kv.committer.idle();
      const before = batches.length;
      const a = new Sequence();
      const b = new Sequence();
      const { outcomes, track } = tracker();
      db.kv.set('a1', '1', track('a1'), a);
      db.kv.set('b1', '1', track('b1'), b);
      db.kv.set('poison', 'x', track('poison'), a);
      db.kv.set('b2', '2', track('b2'), b);
      db.kv.set('a2', '2', track('a2'), a); // after its stream's failure: not applied
      db.kv.set('b3', '3', track('b3'), b);
      await db.kv.committer.idle();

      const mine = batches.slice(before);
      assert.equal(mine[0]!.committed, false, 'the combined batch rolled back');
      assert.ok(mine.length > 1, 'then the ops ran again on their own');
      for (const name of ['a1', 'b1', 'b2', 'b3']) {
        assert.equal(outcomes.get(name)!.err, null, name);
        assert.equal(outcomes.get(name)!.answered, true, name);
      }
      assert.equal(outcomes.get('poison')!.err?.code, status.INVALID_ARGUMENT);
      assert.match(outcomes.get('poison')!.err!.message, /poison key refused/);
      assert.equal(outcomes.get('a2')!.answered, false);
      assert.deepEqual([...readKv(path).keys()].sort(), ['a1', 'b1', 'b2', 'b3']);
    } finally {
      await db.close();
    }
  });
});

describe('group commit over gRPC', () => {
  test('every acknowledged Set is visible to an independent reader when its ack arrives', async () => {
    const d = dir();
    const path = join(d, 'kv.db');
    const db = await BuffDb.open({ kvStore: path, blobStore: join(d, 'blob.db') });
    const running = await startServer(db, { addr: '127.0.0.1:0' });
    const clients = connect(running.addr);
    const reader = new Database(path, { readonly: true, fileMustExist: true });
    const lookup = reader.prepare('SELECT value FROM kv WHERE key = ?').pluck();
    try {
      const n = 3000;
      const call = clients.kv.set() as ClientDuplexStream<kv.SetRequest, kv.SetResponse>;
      let acked = 0;
      const missing: string[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on('data', (res: kv.SetResponse) => {
          // The ack means committed: a separate connection must see the row right now.
          if (lookup.get(res.key) !== `value-${res.key}`) missing.push(res.key);
          assert.equal(res.key, `key-${acked}`, 'answers in request order');
          acked++;
        });
        call.on('error', reject);
        call.on('end', resolve);
      });
      for (let i = 0; i < n; i++) call.write({ key: `key-${i}`, value: `value-key-${i}`, transactionId: undefined });
      call.end();
      await done;
      assert.equal(acked, n);
      assert.deepEqual(missing, []);
    } finally {
      reader.close();
      clients.close();
      await running.shutdown(2000);
    }
  });

  test('acknowledged writes survive SIGKILL of `buffdb run`', async () => {
    const d = dir();
    const server = await spawnServer(
      ['127.0.0.1:0', '--kv-store', join(d, 'kv.db'), '--blob-store', join(d, 'blob.db')],
      d,
    );
    const clients = connect(server.addr);
    const acked: string[] = [];
    try {
      const call = clients.kv.set() as ClientDuplexStream<kv.SetRequest, kv.SetResponse>;
      await new Promise<void>((resolve) => {
        call.on('data', (res: kv.SetResponse) => {
          acked.push(res.key);
          if (acked.length === 2000) {
            // Kill mid-stream, with more requests in flight than answered.
            server.child.kill('SIGKILL');
            resolve();
          }
        });
        call.on('error', () => resolve());
        call.on('end', () => resolve());
        for (let i = 0; i < 20_000; i++) call.write({ key: `k${i}`, value: `v${i}`, transactionId: undefined });
        call.end();
      });
      await server.exited;
    } finally {
      clients.close();
    }
    assert.ok(acked.length >= 2000);
    const rows = readKv(join(d, 'kv.db'));
    const lost = acked.filter((k) => rows.get(k) !== `v${k.slice(1)}`);
    assert.deepEqual(lost, [], 'every acknowledged write is in the file');
  });

  test('a failing message ends its stream; a concurrent stream and the acked prefix commit', async () => {
    const d = dir();
    const path = join(d, 'kv.db');
    const db = await BuffDb.open({ kvStore: path, blobStore: join(d, 'blob.db') });
    const running = await startServer(db, { addr: '127.0.0.1:0' });
    const clients = connect(running.addr);
    try {
      const n = 500;
      const first: kv.SetRequest[] = Array.from({ length: n }, (_, i) => ({
        key: `f${i}`,
        value: 'x',
        transactionId: undefined,
      }));
      const healthy: kv.SetRequest[] = Array.from({ length: n }, (_, i) => ({
        key: `h${i}`,
        value: 'y',
        transactionId: undefined,
      }));
      assert.equal((await bidi(clients.kv.set(), first)).err, undefined);
      // A Delete stream whose second message fails, beside a Set stream.
      const [deleted, set] = await Promise.all([
        bidi(clients.kv.delete(), [
          { key: 'f0', transactionId: undefined },
          { key: 'never-set', transactionId: undefined },
          { key: 'f1', transactionId: undefined },
        ]),
        bidi(clients.kv.set(), healthy),
      ]);
      assert.equal(set.err, undefined);
      assert.equal(set.out.length, n);
      assert.equal((deleted.err as ServiceError | undefined)?.code, status.NOT_FOUND);
      assert.match(deleted.err!.details, /never-set/);
      assert.deepEqual(
        deleted.out.map((r) => r.key),
        ['f0'],
        'the answer before the failure was sent',
      );
      const rows = readKv(path);
      assert.equal(rows.has('f0'), false, 'the acknowledged delete is committed');
      assert.equal(rows.get('f1'), 'x', 'the message after the failing one was not applied');
      for (const r of healthy) assert.equal(rows.get(r.key), 'y');
    } finally {
      clients.close();
      await running.shutdown(2000);
    }
  });
});

describe('direct encoders on the stream path', () => {
  // The server and client serialize the flat messages without the generated writer (a profile
  // finding); the bytes must be exactly the generated encoder's.
  const strings = [
    '',
    'a',
    'key-0000000001',
    'é',
    '日本語',
    '😀',
    '\ud800 lone',
    'x'.repeat(127),
    'y'.repeat(128),
    'z'.repeat(16_384),
    '\u0000nul',
  ];
  const same = (a: Uint8Array, b: Uint8Array): void => assert.deepEqual(Buffer.from(a), Buffer.from(b));

  test('Kv messages encode byte-for-byte as the generated encoder', () => {
    for (const key of strings) {
      for (const other of ['', 'value', '日本'.repeat(50)]) {
        for (const transactionId of [undefined, '', 'tx-1']) {
          same(
            KvDefinition.set.requestSerialize({ key, value: other, transactionId }),
            kvPb.SetRequest.encode({ key, value: other, transactionId }).finish(),
          );
          same(
            KvDefinition.get.requestSerialize({ key, transactionId }),
            kvPb.GetRequest.encode({ key, transactionId }).finish(),
          );
          same(
            KvDefinition.delete.requestSerialize({ key, transactionId }),
            kvPb.DeleteRequest.encode({ key, transactionId }).finish(),
          );
        }
      }
      same(KvDefinition.get.responseSerialize({ value: key }), kvPb.GetResponse.encode({ value: key }).finish());
      same(KvDefinition.set.responseSerialize({ key }), kvPb.SetResponse.encode({ key }).finish());
      same(KvDefinition.delete.responseSerialize({ key }), kvPb.DeleteResponse.encode({ key }).finish());
      same(KvDefinition.eq.requestSerialize({ key }), kvPb.EqRequest.encode({ key }).finish());
      // And they decode back to the same message.
      assert.deepEqual(kvPb.SetResponse.decode(KvDefinition.set.responseSerialize({ key })), {
        key: Buffer.from(key).toString(),
      });
    }
  });

  test('Blob data messages encode byte-for-byte as the generated encoder', () => {
    for (const bytes of [Buffer.alloc(0), Buffer.from([0]), Buffer.alloc(200, 7), Buffer.alloc(70_000, 9)]) {
      for (const metadata of [undefined, '', 'meta', '😀']) {
        for (const transactionId of [undefined, 'tx']) {
          same(
            BlobDefinition.store.requestSerialize({ bytes, metadata, transactionId }),
            blobPb.StoreRequest.encode({ bytes, metadata, transactionId }).finish(),
          );
        }
        same(
          BlobDefinition.get.responseSerialize({ bytes, metadata }),
          blobPb.GetResponse.encode({ bytes, metadata }).finish(),
        );
      }
    }
    // A Uint8Array that is not a Buffer, at an offset into a larger buffer.
    const backing = new Uint8Array(64).map((_, i) => i);
    const view = backing.subarray(5, 40);
    same(
      BlobDefinition.get.responseSerialize({ bytes: view as Buffer, metadata: undefined }),
      blobPb.GetResponse.encode({ bytes: view as Buffer }).finish(),
    );
  });
});
