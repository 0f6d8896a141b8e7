/**
 * Authentication and permissions on a real loopback server: tokens made by `buffdb auth add-token`,
 * every status (UNAUTHENTICATED, PERMISSION_DENIED naming the missing right, OK), key prefixes
 * checked per message, transactions, raw SQL, client-certificate subjects, reload on SIGHUP.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { AuthFileSource } from '../src/auth/auth-file.js';
import { connect } from '../src/client/network.js';
import { TargetStore } from '../src/generated/query.js';
import { type RunningServer, startServer } from '../src/server/server.js';
import { ReloadableTls } from '../src/server/tls.js';
import { BuffDb } from '../src/store/buffdb.js';
import { bufCurl, checkHealth, healthClient, makePki } from './helpers/ops.js';
import { bidi, CLI, eventually, fold, spawnServer, tempDir } from './helpers/server.js';

function addToken(dir: string, name: string, flags: string[]): string {
  const r = spawnSync(process.execPath, [CLI, 'auth', 'add-token', name, '--auth-file', 'auth.json', ...flags], {
    cwd: dir,
  });
  assert.equal(r.status, 0, r.stderr.toString());
  assert.equal(r.stderr.toString(), '');
  const out = r.stdout.toString();
  assert.match(out, /^bdb_[A-Za-z0-9_-]{43}\n$/);
  return out.trim();
}

const bearer = (token: string): Metadata => {
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
};

describe('auth', () => {
  let dir: string;
  let db: BuffDb;
  let running: RunningServer;
  let clients: ReturnType<typeof connect>;
  const tokens: Record<string, string> = {};
  before(async () => {
    dir = tempDir('buffdb-auth-');
    tokens.all = addToken(dir, 'all', [
      '--kv-read',
      '--kv-write',
      '--blob-read',
      '--blob-write',
      '--query-read',
      '--query-write',
    ]);
    tokens.kvReader = addToken(dir, 'kv-reader', ['--kv-read']);
    tokens.appWriter = addToken(dir, 'app-writer', [
      '--kv-read',
      'app/',
      '--kv-write',
      'app/',
      '--kv-write',
      'shared/',
    ]);
    tokens.sqlReader = addToken(dir, 'sql-reader', ['--query-read']);
    tokens.blobReader = addToken(dir, 'blob-reader', ['--blob-read']);
    db = await BuffDb.open({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
    await db.kv.setValue('app/seen', 'v');
    await db.kv.setValue('secret', 's');
    running = await startServer(db, { addr: '127.0.0.1:0', auth: new AuthFileSource(join(dir, 'auth.json')) });
    clients = connect(running.addr);
  });
  after(async () => {
    clients.close();
    await running.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the auth file holds SHA-256 hashes only, readable by its owner only', () => {
    const text = readFileSync(join(dir, 'auth.json'), 'utf8');
    for (const token of Object.values(tokens)) {
      assert.ok(!text.includes(token), 'the token is not stored');
      assert.ok(!text.includes(token.slice(4)), 'not even its random part');
    }
    assert.match(text, /"sha256": "[0-9a-f]{64}"/);
    assert.equal(statSync(join(dir, 'auth.json')).mode & 0o777, 0o600);
  });

  test('no token, an unknown token or a malformed header: UNAUTHENTICATED on every service', async () => {
    const unknown = bearer('bdb_not-a-real-token');
    const malformed = new Metadata();
    malformed.set('authorization', `Basic ${tokens.all}`);
    for (const md of [new Metadata(), unknown, malformed]) {
      const results = [
        (await bidi(clients.kv.get(md), [{ key: 'secret' }])).err,
        (await bidi(clients.blob.store(md), [{ bytes: Buffer.from('x') }])).err,
        (await bidi(clients.query.query(md), [{ query: 'SELECT 1', target: TargetStore.KV }])).err,
        (await fold((cb) => clients.kv.eq(md, cb), [{ key: 'secret' }])).err,
        await new Promise<ServiceError | null>((r) => clients.kv.beginTransaction({}, md, (err) => r(err))),
      ];
      for (const err of results) assert.equal(err?.code, status.UNAUTHENTICATED, String(err?.details));
    }
    const noToken = await bidi(clients.kv.get(), [{ key: 'secret' }]);
    assert.match(noToken.err!.details, /requires a token: send the metadata authorization: Bearer TOKEN/);
    assert.equal(await db.blob.getBlob(1).catch((e: { code: number }) => e.code), status.NOT_FOUND, 'nothing stored');
  });

  test('health needs no token', async () => {
    const client = healthClient(running.addr);
    try {
      assert.deepEqual(await checkHealth(client), { status: 'SERVING' });
    } finally {
      client.close();
    }
  });

  test('a valid token with the right permission: OK', async () => {
    const md = bearer(tokens.all!);
    assert.deepEqual((await bidi(clients.kv.set(md), [{ key: 'k', value: 'v' }])).out, [{ key: 'k' }]);
    const stored = await bidi(clients.blob.store(md), [{ bytes: Buffer.from('b') }]);
    assert.equal(stored.err, undefined);
    const rows = await bidi(clients.query.execute(md), [
      { query: "UPDATE kv SET value = 'w' WHERE key = 'k'", target: TargetStore.KV },
    ]);
    assert.equal(rows.err, undefined);
    assert.equal((await bidi(clients.kv.get(bearer(tokens.kvReader!)), [{ key: 'k' }])).out[0]!.value, 'w');
  });

  test('missing rights: PERMISSION_DENIED naming the service and the right, nothing done', async () => {
    const reader = bearer(tokens.kvReader!);
    const cases: [Promise<{ err?: ServiceError }>, RegExp][] = [
      [bidi(clients.kv.set(reader), [{ key: 'denied', value: 'x' }]), /token "kv-reader" lacks kv write/],
      [bidi(clients.kv.delete(reader), [{ key: 'secret' }]), /lacks kv write/],
      [bidi(clients.blob.get(reader), [{ id: 1n }]), /lacks blob read/],
      [bidi(clients.blob.store(reader), [{ bytes: Buffer.from('x') }]), /lacks blob write/],
      [bidi(clients.query.query(reader), [{ query: 'SELECT 1', target: TargetStore.KV }]), /lacks query read/],
      [
        bidi(clients.query.execute(bearer(tokens.sqlReader!)), [{ query: 'DELETE FROM kv', target: TargetStore.KV }]),
        /lacks query write/,
      ],
    ];
    for (const [call, message] of cases) {
      const { err } = await call;
      assert.equal(err?.code, status.PERMISSION_DENIED, String(err?.details));
      assert.match(err!.details, message);
    }
    assert.equal(await db.kv.getValue('denied').catch(() => 'absent'), 'absent');
    assert.equal(await db.kv.getValue('secret'), 's');
  });

  test('key prefixes are checked per message: answers before a refused key stand, nothing after it is applied', async () => {
    const md = bearer(tokens.appWriter!);
    const r = await bidi(clients.kv.set(md), [
      { key: 'app/1', value: 'a' },
      { key: 'shared/2', value: 'b' },
      { key: 'other/3', value: 'c' },
      { key: 'app/4', value: 'd' },
    ]);
    assert.deepEqual(r.out, [{ key: 'app/1' }, { key: 'shared/2' }]);
    assert.equal(r.err?.code, status.PERMISSION_DENIED);
    assert.match(
      r.err!.details,
      /token "app-writer" has kv write only for other keys \(keys under "app\/", keys under "shared\/"\)/,
    );
    assert.equal(await db.kv.getValue('other/3').catch(() => 'absent'), 'absent');
    assert.equal(await db.kv.getValue('app/4').catch(() => 'absent'), 'absent');
    const read = await bidi(clients.kv.get(md), [{ key: 'app/seen' }, { key: 'shared/2' }]);
    assert.deepEqual(read.out, [{ value: 'v' }]);
    assert.match(read.err!.details, /kv read only for other keys/);
    const eq = await fold((cb) => clients.kv.eq(md, cb), [{ key: 'app/1' }, { key: 'secret' }]);
    assert.equal(eq.err?.code, status.PERMISSION_DENIED);
  });

  test('transactions: Begin needs kv or blob read; each operation inside is checked like any other', async () => {
    const begin = (md: Metadata) =>
      new Promise<{ id?: string; err?: ServiceError }>((r) =>
        clients.kv.beginTransaction({}, md, (err, res) => r(err ? { err } : { id: res!.transactionId })),
      );
    const sql = await begin(bearer(tokens.sqlReader!));
    assert.equal(sql.err?.code, status.PERMISSION_DENIED);
    assert.match(sql.err!.details, /transactions need kv read or blob read/);
    const blob = await begin(bearer(tokens.blobReader!));
    assert.equal(blob.err, undefined);
    const { id } = await begin(bearer(tokens.kvReader!));
    const inside = await bidi(clients.kv.set(bearer(tokens.kvReader!)), [
      { key: 'tx-key', value: 'x', transactionId: id },
    ]);
    assert.match(inside.err!.details, /lacks kv write/);
    const commit = await new Promise<ServiceError | null>((r) =>
      clients.kv.commitTransaction({ transactionId: id! }, bearer(tokens.kvReader!), (err) => r(err)),
    );
    assert.equal(commit, null);
    assert.equal(await db.kv.getValue('tx-key').catch(() => 'absent'), 'absent');
  });

  test('query read runs reading SQL; SQL that writes needs query write, even through Query', async () => {
    const md = bearer(tokens.sqlReader!);
    const read = await bidi(clients.query.query(md), [{ query: 'SELECT count(*) FROM kv', target: TargetStore.KV }]);
    assert.equal(read.err, undefined);
    const writing = await bidi(clients.query.query(md), [
      { query: 'SELECT 1', target: TargetStore.KV },
      { query: "INSERT INTO kv VALUES ('sneaky', 'x') RETURNING key", target: TargetStore.KV },
    ]);
    assert.equal(writing.out.length, 1, 'the read before it was answered');
    assert.equal(writing.err?.code, status.PERMISSION_DENIED);
    assert.match(writing.err!.details, /lacks query write \(this SQL writes\)/);
    assert.equal(await db.kv.getValue('sneaky').catch(() => 'absent'), 'absent');
  });

  test('reflection needs a valid token', async () => {
    const url = `http://${running.addr}`;
    const without = await bufCurl(['--http2-prior-knowledge', '--list-methods', url]);
    assert.notEqual(without.code, 0);
    // buf words UNAUTHENTICATED as "you are not authenticated".
    assert.match(without.stderr, /not authenticated|unauthenticated/i);
    const withToken = await bufCurl([
      '--http2-prior-knowledge',
      '--reflect-header',
      `authorization: Bearer ${tokens.blobReader}`,
      '--list-methods',
      url,
    ]);
    assert.equal(withToken.code, 0, withToken.stderr);
    assert.match(withToken.stdout, /buffdb\.kv\.Kv\/Get/);
  });

  test('add-token: errors are one line (no permission, duplicate name, damaged file)', () => {
    const run = (args: string[]) => spawnSync(process.execPath, [CLI, 'auth', 'add-token', ...args], { cwd: dir });
    const none = run(['empty', '--auth-file', 'auth.json']);
    assert.equal(none.status, 2);
    assert.match(none.stderr.toString(), /^buffdb: a token needs at least one permission/);
    const dup = run(['all', '--auth-file', 'auth.json', '--kv-read']);
    assert.equal(dup.status, 4);
    assert.match(dup.stderr.toString(), /already has a token named "all"/);
    writeFileSync(join(dir, 'broken.json'), '{ "version": 1, "tokens": [ { "name": "x" } ] }');
    const broken = run(['y', '--auth-file', 'broken.json', '--kv-read']);
    assert.equal(broken.status, 4);
    assert.match(
      broken.stderr.toString(),
      /^buffdb: auth file broken\.json: token "x": "sha256" must be 64 hex digits\n$/,
    );
  });
});

describe('auth with client certificates', () => {
  test('a certificate subject in the auth file maps to its grants; a token still takes precedence', async () => {
    const dir = tempDir('buffdb-auth-mtls-');
    const pki = makePki(dir);
    writeFileSync(
      join(dir, 'auth.json'),
      JSON.stringify({
        version: 1,
        roles: { reader: [{ service: 'kv', read: true }] },
        tokens: [],
        subjects: [{ name: 'client-1', subject: { CN: 'client-1', O: 'buffdb tests' }, roles: ['reader'] }],
      }),
    );
    const db = await BuffDb.open({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
    await db.kv.setValue('k', 'v');
    const tls = new ReloadableTls({ cert: pki.serverCert, key: pki.serverKey, clientCa: pki.caCert });
    const running = await startServer(db, {
      addr: '127.0.0.1:0',
      credentials: tls.credentials,
      auth: new AuthFileSource(join(dir, 'auth.json')),
    });
    const clients = connect(running.addr, {
      credentials: credentials.createSsl(
        readFileSync(pki.caCert),
        readFileSync(pki.clientKey),
        readFileSync(pki.clientCert),
      ),
    });
    try {
      assert.deepEqual((await bidi(clients.kv.get(), [{ key: 'k' }])).out, [{ value: 'v' }]);
      const write = await bidi(clients.kv.set(), [{ key: 'k', value: 'w' }]);
      assert.match(write.err!.details, /certificate "client-1" lacks kv write/);
      const badToken = await bidi(clients.kv.get(bearer('bdb_wrong')), [{ key: 'k' }]);
      assert.equal(badToken.err?.code, status.UNAUTHENTICATED, 'a wrong token is not rescued by the certificate');
    } finally {
      clients.close();
      await running.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('auth on buffdb run', () => {
  test('--auth-file: tokens added while running work after SIGHUP; tokens never reach the log', async () => {
    const dir = tempDir('buffdb-auth-run-');
    const first = addToken(dir, 'first', ['--kv-write']);
    const srv = await spawnServer(['127.0.0.1:0', '--auth-file', 'auth.json', '--log-level', 'debug'], dir);
    const clients = connect(srv.addr);
    try {
      assert.equal((await bidi(clients.kv.set(bearer(first)), [{ key: 'a', value: '1' }])).err, undefined);
      const second = addToken(dir, 'second', ['--kv-write']);
      assert.equal(
        (await bidi(clients.kv.set(bearer(second)), [{ key: 'b', value: '2' }])).err?.code,
        status.UNAUTHENTICATED,
      );
      srv.child.kill('SIGHUP');
      await eventually(() => /auth file reloaded/.test(srv.stderr()), 'the reload', 10_000);
      assert.equal((await bidi(clients.kv.set(bearer(second)), [{ key: 'b', value: '2' }])).err, undefined);
      for (const t of [first, second]) assert.ok(!srv.stderr().includes(t.slice(4)), 'no token in the log');
      assert.match(srv.stderr(), /"auth":true/);
    } finally {
      clients.close();
      srv.child.kill('SIGTERM');
      await srv.exited;
      rmSync(dir, { recursive: true, force: true });
    }
    const missing = spawnSync(process.execPath, [CLI, 'run', '127.0.0.1:0', '--auth-file', 'nope.json'], {
      cwd: tempDir(),
    });
    assert.equal(missing.status, 4);
    assert.match(missing.stderr.toString(), /^buffdb: auth file nope\.json: no such file\n$/);
  });
});
