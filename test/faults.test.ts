/**
 * Storage faults: bad store paths, a corrupt file, a full disk and a store deleted under a running
 * server. Each is a clean one-line error at start (documented exit status) or a clean gRPC status
 * per request — never a crash, never a stack trace, never an acknowledged write lost.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  mkdirSync,
  openSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { type BackendName, capabilitiesOf } from '../src/backends/index.js';
import { EXIT } from '../src/cli/exit-codes.js';
import { connect } from '../src/client/network.js';
import { BuffDb } from '../src/store/buffdb.js';
import { bidi, CLI, canMount, spawnServer, TEST_BACKENDS, tempDir } from './helpers/server.js';

interface Exit {
  code: number | null;
  stderr: string;
}

/** Runs `buffdb run ARGS` expecting it to fail at start; bounded by a timeout. */
function runFails(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'run', '127.0.0.1:0', ...args], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`buffdb run ${args.join(' ')} did not fail (stdout ${stdout})`));
    }, 15_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** One line on stderr, starting with "buffdb:", matching `re`, no stack trace. */
function assertOneLine(res: Exit, re: RegExp, code: number = EXIT.FAILURE): void {
  assert.equal(res.code, code, res.stderr);
  const lines = res.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line, got: ${res.stderr}`);
  assert.match(lines[0]!, /^buffdb: /);
  assert.match(lines[0]!, re);
  assert.doesNotMatch(res.stderr, /\n\s+at /);
}

const isRoot = process.getuid?.() === 0;
const MOUNT = canMount();

describe('storage faults at start: one line, exit status 4 (2 for a malformed path)', () => {
  let dir: string;
  before(() => {
    dir = tempDir('buffdb-faults-');
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('a directory instead of a store file', async () => {
    mkdirSync(join(dir, 'adir'));
    assertOneLine(await runFails(['--kv-store', 'adir', '--blob-store', 'b.db'], dir), /KV store adir is a directory/);
    assertOneLine(
      await runFails(['--kv-store', 'k.db', '--blob-store', 'adir'], dir),
      /BLOB store adir is a directory/,
    );
  });

  it('a store in a directory that does not exist', async () => {
    assertOneLine(
      await runFails(['--kv-store', 'missing/kv.db', '--blob-store', 'b.db'], dir),
      /cannot create the KV store missing\/kv\.db: directory .*missing does not exist/,
    );
  });

  it('malformed paths are usage errors', async () => {
    assertOneLine(
      await runFails(['--kv-store', '', '--blob-store', 'b.db'], dir),
      /--kv-store must not be empty/,
      EXIT.USAGE,
    );
    assertOneLine(
      await runFails(['--kv-store', 'file:kv.db?mode=memory', '--blob-store', 'b.db'], dir),
      /looks like a URI/,
      EXIT.USAGE,
    );
  });

  it('a corrupt store file (random bytes) is refused, and left untouched', async () => {
    const bytes = Buffer.alloc(16384);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + 13) % 251;
    writeFileSync(join(dir, 'corrupt.db'), bytes);
    assertOneLine(
      await runFails(['--kv-store', 'corrupt.db', '--blob-store', 'b2.db'], dir),
      /cannot open the KV store corrupt\.db: file is not a database/,
    );
    assertOneLine(
      await runFails(['--kv-store', 'k2.db', '--blob-store', 'corrupt.db'], dir),
      /cannot open the BLOB store corrupt\.db: file is not a database/,
    );
    assert.equal(statSync(join(dir, 'corrupt.db')).size, bytes.length);
  });

  it('an empty file is a fresh store, not an error', async () => {
    writeFileSync(join(dir, 'empty.db'), '');
    const proc = await spawnServer(['127.0.0.1:0', '--kv-store', 'empty.db', '--blob-store', 'empty-b.db'], dir);
    proc.child.kill('SIGTERM');
    assert.equal((await proc.exited).code, 0);
  });

  const roReason = isRoot && !MOUNT ? 'root without permission to mount: a read-only directory cannot be made' : false;
  it('a store in a read-only directory', { skip: roReason }, async () => {
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    // Seed an existing store there first, for the --read-only case.
    const db = await BuffDb.open({ kvStore: join(ro, 'kv.db'), blobStore: join(ro, 'blob.db') });
    await db.kv.setValue('k', 'v');
    await db.close();
    if (isRoot) assert.equal(spawnSync('mount', ['--bind', '-o', 'ro', ro, ro]).status, 0);
    else chmodSync(ro, 0o555);
    try {
      assertOneLine(
        await runFails(['--kv-store', 'ro/new.db', '--blob-store', 'b3.db'], dir),
        /cannot write in .*ro, the directory of the KV store ro\/new\.db .*--read-only/,
      );
      assertOneLine(
        await runFails(['--kv-store', 'ro/kv.db', '--blob-store', 'ro/blob.db'], dir),
        /cannot write in .*ro, the directory of the KV store/,
      );
      // Read-only serving needs SQLite's -shm beside the store: the message says what to do.
      assertOneLine(
        await runFails(['--kv-store', 'ro/kv.db', '--blob-store', 'ro/blob.db', '--read-only'], dir),
        /cannot serve the KV store ro\/kv\.db from a read-only directory/,
      );
    } finally {
      if (isRoot) spawnSync('umount', [ro]);
      else chmodSync(ro, 0o755);
    }
  });
});

/**
 * Fills the BLOB store until the engine reports it full; checks that every write acknowledged
 * before that survives a restart with more room.
 */
async function fillUntilFull(dir: string, env: NodeJS.ProcessEnv, grow: () => NodeJS.ProcessEnv): Promise<void> {
  const args = ['127.0.0.1:0', '--kv-store', 'kv.db', '--blob-store', 'blob.db'];
  const proc = await spawnServer(args, dir, env);
  const clients = connect(proc.addr);
  const acked = new Map<bigint, Buffer>();
  let full: { code: number; details: string } | undefined;
  try {
    for (let i = 0; i < 400 && !full; i++) {
      const data = Buffer.alloc(32 * 1024, i % 256);
      const res = await bidi(clients.blob.store(), [{ bytes: data, metadata: `m${i}` }]);
      for (const r of res.out) acked.set(r.id, data);
      if (res.err) full = { code: res.err.code, details: res.err.details };
    }
    assert.ok(full, 'the store never filled up');
    assert.equal(full.code, status.RESOURCE_EXHAUSTED, full.details);
    assert.match(full.details, /storage is full/);
    assert.ok(acked.size > 3, `only ${acked.size} writes fitted`);
    // The server keeps serving: reads of what was acknowledged work, KV reads work.
    const first = [...acked.keys()].slice(0, 3);
    const got = await bidi(
      clients.blob.get(),
      first.map((id) => ({ id })),
    );
    assert.equal(got.err, undefined, got.err?.details);
    assert.deepEqual(
      got.out.map((g) => Buffer.from(g.bytes)),
      first.map((id) => acked.get(id)),
    );
    const again = await bidi(clients.blob.store(), [{ bytes: Buffer.alloc(256 * 1024, 1) }]);
    assert.equal(again.err?.code, status.RESOURCE_EXHAUSTED);
  } finally {
    clients.close();
    proc.child.kill('SIGTERM');
    await proc.exited;
  }
  // Restart with room: every acknowledged blob is there, byte for byte.
  const proc2 = await spawnServer(args, dir, grow());
  const clients2 = connect(proc2.addr);
  try {
    const ids = [...acked.keys()];
    const got = await bidi(
      clients2.blob.get(),
      ids.map((id) => ({ id })),
    );
    assert.equal(got.err, undefined, got.err?.details);
    assert.equal(got.out.length, ids.length);
    for (const [i, g] of got.out.entries()) {
      assert.ok(Buffer.from(g.bytes).equals(acked.get(ids[i]!)!), `blob ${ids[i]} differs`);
    }
    const more = await bidi(clients2.blob.store(), [{ bytes: Buffer.alloc(1024, 2) }]);
    assert.equal(more.err, undefined, more.err?.details);
  } finally {
    clients2.close();
    proc2.child.kill('SIGTERM');
    assert.equal((await proc2.exited).code, 0);
  }
}

describe('a full disk', () => {
  it('simulated with BUFFDB_SQLITE_MAX_PAGE_COUNT: RESOURCE_EXHAUSTED, nothing acknowledged lost', async () => {
    const dir = tempDir('buffdb-full-');
    try {
      await fillUntilFull(dir, { BUFFDB_SQLITE_MAX_PAGE_COUNT: '200' }, () => ({ BUFFDB_SQLITE_MAX_PAGE_COUNT: '' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a real 1 MiB tmpfs: RESOURCE_EXHAUSTED, nothing acknowledged lost', {
    skip: !MOUNT && 'needs root to mount a tmpfs',
  }, async () => {
    const dir = tempDir('buffdb-tmpfs-');
    assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]).status, 0);
    try {
      await fillUntilFull(dir, {}, () => {
        assert.equal(spawnSync('mount', ['-o', 'remount,size=16m', dir]).status, 0);
        return {};
      });
    } finally {
      spawnSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the store changes under a running server', () => {
  // Stores that are files; a database server's faults are in test/postgres.test.ts.
  for (const backend of TEST_BACKENDS.filter((b) => capabilitiesOf(b as BackendName).storeLocation !== 'url'))
    it(`store file deleted [${backend}]: requests on it fail FAILED_PRECONDITION, the rest carries on`, async () => {
      const dir = tempDir('buffdb-deleted-');
      const proc = await spawnServer(
        ['127.0.0.1:0', '-b', backend, '--kv-store', 'kv.db', '--blob-store', 'blob.db'],
        dir,
      );
      const clients = connect(proc.addr);
      try {
        assert.equal((await bidi(clients.kv.set(), [{ key: 'before', value: '1' }])).err, undefined);
        unlinkSync(join(dir, 'kv.db'));
        const set = await bidi(clients.kv.set(), [{ key: 'after', value: '2' }]);
        assert.equal(set.err?.code, status.FAILED_PRECONDITION);
        assert.match(set.err!.details, /kv\.db was deleted or replaced while the server was running/);
        const get = await bidi(clients.kv.get(), [{ key: 'before' }]);
        assert.equal(get.err?.code, status.FAILED_PRECONDITION);
        const blob = await bidi(clients.blob.store(), [{ bytes: Buffer.from('still fine') }]);
        assert.equal(blob.err, undefined, blob.err?.details);
      } finally {
        clients.close();
        proc.child.kill('SIGTERM');
        assert.equal((await proc.exited).code, 0);
        rmSync(dir, { recursive: true, force: true });
      }
    });

  it('damaged pages in an existing store: DATA_LOSS per request, the server keeps serving', async () => {
    const dir = tempDir('buffdb-damaged-');
    const db = await BuffDb.open({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
    for (let i = 0; i < 500; i++) await db.kv.setValue(`key-${i}`, 'x'.repeat(100));
    await db.close();
    // Overwrite everything after the first page (the header and schema stay readable).
    const size = statSync(join(dir, 'kv.db')).size;
    const fd = openSync(join(dir, 'kv.db'), 'r+');
    writeSync(fd, Buffer.alloc(size - 4096, 0xab), 0, size - 4096, 4096);
    closeSync(fd);
    const proc = await spawnServer(['127.0.0.1:0', '--kv-store', 'kv.db', '--blob-store', 'blob.db'], dir);
    const clients = connect(proc.addr);
    try {
      const get = await bidi(clients.kv.get(), [{ key: 'key-1' }]);
      assert.equal(get.err?.code, status.DATA_LOSS, get.err?.details);
      assert.match(get.err!.details, /damaged/);
      const blob = await bidi(clients.blob.store(), [{ bytes: Buffer.from('other store fine') }]);
      assert.equal(blob.err, undefined, blob.err?.details);
    } finally {
      clients.close();
      proc.child.kill('SIGTERM');
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
