/**
 * PostgreSQL specifics over real processes: several `buffdb run -b postgres` on one database act
 * as one store; the database restarting under load; an unreachable database at start.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import { type BuffDbClients, connect } from '../src/client/network.js';
import type { KvClient } from '../src/generated/kv.js';
import { BuffDb } from '../src/store/buffdb.js';
import type { KvEvent } from '../src/store/kv/history.js';
import { prefixSpan } from '../src/store/kv/key-span.js';
import { type PgServer, startPostgres, storeLocator } from './helpers/postgres.js';
import { bidi, eventually, type ServerProcess, spawnServer, tempDir } from './helpers/server.js';

type Unary<Req, Res> = (req: Req, cb: (err: ServiceError | null, res?: Res) => void) => unknown;
function unary<Req, Res>(f: Unary<Req, Res>, req: Req): Promise<{ res?: Res; err?: ServiceError }> {
  return new Promise((resolve) => {
    f(req, (err, res) => resolve(err ? { err } : { res }));
  });
}
const begin = async (kv: KvClient): Promise<string> =>
  (await unary<object, { transactionId: string }>(kv.beginTransaction.bind(kv), {})).res!.transactionId;
const commit = (kv: KvClient, transactionId: string) =>
  unary<{ transactionId: string }, object>(kv.commitTransaction.bind(kv), { transactionId });

async function setKv(c: BuffDbClients, key: string, value: string, transactionId?: string) {
  return bidi(c.kv.set(), [{ key, value, transactionId }]);
}
async function getKv(c: BuffDbClients, key: string, transactionId?: string) {
  return bidi(c.kv.get(), [{ key, transactionId }]);
}

describe('several servers on one PostgreSQL store', () => {
  let stores: Awaited<ReturnType<typeof storeLocator>>;
  let servers: ServerProcess[] = [];
  let a: BuffDbClients;
  let b: BuffDbClients;
  let kvStore: string;
  let blobStore: string;
  const dir = tempDir('buffdb-pg-multi-');

  before(async () => {
    stores = await storeLocator('postgres');
    ({ kvStore, blobStore } = stores.locate('shared'));
    const args = ['127.0.0.1:0', '-b', 'postgres', '--kv-store', kvStore, '--blob-store', blobStore];
    // Both start at once: creating the tables must be safe when servers race.
    servers = await Promise.all([spawnServer(args, dir), spawnServer(args, dir)]);
    a = connect(servers[0]!.addr);
    b = connect(servers[1]!.addr);
  });
  after(async () => {
    a?.close();
    b?.close();
    for (const s of servers) {
      s.child.kill('SIGTERM');
      await s.exited;
    }
    await stores.dispose();
  });

  it('a write acknowledged by one server is read by the other at once', async () => {
    for (let i = 0; i < 20; i++) {
      assert.equal((await setKv(i % 2 ? a : b, 'shared-key', `v${i}`)).err, undefined);
      assert.deepEqual((await getKv(i % 2 ? b : a, 'shared-key')).out, [{ value: `v${i}` }]);
    }
    assert.equal((await bidi(a.kv.delete(), [{ key: 'shared-key' }])).err, undefined);
    assert.equal((await getKv(b, 'shared-key')).err?.code, status.NOT_FOUND);
  });

  it('blob ids never collide, and a store answered later gets a higher id on either server', async () => {
    let last = 0n;
    for (let i = 0; i < 20; i++) {
      const res = await bidi((i % 2 ? a : b).blob.store(), [{ bytes: Buffer.from(`b${i}`) }]);
      const id = res.out[0]!.id;
      assert.ok(id > last, `id ${id} after ${last}`);
      last = id;
    }
    // Concurrent stores through both servers: all distinct.
    const both = await Promise.all(
      [a, b].map((c) =>
        bidi(
          c.blob.store(),
          Array.from({ length: 50 }, (_, i) => ({ bytes: Buffer.from(`c${i}`) })),
        ),
      ),
    );
    const ids = both.flatMap((r) => r.out.map((o) => o.id));
    assert.equal(new Set(ids).size, 100);
  });

  it('conflicting transactions on two servers: one commits, the other is ABORTED', async () => {
    await setKv(a, 'tx-key', '0');
    const ta = await begin(a.kv);
    const tb = await begin(b.kv);
    assert.deepEqual((await getKv(a, 'tx-key', ta)).out, [{ value: '0' }]);
    assert.deepEqual((await getKv(b, 'tx-key', tb)).out, [{ value: '0' }]);
    await setKv(a, 'tx-key', 'from-a', ta);
    await setKv(b, 'tx-key', 'from-b', tb);
    const [ra, rb] = await Promise.all([commit(a.kv, ta), commit(b.kv, tb)]);
    const codes = [ra.err?.code, rb.err?.code].sort();
    assert.deepEqual(codes, [status.ABORTED, undefined].sort(), `${ra.err?.details} / ${rb.err?.details}`);
    const winner = ra.err ? 'from-b' : 'from-a';
    assert.deepEqual((await getKv(b, 'tx-key')).out, [{ value: winner }]);
  });

  it('group commit: a thousand Sets on one stream share a few database transactions', async () => {
    const database = new URL(kvStore);
    database.search = '';
    const admin = (await import('postgres')).default(database.toString(), { max: 1, onnotice: () => {} });
    try {
      const schema = new URL(kvStore).searchParams.get('schema')!;
      const historyRows = async (): Promise<number> =>
        Number((await admin.unsafe(`SELECT count(*)::int AS n FROM "${schema}"._buffdb_history`))[0]!.n);
      // Every write transaction takes a transaction id: the ids used count the transactions.
      const xid = async (): Promise<number> => Number((await admin.unsafe('SELECT txid_current()::bigint AS n'))[0]!.n);
      const before = { history: await historyRows(), xid: await xid() };
      const res = await bidi(
        a.kv.set(),
        Array.from({ length: 1000 }, (_, i) => ({ key: `gc-${i}`, value: 'v' })),
      );
      assert.equal(res.err, undefined);
      assert.equal(res.out.length, 1000);
      assert.equal((await historyRows()) - before.history, 1000, 'one revision per Set');
      const used = (await xid()) - before.xid - 1;
      assert.ok(used < 200, `${used} database commits for 1000 Sets`);
    } finally {
      await admin.end({ timeout: 1 });
    }
  });

  it('a transaction id used on the other server fails naming the server that owns it', async () => {
    const ta = await begin(a.kv);
    const res = await setKv(b, 'x', 'y', ta);
    assert.equal(res.err?.code, status.FAILED_PRECONDITION);
    assert.ok(res.err!.details.includes(servers[0]!.addr), res.err!.details);
    assert.equal((await commit(a.kv, ta)).err, undefined);
  });

  it('a watcher sees the writes of every server, gapless and in revision order', async () => {
    // A third process on the same store (the library), watching; writes go through both servers.
    const watcher = await BuffDb.open({ backend: 'postgres', kvStore, blobStore });
    try {
      const events: KvEvent[] = [];
      watcher.kv.watch(
        { span: prefixSpan(Buffer.from('w/')), startRev: 0, noPut: false, noDelete: false },
        {
          deliver: (e) => {
            events.push(...e);
            return true;
          },
          compacted: () => {},
          failed: () => {},
        },
      );
      const writes = 40;
      await Promise.all(
        [a, b].map((c, s) =>
          (async () => {
            for (let i = 0; i < writes / 2; i++) await setKv(c, `w/${s}-${i}`, 'v');
          })(),
        ),
      );
      await eventually(() => events.length >= writes, `${writes} watch events`, 10_000);
      assert.equal(events.length, writes);
      for (let i = 1; i < events.length; i++) {
        assert.equal(events[i]!.kv.modRev, events[i - 1]!.kv.modRev + 1, 'revisions are consecutive');
      }
      assert.equal(new Set(events.map((e) => e.kv.key.toString())).size, writes);
    } finally {
      await watcher.close();
    }
  });
});

describe('the database restarts under load', () => {
  let pg: PgServer;
  let server: ServerProcess;
  let c: BuffDbClients;
  let stores: Awaited<ReturnType<typeof storeLocator>>;
  const dir = tempDir('buffdb-pg-restart-');

  before(async () => {
    pg = await startPostgres();
    stores = await storeLocator('postgres', pg.url);
    const { kvStore, blobStore } = stores.locate('restart');
    server = await spawnServer(
      ['127.0.0.1:0', '-b', 'postgres', '--kv-store', kvStore, '--blob-store', blobStore],
      dir,
    );
    c = connect(server.addr);
  });
  after(async () => {
    c?.close();
    server?.child.kill('SIGTERM');
    await server?.exited;
    await pg?.stop();
  });

  /**
   * Writes through the server while `disrupt` runs, then until 50 more are acknowledged: every
   * failure is UNAVAILABLE and quick, and every acknowledged write is there at the end.
   */
  async function underLoad(prefix: string, disrupt: () => Promise<void>): Promise<void> {
    const acked: string[] = [];
    const failures: { code?: number; ms: number }[] = [];
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const t0 = Date.now();
        const res = await setKv(c, `${prefix}${i}`, `v${i}`);
        if (res.err) failures.push({ code: res.err.code, ms: Date.now() - t0 });
        else acked.push(`${prefix}${i}`);
      }
    })();
    await eventually(() => acked.length >= 50, 'writes before the disruption', 20_000);
    await disrupt();
    const before = acked.length;
    await eventually(() => acked.length >= before + 50, 'writes after the disruption', 30_000);
    stop = true;
    await writer;
    for (const f of failures) {
      assert.equal(f.code, status.UNAVAILABLE);
      assert.ok(f.ms < 30_000, `a call waited ${f.ms} ms`);
    }
    // Every acknowledged write is there (read back in one stream).
    const res = await bidi(
      c.kv.get(),
      acked.map((key) => ({ key })),
    );
    assert.equal(res.err, undefined);
    assert.deepEqual(
      res.out.map((o) => o.value),
      acked.map((k) => `v${k.slice(prefix.length)}`),
    );
  }

  it('PostgreSQL restarted: in-flight calls fail UNAVAILABLE quickly, the server serves again once it is back, nothing acknowledged is lost', async () => {
    await underLoad('r', () =>
      pg.restart!(async () => {
        // While the database is down, calls fail (not hang).
        const t0 = Date.now();
        const res = await setKv(c, 'while-down', 'x');
        assert.equal(res.err?.code, status.UNAVAILABLE, res.err?.details);
        assert.ok(Date.now() - t0 < 30_000);
      }),
    );
  });

  it("buffdb's connections killed (pg_terminate_backend): the same", async () => {
    const admin = (await import('postgres')).default(pg.url, { max: 1, onnotice: () => {} });
    try {
      await underLoad('t', async () => {
        const killed = await admin.unsafe(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'buffdb%'",
        );
        assert.ok(killed.length > 0, 'no buffdb connection to kill');
      });
    } finally {
      await admin.end({ timeout: 1 });
    }
  });
});

describe('an unreachable database at start', () => {
  const dir = tempDir('buffdb-pg-start-');
  it('is one line and exit 4; with --wait-for-db the server waits and then serves', async () => {
    const pg = await startPostgres();
    const url = new URL(pg.url);
    url.pathname = '/not_there';
    const missing = url.toString();
    const down = await spawnServer(
      ['127.0.0.1:0', '-b', 'postgres', '--kv-store', missing, '--blob-store', missing],
      dir,
    )
      .then(() => assert.fail('started without its database'))
      .catch((err: Error) => err.message);
    assert.match(down, /exited \(4\)/);
    const stderr = down.slice(down.indexOf('before listening: ') + 'before listening: '.length).trim();
    assert.match(stderr, /^buffdb: .*database "not_there" does not exist$/);
    assert.ok(!stderr.includes('buffdb-test'), 'the password is not shown');
    // Wrong password: the same.
    const badPw = new URL(pg.url);
    badPw.password = 'wrong';
    const refused = await spawnServer(
      ['127.0.0.1:0', '-b', 'postgres', '--kv-store', badPw.toString(), '--blob-store', badPw.toString()],
      dir,
    )
      .then(() => assert.fail('started with a wrong password'))
      .catch((err: Error) => err.message);
    assert.match(refused, /password|login/);
    // --wait-for-db: created while the server waits, then it serves.
    let said = false;
    const waiting = spawnServer(
      ['127.0.0.1:0', '-b', 'postgres', '--kv-store', missing, '--blob-store', missing, '--wait-for-db'],
      dir,
      {},
      (stderr) => {
        said ||= stderr.includes('waiting for PostgreSQL');
      },
    );
    // Once it says it is waiting, make the database.
    await eventually(() => said, 'the "waiting for PostgreSQL" line', 20_000);
    const admin = (await import('postgres')).default(pg.url, { max: 1 });
    await admin.unsafe('CREATE DATABASE not_there');
    await admin.end();
    const proc = await waiting.catch(async (err: Error) => {
      await pg.stop();
      throw err;
    });
    const cl = connect(proc.addr);
    try {
      assert.equal((await setKv(cl, 'k', 'v')).err, undefined);
      assert.deepEqual((await getKv(cl, 'k')).out, [{ value: 'v' }]);
    } finally {
      cl.close();
      proc.child.kill('SIGTERM');
      await proc.exited;
      await pg.stop();
    }
  });
});

describe('raw SQL runs as a role that can reach only its store', () => {
  let stores: Awaited<ReturnType<typeof storeLocator>>;
  let db: BuffDb;
  let kvSchema: string;
  let blobSchema: string;
  const rows = async (sql: string, target: 'kv' | 'blob' = 'kv'): Promise<unknown[][]> => {
    const out: unknown[][] = [];
    for await (const r of db.query.query(sql, target)) out.push(r);
    return out;
  };
  const refused = async (sql: string, target: 'kv' | 'blob' = 'kv'): Promise<string> => {
    try {
      await rows(sql, target);
    } catch (err) {
      const e = err as { code?: number; message: string };
      assert.equal(e.code, status.PERMISSION_DENIED, `${sql}: ${e.message}`);
      return e.message;
    }
    assert.fail(`${sql} was not refused`);
  };

  before(async () => {
    stores = await storeLocator('postgres');
    const loc = stores.locate('sandbox');
    kvSchema = new URL(loc.kvStore).searchParams.get('schema')!;
    blobSchema = new URL(loc.blobStore).searchParams.get('schema')!;
    db = await BuffDb.open({ backend: 'postgres', ...loc });
  });
  after(async () => {
    await db?.close();
    await stores.dispose();
  });

  it('is logged in as an unprivileged role, not as buffdb', async () => {
    const [row] = (await rows(
      'SELECT current_user::text, session_user::text, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user',
    )) as [string, string, boolean, boolean][];
    const [current, session, superuser, createrole] = row!;
    assert.match(current, /^buffdb_sql_/);
    assert.equal(session, current, 'the session user is the sandbox role: no SET ROLE back');
    assert.equal(superuser, false);
    assert.equal(createrole, false);
  });

  it('the database itself refuses what the guard lets through: the other store, buffdb secrets, catalogs of passwords', async () => {
    // Each statement passes the token guard; the role is the wall.
    assert.match(await refused(`SELECT count(*) FROM "${blobSchema}".blob`), /permission denied/);
    assert.match(await refused(`SELECT * FROM "${kvSchema}"._buffdb_secret`), /permission denied/);
    assert.match(await refused('SELECT rolpassword FROM pg_authid'), /permission denied/);
    assert.match(await refused(`SELECT * FROM "${kvSchema}"._buffdb_kv_writes`), /permission denied/);
    // Writes to buffdb's own tables, by a name the guard does not know (quoted, schema-qualified).
    await assert.rejects(db.query.execute(`UPDATE "${kvSchema}"."_buffdb_lock" SET n = 0`, 'kv'));
  });

  it('creating tables in the store stays allowed, and they are its own', async () => {
    assert.equal(await db.query.execute('CREATE TABLE notes (n text)', 'kv'), 0);
    assert.equal(await db.query.execute("INSERT INTO notes VALUES ('a')", 'kv'), 1);
    assert.deepEqual(await rows('SELECT n FROM notes'), [['a']]);
  });
});
