/**
 * `buffdb kv|blob --addr` beyond the shared CLI cases (cli-remote-kv/-blob.test.ts run those against
 * a server): where --addr goes, TLS, mutual TLS, tokens, one-line failures (status 4).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { cliSync as cli, makePki, type Pki } from './helpers/ops.js';
import { type ServerProcess, spawnServer, tempDir } from './helpers/server.js';

function assertOneLine(r: { status: number | null; stderr: string }, status: number, message: RegExp): void {
  assert.equal(r.status, status, r.stderr);
  assert.match(r.stderr, /^buffdb: [^\n]+\n$/, `exactly one line: ${JSON.stringify(r.stderr)}`);
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /DEP0123|DeprecationWarning/);
}

describe('remote CLI', () => {
  let dir: string;
  let pki: Pki;
  const servers: ServerProcess[] = [];
  const start = async (args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> => {
    const srv = await spawnServer(['127.0.0.1:0', '--log-level', 'warn', ...args], dir, env);
    servers.push(srv);
    return srv.addr;
  };
  before(() => {
    dir = tempDir('buffdb-cli-remote-');
    pki = makePki(dir);
  });
  after(async () => {
    for (const s of servers) {
      s.child.kill('SIGTERM');
      await s.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('--addr before or after the subcommand, or BUFFDB_ADDR; -s beside --addr is a usage error', async () => {
    const addr = await start(['--kv-store', 'plain-kv.db', '--blob-store', 'plain-blob.db']);
    assert.equal(cli(dir, ['kv', '--addr', addr, 'set', 'k', 'v']).status, 0);
    assert.equal(cli(dir, ['kv', 'get', 'k', '--addr', addr]).out, 'v');
    assert.equal(cli(dir, ['kv', 'get', 'k'], { BUFFDB_ADDR: addr }).out, 'v');
    assert.equal(cli(dir, ['-b', 'lmdb', 'kv', 'get', 'k', '--addr', addr]).out, 'v', "-b is the server's business");
    assertOneLine(
      cli(dir, ['kv', '-s', 'x.db', 'get', 'k', '--addr', addr]),
      2,
      /--addr and -s\/--store exclude each other/,
    );
    assertOneLine(cli(dir, ['kv', 'get', 'k', '--token', 't']), 2, /--token needs --addr/);
    // A -s on the command line beats BUFFDB_ADDR: that file is read, not the server.
    assertOneLine(cli(dir, ['kv', 'get', 'k', '-s', 'other.db'], { BUFFDB_ADDR: addr }), 3, /key not found: "k"/);
  });

  test('an unreachable server: one line, status 4', () => {
    assertOneLine(
      cli(dir, ['kv', 'get', 'k', '--addr', '127.0.0.1:1']),
      4,
      /cannot reach the buffdb server at 127\.0\.0\.1:1: connect ECONNREFUSED/,
    );
    assertOneLine(
      cli(dir, ['blob', 'store', '-', '--addr', '127.0.0.1:1'], {}, 'x'),
      4,
      /cannot reach the buffdb server/,
    );
  });

  test('TLS: --tls-ca verifies the server; without it the TLS failure is one line, status 4, no Node warning', async () => {
    const addr = await start([
      '--tls-cert',
      pki.serverCert,
      '--tls-key',
      pki.serverKey,
      '--kv-store',
      'tls-kv.db',
      '--blob-store',
      'tls-blob.db',
    ]);
    const id = cli(dir, ['blob', 'store', '-', 'meta', '--addr', addr, '--tls-ca', pki.caCert], {}, 'over TLS');
    assert.equal(id.status, 0, id.stderr);
    assert.equal(id.stderr, '', 'no deprecation warning for TLS to an IP address');
    const got = cli(dir, ['blob', 'get', id.out.trim(), 'all', '--addr', addr, '--tls-ca', pki.caCert]);
    assert.equal(got.out, 'meta\0over TLS');
    assertOneLine(cli(dir, ['kv', 'get', 'k', '--addr', addr]), 4, /cannot reach the buffdb server at/);
    assertOneLine(
      cli(dir, ['kv', 'get', 'k', '--addr', addr, '--tls-ca', pki.clientCert]),
      4,
      /cannot reach the buffdb server at/,
    );
    assertOneLine(
      cli(dir, ['kv', 'get', 'k', '--addr', addr, '--tls-ca', 'missing.pem']),
      4,
      /cannot read the TLS CA file missing\.pem: no such file/,
    );
  });

  test('mutual TLS: --tls-cert and --tls-key present the client certificate', async () => {
    const addr = await start([
      '--tls-cert',
      pki.serverCert,
      '--tls-key',
      pki.serverKey,
      '--tls-client-ca',
      pki.caCert,
      '--kv-store',
      'mtls-kv.db',
      '--blob-store',
      'mtls-blob.db',
    ]);
    const tls = ['--addr', addr, '--tls-ca', pki.caCert];
    const withCert = cli(dir, [
      'kv',
      'set',
      'm',
      'tls',
      ...tls,
      '--tls-cert',
      pki.clientCert,
      '--tls-key',
      pki.clientKey,
    ]);
    assert.equal(withCert.status, 0, withCert.stderr);
    assertOneLine(cli(dir, ['kv', 'get', 'm', ...tls]), 4, /cannot reach the buffdb server/);
    assertOneLine(
      cli(dir, ['kv', 'get', 'm', ...tls, '--tls-cert', pki.clientCert]),
      2,
      /--tls-cert and --tls-key go together/,
    );
  });

  test('tokens: --token or BUFFDB_TOKEN; a missing, unknown or too weak token is one line, status 4', async () => {
    const add = (name: string, ...flags: string[]) =>
      cli(dir, ['auth', 'add-token', name, '--auth-file', 'auth.json', ...flags]).out.trim();
    const writer = add('writer', '--kv-read', '--kv-write');
    const reader = add('reader', '--kv-read');
    const addr = await start(['--auth-file', 'auth.json', '--kv-store', 'auth-kv.db', '--blob-store', 'auth-blob.db']);
    assert.equal(cli(dir, ['kv', 'set', 'a', '1', '--addr', addr, '--token', writer]).status, 0);
    assert.equal(cli(dir, ['kv', 'get', 'a', '--addr', addr], { BUFFDB_TOKEN: reader }).out, '1');
    assertOneLine(cli(dir, ['kv', 'get', 'a', '--addr', addr]), 4, /requires a token/);
    assertOneLine(
      cli(dir, ['kv', 'get', 'a', '--addr', addr, '--token', 'bdb_wrong']),
      4,
      /refused the token: unknown token/,
    );
    assertOneLine(
      cli(dir, ['kv', 'set', 'a', '2', '--addr', addr, '--token', reader]),
      4,
      /token "reader" lacks kv write/,
    );
    // Statuses that mean the same as on a file keep their exit code.
    assertOneLine(cli(dir, ['kv', 'get', 'missing', '--addr', addr, '--token', reader]), 3, /key not found: "missing"/);
  });
});
