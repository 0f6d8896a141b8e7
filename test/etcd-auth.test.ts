/**
 * etcd's Auth service on buffdb's auth file, over a real loopback server: users and roles made
 * with `buffdb auth add-user` and etcdctl 3.4 (`--user root:…`), a limited user held to its key
 * range (KV, Txn, Watch, Lease) with etcd's "permission denied", wrong passwords, invalid and
 * expired tokens (the etcd3 npm client signs in again), an admin token that gets no keys, changes
 * that survive kill -9, a bounded Authenticate flood, and a server without an auth file. sqlite
 * only: auth sits above the store layer.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { Etcd3, EtcdPermissionDeniedError } from 'etcd3';
import { AuthFileSource } from '../src/auth/auth-file.js';
import { PasswordGate } from '../src/auth/passwords.js';
import { connectEtcd, type EtcdClients } from '../src/client/etcd.js';
import {
  LeaseGrantRequest,
  PutRequest,
  RangeRequest,
  TxnRequest,
  WatchRequest,
  type WatchResponse,
} from '../src/generated/etcd/etcdserverpb/rpc.js';
import { etcdctl } from './helpers/etcd.js';
import { cliSync } from './helpers/ops.js';
import { bidi, CLI, serverStores, spawnServer, startTestServer, type TestServer, tempDir } from './helpers/server.js';

const ROOT_PW = 'root-secret';
const ALICE_PW = 'alice-secret';

interface Answer<Res> {
  res?: Res;
  err?: ServiceError;
}

/** Calls a unary method of a grpc-js client; answers the response or the error. */
function call<Res>(start: (cb: (err: ServiceError | null, res?: Res) => void) => unknown): Promise<Answer<Res>> {
  return new Promise((resolve) => {
    start((err, res) => resolve(err ? { err } : { res }));
  });
}

const range = (c: EtcdClients, key: string, md: Metadata) =>
  call<{ kvs: unknown[]; header?: { revision: bigint } }>((cb) =>
    c.kv.range(RangeRequest.fromPartial({ key: Buffer.from(key) }), md, cb),
  );

/** The error's code and text, for comparing. */
const failure = (a: Answer<unknown>) => [a.err?.code, a.err?.details];
const DENIED = [status.PERMISSION_DENIED, 'etcdserver: permission denied'];

const withToken = (token: string): Metadata => {
  const md = new Metadata();
  md.set('token', token);
  return md;
};

async function signIn(c: EtcdClients, name: string, password: string): Promise<string> {
  const r = await call<{ token: string }>((cb) => c.auth.authenticate({ name, password }, cb));
  assert.ifError(r.err);
  return r.res!.token;
}

/** A fresh auth file holding the user root (who gets the role root unasked), made by the CLI from stdin. */
function rootAuthFile(dir: string): string {
  const r = cliSync(dir, ['auth', 'add-user', 'root', '--auth-file', 'auth.json'], {}, `${ROOT_PW}\n`);
  assert.equal(r.status, 0, r.stderr);
  return join(dir, 'auth.json');
}

describe('etcd Auth service (auth file)', () => {
  let dir: string;
  let srv: TestServer;
  let etcd: EtcdClients;
  let source: AuthFileSource;
  /** Root's metadata, with a fresh token. */
  const asRoot = async () => withToken(await signIn(etcd, 'root', ROOT_PW));
  const ctl = (user: string, args: string[]) => etcdctl(srv.addr, [`--user=${user}`, ...args]);
  before(async () => {
    dir = tempDir('buffdb-etcd-auth-');
    source = new AuthFileSource(rootAuthFile(dir));
    srv = await startTestServer({ backend: 'sqlite', dir, serve: { auth: source } });
    etcd = connectEtcd(srv.addr);
  });
  after(async () => {
    etcd.close();
    await srv.dispose();
  });

  test('add-user stores a scrypt hash, never the password; bad input is one line', () => {
    const text = readFileSync(join(dir, 'auth.json'), 'utf8');
    assert.ok(!text.includes(ROOT_PW));
    const root = JSON.parse(text).users[0];
    assert.deepEqual([root.name, root.roles, root.scrypt.N], ['root', ['root'], 16384]);
    const again = cliSync(dir, ['auth', 'add-user', 'root', '--auth-file', 'auth.json'], {}, 'x\n');
    assert.deepEqual(
      [again.status, again.stderr],
      [4, 'buffdb: auth file auth.json: etcdserver: user name already exists\n'],
    );
    const noRole = cliSync(dir, ['auth', 'add-user', 'x', '--auth-file', 'auth.json', '--role', 'nope'], {}, 'x');
    assert.deepEqual(
      [noRole.status, noRole.stderr],
      [4, 'buffdb: auth file auth.json: etcdserver: role name not found\n'],
    );
    const empty = cliSync(dir, ['auth', 'add-user', 'x', '--auth-file', 'auth.json'], {}, '\n');
    assert.equal(empty.status, 2);
  });

  test('etcdctl as root: auth enable, roles with key ranges, users; a limited user keeps to its range', async () => {
    const root = `root:${ROOT_PW}`;
    for (const args of [
      ['auth', 'enable'],
      ['role', 'add', 'app'],
      ['role', 'grant-permission', 'app', 'readwrite', 'app/', '--prefix=true'],
      ['role', 'grant-permission', 'app', 'read', 'shared'],
      ['user', 'add', `alice:${ALICE_PW}`, '--interactive=false'],
      ['user', 'grant-role', 'alice', 'app'],
      ['put', 'other', 'root-only'],
      ['put', 'shared', 'for-all'],
    ]) {
      const r = await ctl(root, args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    const rootMd = await asRoot();
    const auth = await call<{ enabled: boolean; authRevision: bigint }>((cb) => etcd.auth.authStatus({}, rootMd, cb));
    assert.deepEqual([auth.res?.enabled, auth.res?.authRevision], [true, 6n]);
    assert.equal((await ctl(root, ['user', 'list'])).stdout, 'alice\nroot\n');
    assert.equal((await ctl(root, ['user', 'get', 'alice'])).stdout, 'User: alice\nRoles: app\n');
    const appRole =
      'Role app\nKV Read:\n\t[app/, app0) (prefix app/)\n\tshared\nKV Write:\n\t[app/, app0) (prefix app/)\n';
    assert.equal((await ctl(root, ['role', 'get', 'app'])).stdout, appRole);
    const alice = `alice:${ALICE_PW}`;
    assert.equal((await ctl(alice, ['put', 'app/x', '1'])).stdout, 'OK\n');
    assert.equal((await ctl(alice, ['get', 'app/', '--prefix'])).stdout, 'app/x\n1\n');
    assert.equal((await ctl(alice, ['get', 'shared', '--print-value-only'])).stdout, 'for-all\n');
    // Her own user and role: allowed; anyone else's, or any change: root only.
    assert.equal((await ctl(alice, ['user', 'get', 'alice'])).stdout, 'User: alice\nRoles: app\n');
    assert.equal((await ctl(alice, ['role', 'get', 'app'])).stdout, appRole);
    for (const args of [
      ['put', 'other', 'x'],
      ['get', '', '--from-key'],
      ['compaction', '1'],
      ['user', 'add', 'mallory:x', '--interactive=false'],
    ]) {
      const r = await ctl(alice, args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, /^Error: etcdserver: permission denied$/m, args.join(' '));
    }
    assert.equal((await ctl(root, ['get', 'other', '--print-value-only'])).stdout, 'root-only\n');
    const errorOf = async (user: string | undefined, args: string[]) =>
      /^Error: (.*)$/m.exec((await (user ? ctl(user, args) : etcdctl(srv.addr, args))).stderr)?.[1];
    assert.equal(
      await errorOf('alice:wrong', ['get', 'app/x']),
      'etcdserver: authentication failed, invalid user ID or password',
    );
    assert.match((await errorOf(undefined, ['get', 'app/x'])) ?? '', /code = Unauthenticated .*requires a token/);
    assert.match((await errorOf(root, ['auth', 'disable'])) ?? '', /stays on while the server runs with --auth-file/);
    assert.equal(await errorOf(root, ['user', 'delete', 'root']), 'etcdserver: invalid auth management');
    assert.equal(await errorOf(root, ['role', 'add', 'app']), 'etcdserver: role name already exists');
  });

  test("etcd's errors and codes: other users' data and admin calls are root's; unknown names; revokes", async () => {
    const md = withToken(await signIn(etcd, 'alice', ALICE_PW));
    const kvPut = (key: string, prevKv = false) =>
      call((cb) => etcd.kv.put(PutRequest.fromPartial({ key: Buffer.from(key), prevKv }), md, cb));
    const kvRange = (key: string, end: Buffer) =>
      call((cb) => etcd.kv.range(RangeRequest.fromPartial({ key: Buffer.from(key), rangeEnd: end }), md, cb));
    const kvDel = (key: string, end: Buffer) =>
      call((cb) => etcd.kv.deleteRange({ key: Buffer.from(key), rangeEnd: end, prevKv: false }, md, cb));
    assert.deepEqual(failure(await kvPut('shared')), DENIED); // read only
    assert.deepEqual(failure(await kvRange('other', Buffer.alloc(0))), DENIED);
    assert.deepEqual(failure(await kvRange('app', Buffer.from('app0'))), DENIED); // wider than app/
    assert.deepEqual(failure(await kvDel('app/', Buffer.of(0))), DENIED); // from app/ on
    assert.ifError((await kvRange('app/', Buffer.from('app0'))).err);
    assert.deepEqual(failure(await call((cb) => etcd.auth.userGet({ name: 'root' }, md, cb))), DENIED);
    assert.deepEqual(failure(await call((cb) => etcd.auth.roleGet({ role: 'root' }, md, cb))), DENIED);
    const grant = { name: 'app', perm: { permType: 2, key: Buffer.of(0), rangeEnd: Buffer.of(0) } };
    assert.deepEqual(failure(await call((cb) => etcd.auth.roleGrantPermission(grant, md, cb))), DENIED);

    const root = await asRoot();
    const failed = (code: number, text: string) => [code, `etcdserver: ${text}`];
    const FP = status.FAILED_PRECONDITION;
    for (const [what, answer] of [
      [call((cb) => etcd.auth.userGet({ name: 'bob' }, root, cb)), failed(FP, 'user name not found')],
      [call((cb) => etcd.auth.roleGet({ role: 'nope' }, root, cb)), failed(FP, 'role name not found')],
      [
        call((cb) => etcd.auth.userGrantRole({ user: 'alice', role: 'nope' }, root, cb)),
        failed(FP, 'role name not found'),
      ],
      [
        call((cb) => etcd.auth.userRevokeRole({ name: 'alice', role: 'root' }, root, cb)),
        failed(FP, 'role is not granted to the user'),
      ],
      [
        call((cb) =>
          etcd.auth.userAdd({ name: 'alice', password: 'y', hashedPassword: '', options: undefined }, root, cb),
        ),
        failed(FP, 'user name already exists'),
      ],
      [
        call((cb) => etcd.auth.userAdd({ name: '', password: 'y', hashedPassword: '', options: undefined }, root, cb)),
        failed(status.INVALID_ARGUMENT, 'user name is empty'),
      ],
      [call((cb) => etcd.auth.roleAdd({ name: '' }, root, cb)), failed(status.INVALID_ARGUMENT, 'role name is empty')],
      [
        call((cb) => etcd.auth.roleDelete({ role: 'root' }, root, cb)),
        failed(status.INVALID_ARGUMENT, 'invalid auth management'),
      ],
    ] as const) {
      assert.deepEqual(failure(await what), answer);
    }
    const revoke = { role: 'app', key: Buffer.from('shared'), rangeEnd: Buffer.alloc(0) };
    assert.ifError((await call((cb) => etcd.auth.roleRevokePermission(revoke, root, cb))).err);
    assert.deepEqual(
      failure(await call((cb) => etcd.kv.range(RangeRequest.fromPartial({ key: Buffer.from('shared') }), md, cb))),
      DENIED,
    );
    assert.deepEqual(
      failure(await call((cb) => etcd.auth.roleRevokePermission(revoke, root, cb))),
      failed(FP, 'permission is not granted to the role'),
    );
    // A changed password ends the user's tokens.
    const change = { name: 'alice', password: 'new-secret', hashedPassword: '' };
    assert.ifError((await call((cb) => etcd.auth.userChangePassword(change, root, cb))).err);
    assert.equal((await kvRange('app/', Buffer.from('app0'))).err?.details, 'etcdserver: invalid auth token');
    const back = { name: 'alice', password: ALICE_PW, hashedPassword: '' };
    assert.ifError((await call((cb) => etcd.auth.userChangePassword(back, root, cb))).err);
  });

  test('Txn, Watch and Lease are checked against the range before any work', async () => {
    const md = withToken(await signIn(etcd, 'alice', ALICE_PW));
    const putOp = (key: string) => ({
      requestPut: PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from('t') }),
    });
    const txn = (key: string, compareKey = 'app/x') =>
      call((cb) =>
        etcd.kv.txn(
          TxnRequest.fromPartial({ compare: [{ key: Buffer.from(compareKey) }], success: [putOp(key)] }),
          md,
          cb,
        ),
      );
    assert.ifError((await txn('app/t')).err);
    assert.deepEqual(failure(await txn('outside')), DENIED);
    assert.deepEqual(failure(await txn('app/t', 'other')), DENIED);
    // The refused Txns wrote nothing.
    assert.equal((await range(etcd, 'outside', await asRoot())).res?.kvs.length, 0);

    const create = (key: string) => WatchRequest.fromPartial({ createRequest: { key: Buffer.from(key) } });
    const watch = etcd.watch.watch(md);
    const got: WatchResponse[] = [];
    watch.on('data', (r: WatchResponse) => {
      got.push(r);
      if (got.length === 2) watch.cancel();
    });
    await bidi(watch, [create('outside'), create('app/w')]);
    assert.deepEqual(
      got.map((r) => [r.created, r.canceled, r.watchId, r.cancelReason]),
      [
        [true, true, -1n, 'rpc error: code = PermissionDenied desc = etcdserver: permission denied'],
        [true, false, 0n, ''],
      ],
    );

    // A lease holding a key outside her range: she may not revoke it or see its keys.
    const rootMd = await asRoot();
    const lease = await call<{ ID: bigint }>((cb) =>
      etcd.lease.leaseGrant(LeaseGrantRequest.fromPartial({ TTL: 60n }), md, cb),
    );
    assert.ifError(lease.err);
    const ID = lease.res!.ID;
    const put = PutRequest.fromPartial({ key: Buffer.from('leased'), value: Buffer.from('v'), lease: ID });
    assert.ifError((await call((cb) => etcd.kv.put(put, rootMd, cb))).err);
    assert.deepEqual(failure(await call((cb) => etcd.lease.leaseRevoke({ ID }, md, cb))), DENIED);
    assert.deepEqual(failure(await call((cb) => etcd.lease.leaseTimeToLive({ ID, keys: true }, md, cb))), DENIED);
    assert.equal((await range(etcd, 'leased', rootMd)).res?.kvs.length, 1);
    assert.ifError((await call((cb) => etcd.lease.leaseRevoke({ ID }, rootMd, cb))).err);
  });

  test('the etcd3 client signs in and is held to the range', async () => {
    const client = new Etcd3({ hosts: `http://${srv.addr}`, auth: { username: 'alice', password: ALICE_PW } });
    try {
      assert.equal(await client.get('app/x').string(), '1');
      await assert.rejects(client.get('other').string(), EtcdPermissionDeniedError);
      await assert.rejects(client.watch().key('other').create(), EtcdPermissionDeniedError);
    } finally {
      client.close();
    }
  });

  test('an admin-only buffdb token manages users but reads and writes no key', async () => {
    const r = cliSync(dir, ['auth', 'add-token', 'ops', '--auth-file', 'auth.json', '--admin']);
    assert.equal(r.status, 0, r.stderr);
    source.reload(); // as SIGHUP does
    const md = new Metadata();
    md.set('authorization', `Bearer ${r.out.trim()}`);
    const users = await call<{ users: string[] }>((cb) => etcd.auth.userList({}, md, cb));
    assert.deepEqual(users.res?.users, ['alice', 'root']);
    assert.deepEqual(failure(await range(etcd, 'app/x', md)), DENIED);
    const put = PutRequest.fromPartial({ key: Buffer.from('app/y'), value: Buffer.from('v') });
    assert.deepEqual(failure(await call((cb) => etcd.kv.put(put, md, cb))), DENIED);
  });

  test('buffdb tokens and add-role grants share the model: prefixes show as etcd ranges', async () => {
    const role = cliSync(dir, ['auth', 'add-role', 'readers', '--auth-file', 'auth.json', '--kv-read', 'app/']);
    assert.equal(role.status, 0, role.stderr);
    const token = cliSync(dir, ['auth', 'add-token', 'reader', '--auth-file', 'auth.json', '--kv-read', 'app/']);
    assert.equal(token.status, 0, token.stderr);
    source.reload();
    const shown = await ctl(`root:${ROOT_PW}`, ['role', 'get', 'readers']);
    assert.equal(shown.stdout, 'Role readers\nKV Read:\n\t[app/, app0) (prefix app/)\nKV Write:\n');
    const md = new Metadata();
    md.set('authorization', `Bearer ${token.out.trim()}`);
    const prefixed = await call<{ kvs: unknown[] }>((cb) =>
      etcd.kv.range(RangeRequest.fromPartial({ key: Buffer.from('app/'), rangeEnd: Buffer.from('app0') }), md, cb),
    );
    assert.ifError(prefixed.err);
    assert.ok(prefixed.res!.kvs.length > 0);
    const wider = await call((cb) =>
      etcd.kv.range(RangeRequest.fromPartial({ key: Buffer.from('app/'), rangeEnd: Buffer.of(0) }), md, cb),
    );
    assert.deepEqual(failure(wider), DENIED);
  });

  test('Authenticate floods are bounded: the excess is refused at once, other calls go on', async () => {
    const flood = connectEtcd(srv.addr);
    const rootMd = await asRoot();
    try {
      const started = performance.now();
      const attempts = Array.from({ length: 60 }, () =>
        call((cb) => flood.auth.authenticate({ name: 'alice', password: 'guess' }, cb)).then((a) => ({
          ...a,
          at: performance.now() - started,
        })),
      );
      const probe = range(etcd, 'app/x', rootMd).then((a) => ({ ...a, at: performance.now() - started }));
      const answers = await Promise.all(attempts);
      const p = await probe;
      assert.ifError(p.err);
      const codes = answers.map((a) => a.err?.code);
      const refused = answers.filter((a) => a.err?.code === status.RESOURCE_EXHAUSTED);
      assert.ok(refused.length > 0, `no attempt was refused: ${codes}`);
      assert.ok(refused.every((a) => a.err?.details === 'etcdserver: too many requests'));
      assert.ok(
        answers.every((a) => a.err?.code === status.RESOURCE_EXHAUSTED || a.err?.code === status.INVALID_ARGUMENT),
      );
      assert.ok(p.at < Math.max(...answers.map((a) => a.at)), 'the Range waited for the password checks');
    } finally {
      flood.close();
    }
  });
});

/**
 * `buffdb auth add-user` on a terminal (a pty made by util-linux `script`): answers each prompt
 * once it is shown; answers the exit status and everything the terminal showed.
 */
function addUserOnTerminal(
  dir: string,
  name: string,
  answers: string[],
): Promise<{ code: number | null; shown: string }> {
  const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} auth add-user ${name} --auth-file auth.json`;
  const child = spawn('script', ['-qec', cmd, '/dev/null'], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
  let shown = '';
  let prompts = 0;
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    shown += d;
    const seen = shown.split(/Password of|again for confirmation/).length - 1;
    for (; prompts < seen && prompts < answers.length; prompts++) child.stdin.write(`${answers[prompts]}\r`);
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, shown })));
}

describe('etcd tokens', () => {
  test('unknown and expired ones are etcd\'s "invalid auth token"; etcd3 signs in again', async () => {
    const dir = tempDir('buffdb-etcd-auth-ttl-');
    const srv = await startTestServer({
      backend: 'sqlite',
      dir,
      serve: { auth: new AuthFileSource(rootAuthFile(dir), { tokenTtlMs: 1000 }) },
    });
    const etcd = connectEtcd(srv.addr);
    const client = new Etcd3({ hosts: `http://${srv.addr}`, auth: { username: 'root', password: ROOT_PW } });
    try {
      assert.deepEqual(failure(await range(etcd, 'k', withToken('nope'))), [
        status.UNAUTHENTICATED,
        'etcdserver: invalid auth token',
      ]);
      const token = await signIn(etcd, 'root', ROOT_PW);
      assert.ifError((await range(etcd, 'k', withToken(token))).err);
      await client.put('k').value('v');
      // Tokens live 1 s after their last use here: waiting that out is the event.
      await sleep(1500);
      assert.deepEqual(failure(await range(etcd, 'k', withToken(token))), [
        status.UNAUTHENTICATED,
        'etcdserver: invalid auth token',
      ]);
      assert.equal(await client.get('k').string(), 'v');
    } finally {
      client.close();
      etcd.close();
      await srv.dispose();
    }
  });
});

describe('buffdb auth add-user on a terminal', () => {
  test('asks twice without echo; differing answers change nothing', async () => {
    const dir = tempDir('buffdb-etcd-auth-tty-');
    try {
      const ok = await addUserOnTerminal(dir, 'bob', ['tty-secret', 'tty-secret']);
      assert.equal(ok.code, 0, ok.shown);
      assert.match(ok.shown, /Password of bob: .*\n.*Type password of bob again for confirmation: /s);
      assert.ok(!ok.shown.includes('tty-secret'), 'the password was echoed');
      const bob = JSON.parse(readFileSync(join(dir, 'auth.json'), 'utf8')).users[0];
      assert.equal(await new PasswordGate().check('tty-secret', bob.scrypt), true);
      const differ = await addUserOnTerminal(dir, 'carol', ['one', 'two']);
      assert.equal(differ.code, 4);
      assert.match(differ.shown, /buffdb: the two passwords differ; nothing was changed/);
      assert.deepEqual(
        JSON.parse(readFileSync(join(dir, 'auth.json'), 'utf8')).users.map((u: { name: string }) => u.name),
        ['bob'],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('etcd Auth service: changes survive kill -9', () => {
  test('a user added over the API signs in after the server is killed and started again', async () => {
    const stores = await serverStores('sqlite', 'buffdb-etcd-auth-restart-');
    try {
      rootAuthFile(stores.dir);
      const args = stores.args('--auth-file', 'auth.json');
      const first = await spawnServer(args, stores.dir);
      const root = `--user=root:${ROOT_PW}`;
      for (const a of [
        ['role', 'add', 'r'],
        ['user', 'add', 'bob:bob-secret', '--interactive=false'],
        ['user', 'grant-role', 'bob', 'r'],
      ]) {
        const r = await etcdctl(first.addr, [root, ...a]);
        assert.equal(r.code, 0, r.stderr);
      }
      first.child.kill('SIGKILL');
      await first.exited;
      assert.ok(!readFileSync(join(stores.dir, 'auth.json'), 'utf8').includes('bob-secret'));
      const second = await spawnServer([...args, '--etcd-auth-token-ttl', '1'], stores.dir);
      const etcd = connectEtcd(second.addr);
      try {
        const r = await etcdctl(second.addr, ['--user=bob:bob-secret', 'user', 'get', 'bob']);
        assert.deepEqual([r.code, r.stdout], [0, 'User: bob\nRoles: r\n'], r.stderr);
        // --etcd-auth-token-ttl 1: a token unused for a second has ended (waiting it out is the event).
        const md = withToken(await signIn(etcd, 'bob', 'bob-secret'));
        assert.ifError((await call((cb) => etcd.auth.userGet({ name: 'bob' }, md, cb))).err);
        await sleep(1300);
        const late = await call((cb) => etcd.auth.userGet({ name: 'bob' }, md, cb));
        assert.deepEqual(failure(late), [status.UNAUTHENTICATED, 'etcdserver: invalid auth token']);
      } finally {
        etcd.close();
        second.child.kill('SIGTERM');
        await second.exited;
      }
    } finally {
      await stores.dispose();
    }
  });
});

describe('etcd Auth service without an auth file', () => {
  let srv: TestServer;
  let etcd: EtcdClients;
  before(async () => {
    srv = await startTestServer({ backend: 'sqlite' });
    etcd = connectEtcd(srv.addr);
  });
  after(async () => {
    etcd.close();
    await srv.dispose();
  });

  test('authentication is not enabled; etcdctl --user goes on without a token', async () => {
    const auth = await call((cb) => etcd.auth.authenticate({ name: 'root', password: 'x' }, cb));
    assert.deepEqual(failure(auth), [status.FAILED_PRECONDITION, 'etcdserver: authentication is not enabled']);
    const st = await call<{ enabled: boolean }>((cb) => etcd.auth.authStatus({}, cb));
    assert.equal(st.res?.enabled, false);
    const add = await call((cb) => etcd.auth.roleAdd({ name: 'r' }, cb));
    assert.equal(add.err?.code, status.FAILED_PRECONDITION);
    assert.match(add.err?.details ?? '', /^etcdserver: authentication is not enabled: .*--auth-file/);
    const put = await etcdctl(srv.addr, ['--user=root:x', 'put', 'k', 'v']);
    assert.deepEqual([put.code, put.stdout], [0, 'OK\n'], put.stderr);
  });
});
