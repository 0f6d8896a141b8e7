/**
 * TLS and mutual TLS on `buffdb run` (a real process, certificates made by openssl in the test):
 * who gets in, one-line errors for bad files, and certificate rotation on SIGHUP.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { type ChannelCredentials, credentials, status } from '@grpc/grpc-js';
import { connect } from '../src/client/network.js';
import { makePki, type Pki } from './helpers/ops.js';
import { bidi, CLI, eventually, type ServerProcess, spawnServer, tempDir } from './helpers/server.js';

/** Sets a key over a fresh channel with `creds`; the status code, 0 on success. */
async function trySet(addr: string, creds: ChannelCredentials): Promise<{ code: number; details?: string }> {
  const clients = connect(addr, { credentials: creds, clientOptions: { 'grpc.max_reconnect_backoff_ms': 200 } });
  try {
    const r = await bidi(clients.kv.set({ deadline: Date.now() + 5000 }), [{ key: 'k', value: 'v' }]);
    return r.err ? { code: r.err.code, details: r.err.details } : { code: 0 };
  } finally {
    clients.close();
  }
}

/** The CN of the certificate the server presents to a new TLS connection. */
function presentedCn(addr: string, ca: string): Promise<string> {
  const i = addr.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      {
        host: addr.slice(0, i),
        port: Number(addr.slice(i + 1)),
        ca: readFileSync(ca),
        servername: 'localhost',
        ALPNProtocols: ['h2'],
      },
      () => {
        const cn = socket.getPeerCertificate().subject.CN;
        socket.destroy();
        resolve(String(cn));
      },
    );
    socket.on('error', reject);
  });
}

function runCli(cwd: string, args: string[]) {
  const r = spawnSync(process.execPath, [CLI, 'run', '127.0.0.1:0', ...args], { cwd, timeout: 30_000 });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe('TLS', () => {
  let dir: string;
  let pki: Pki;
  const stop: ServerProcess[] = [];
  before(() => {
    dir = tempDir('buffdb-tls-');
    pki = makePki(dir);
  });
  after(async () => {
    for (const s of stop) {
      s.child.kill('SIGKILL');
      await s.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('--tls-cert/--tls-key: TLS clients that trust the CA get in; plaintext and untrusting clients do not', async () => {
    const srv = await spawnServer(['127.0.0.1:0', '--tls-cert', pki.serverCert, '--tls-key', pki.serverKey], dir);
    stop.push(srv);
    assert.deepEqual(await trySet(srv.addr, credentials.createSsl(readFileSync(pki.caCert))), { code: 0 });
    assert.equal((await trySet(srv.addr, credentials.createInsecure())).code, status.UNAVAILABLE);
    assert.equal(
      (await trySet(srv.addr, credentials.createSsl())).code,
      status.UNAVAILABLE,
      'system roots do not trust it',
    );
    assert.match(srv.stderr(), /"tls":"server"/);
  });

  test('--tls-client-ca: only clients with a certificate from that CA get in', async () => {
    const srv = await spawnServer(
      ['127.0.0.1:0', '--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-client-ca', pki.caCert],
      dir,
      { BUFFDB_KV_STORE: 'mtls-kv.db', BUFFDB_BLOB_STORE: 'mtls-blob.db' },
    );
    stop.push(srv);
    const ca = readFileSync(pki.caCert);
    const withCert = credentials.createSsl(ca, readFileSync(pki.clientKey), readFileSync(pki.clientCert));
    assert.deepEqual(await trySet(srv.addr, withCert), { code: 0 });
    assert.equal((await trySet(srv.addr, credentials.createSsl(ca))).code, status.UNAVAILABLE, 'no client certificate');
    const rogue = credentials.createSsl(ca, readFileSync(pki.rogueKey), readFileSync(pki.rogueCert));
    assert.equal((await trySet(srv.addr, rogue)).code, status.UNAVAILABLE, 'a certificate from another CA');
    assert.match(srv.stderr(), /"tls":"mutual"/);
  });

  test('missing or bad certificate files: one line naming the file, exit 4; half a pair: exit 2', () => {
    writeFileSync(join(dir, 'garbage.pem'), 'not a certificate\n');
    const cases: [string[], number, RegExp][] = [
      [
        ['--tls-cert', 'nope.crt', '--tls-key', pki.serverKey],
        4,
        /cannot read the TLS certificate nope\.crt: no such file/,
      ],
      [['--tls-cert', pki.serverCert, '--tls-key', 'nope.key'], 4, /cannot read the TLS key nope\.key/],
      [
        ['--tls-cert', join(dir, 'garbage.pem'), '--tls-key', pki.serverKey],
        4,
        /garbage\.pem is not a PEM certificate/,
      ],
      [['--tls-cert', pki.serverCert, '--tls-key', join(dir, 'garbage.pem')], 4, /is not a PEM private key/],
      [['--tls-cert', pki.serverCert, '--tls-key', pki.clientKey], 4, /does not belong to the certificate/],
      [
        ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-client-ca', join(dir, 'garbage.pem')],
        4,
        /client CA file .*garbage\.pem is not a PEM certificate/,
      ],
      [['--tls-cert', pki.serverCert], 2, /--tls-cert and --tls-key go together/],
      [['--tls-client-ca', pki.caCert], 2, /--tls-client-ca needs --tls-cert/],
    ];
    for (const [args, code, message] of cases) {
      const r = runCli(dir, args);
      assert.equal(r.status, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^buffdb: [^\n]+\n$/, `one line: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '', 'never listening');
    }
  });

  test('SIGHUP re-reads the certificate files: new connections get the new certificate, no restart', async () => {
    const rotated = makePki(tempDir('buffdb-tls-next-'), 'server-next');
    const cert = join(dir, 'live.crt');
    const key = join(dir, 'live.key');
    copyFileSync(pki.serverCert, cert);
    copyFileSync(pki.serverKey, key);
    const srv = await spawnServer(['127.0.0.1:0', '--tls-cert', cert, '--tls-key', key], dir, {
      BUFFDB_KV_STORE: 'hup-kv.db',
      BUFFDB_BLOB_STORE: 'hup-blob.db',
    });
    stop.push(srv);
    assert.equal(await presentedCn(srv.addr, pki.caCert), 'server');
    // A bad file on reload keeps the old certificate and says so.
    writeFileSync(cert, 'garbage');
    srv.child.kill('SIGHUP');
    await eventually(() => /certificates not reloaded/.test(srv.stderr()), 'the reload error', 10_000);
    assert.equal(await presentedCn(srv.addr, pki.caCert), 'server');
    copyFileSync(rotated.serverCert, cert);
    copyFileSync(rotated.serverKey, key);
    srv.child.kill('SIGHUP');
    await eventually(() => /TLS certificates reloaded/.test(srv.stderr()), 'the reload', 10_000);
    assert.equal(await presentedCn(srv.addr, rotated.caCert), 'server-next');
    assert.deepEqual(await trySet(srv.addr, credentials.createSsl(readFileSync(rotated.caCert))), { code: 0 });
    assert.equal(srv.child.exitCode, null, 'still the same process');
    rmSync(rotated.dir, { recursive: true, force: true });
  });
});
