/**
 * Durability of SQLite's off-loop WAL sync (src/backends/sqlite/wal-sync.ts): with the default
 * `--durability full`, every acknowledged Blob Store must have been preceded by a sync of the
 * blob store's write-ahead log — SQLite's own fsync inside COMMIT (FULL, small batches), or buffdb's
 * fdatasync of the `-wal` file (large batches, and the first small one after them). Watched from
 * outside with strace on a real `buffdb run`: between writing request i and receiving its answer,
 * a sync of a file descriptor open on `blob.db-wal` must have started.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from '../src/client/network.js';
import { CLI, tempDir } from './helpers/server.js';

const hasStrace = process.platform === 'linux' && spawnSync('strace', ['-V']).status === 0;
const now = (): number => (performance.timeOrigin + performance.now()) / 1000;

describe('SQLite WAL sync: an acknowledged write was synced first', () => {
  let dir: string;
  before(() => {
    dir = tempDir('buffdb-walsync-');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every Blob Store answer follows a sync of the blob WAL, for large and small batches', async (t) => {
    if (!hasStrace) return t.skip('needs strace on Linux');
    const trace = join(dir, 'trace');
    const child = spawn(
      'strace',
      ['-f', '-qq', '-ttt', '-e', 'trace=openat,fsync,fdatasync', '-o', trace, process.execPath, CLI, 'run'].concat([
        '127.0.0.1:0',
        '--kv-store',
        join(dir, 'kv.db'),
        '--blob-store',
        join(dir, 'blob.db'),
      ]),
      // Its own process group: SIGTERM goes to strace and to the server it traces.
      { stdio: ['ignore', 'pipe', 'ignore'], detached: true },
    );
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    const addr = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on (\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      void exited.then(() => reject(new Error('buffdb run under strace exited before listening')));
    });
    // Large, large (off the event loop), small right after a large one (synced by buffdb in line),
    // small after small (SQLite's FULL), and again.
    const sizes = [1 << 20, 1 << 20, 10, 10, 1 << 20, 10];
    const windows: [number, number][] = [];
    const db = connect(addr);
    try {
      const call = db.blob.store();
      const answers: (() => void)[] = [];
      call.on('data', () => answers.shift()?.());
      for (const size of sizes) {
        const answered = new Promise<void>((resolve) => answers.push(resolve));
        const sent = now();
        call.write({ bytes: Buffer.alloc(size, 7), metadata: undefined, transactionId: undefined });
        await answered;
        windows.push([sent, now()]);
      }
      call.end();
    } finally {
      db.close();
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
    }
    const lines = readFileSync(trace, 'utf8').split('\n');
    const walFds = new Set<string>();
    const syncs: number[] = [];
    for (const line of lines) {
      const open = /openat\(.*blob\.db-wal".*\) = (\d+)$/.exec(line);
      if (open) walFds.add(open[1]!);
      const sync = /^\d+\s+([\d.]+) f(?:data)?sync\((\d+)/.exec(line);
      if (sync && walFds.has(sync[2]!)) syncs.push(Number(sync[1]));
    }
    assert.ok(walFds.size > 0, 'the trace shows the blob WAL being opened');
    for (const [i, [sent, answered]] of windows.entries()) {
      assert.ok(
        syncs.some((s) => s >= sent && s <= answered),
        `Store ${i} (${sizes[i]} bytes) was answered without a sync of the blob WAL in between`,
      );
    }
  });
});
