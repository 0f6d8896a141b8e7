/**
 * Graceful shutdown of `buffdb run`: SIGTERM under heavy write load loses no acknowledged write and
 * exits 0 within a bounded time; a second signal forces the exit (status 130).
 */

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { type BuffDbClients, connect } from '../src/client/network.js';
import { BuffDb } from '../src/store/buffdb.js';
import { type ServerProcess, spawnServer, tempDir } from './helpers/server.js';

const ARGS = ['127.0.0.1:0', '--kv-store', 'kv.db', '--blob-store', 'blob.db'];

/** Resolves with the exit, or rejects if the process is still running after `ms`. */
function exitWithin(proc: ServerProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      proc.child.kill('SIGKILL');
      reject(new Error(`buffdb run still running ${ms} ms after the signal: ${proc.stderr()}`));
    }, ms);
  });
  return Promise.race([proc.exited, late]).finally(() => clearTimeout(timer));
}

function waitForLog(proc: ServerProcess, re: RegExp): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (re.test(proc.stderr())) resolve();
      else setTimeout(check, 10);
    };
    check();
  });
}

/** Reads every acknowledged key back from the store files, in-process. */
async function assertAllPresent(dir: string, acked: Map<string, string>): Promise<void> {
  const db = await BuffDb.open({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
  try {
    for (const [key, value] of acked) assert.equal(await db.kv.getValue(key), value, `acknowledged ${key} lost`);
  } finally {
    await db.close();
  }
}

/** Writes short Set streams until one fails; records each acknowledged key. */
async function writer(clients: BuffDbClients, who: number, acked: Map<string, string>): Promise<void> {
  for (let batch = 0; ; batch++) {
    const err = await new Promise<ServiceError | undefined>((resolve) => {
      const call = clients.kv.set();
      const values = new Map<string, string>();
      call.on('data', (r: { key: string }) => acked.set(r.key, values.get(r.key)!));
      call.on('error', (e: ServiceError) => resolve(e));
      call.on('end', () => resolve(undefined));
      for (let i = 0; i < 50; i++) {
        const key = `w${who}-b${batch}-${i}`;
        values.set(key, `value of ${key}`);
        call.write({ key, value: values.get(key)! });
      }
      call.end();
    });
    if (err) return;
  }
}

describe('graceful shutdown', () => {
  it('SIGTERM during heavy write load: exit 0, every acknowledged write committed', async () => {
    const dir = tempDir('buffdb-shutdown-');
    try {
      // The long-lived stream below is cut when the grace period ends: keep that short here.
      const proc = await spawnServer(ARGS, dir, { BUFFDB_SHUTDOWN_GRACE_MS: '2000' });
      const clients = connect(proc.addr);
      const acked = new Map<string, string>();
      // One long-lived stream as well: it is cut at the end of the grace period, its answers stay valid.
      const longLived = clients.kv.set();
      let longAcked = 0;
      longLived.on('data', (r: { key: string }) => {
        acked.set(r.key, `long ${r.key}`);
        longAcked++;
      });
      longLived.on('error', () => {});
      const feed = (n: number): void => {
        if (!longLived.destroyed) longLived.write({ key: `long-${n}`, value: `long long-${n}` });
      };
      longLived.on('data', () => feed(longAcked + 1000));
      for (let i = 0; i < 20; i++) feed(i);
      const writers = Array.from({ length: 8 }, (_, who) => writer(clients, who, acked));
      await new Promise<void>((resolve) => {
        const t = (): void => {
          if (acked.size > 2000) resolve();
          else setTimeout(t, 20);
        };
        t();
      });
      const ackedAtSignal = acked.size;
      proc.child.kill('SIGTERM');
      const exit = await exitWithin(proc, 30_000);
      await Promise.all(writers);
      clients.close();
      assert.deepEqual(exit, { code: 0, signal: null }, proc.stderr());
      assert.match(proc.stderr(), /SIGTERM: finishing in-flight streams \(at most 2 s\)/);
      assert.match(proc.stderr(), /stopped; every acknowledged write is committed/);
      assert.ok(acked.size >= ackedAtSignal);
      await assertAllPresent(dir, acked);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('SIGTERM the moment the listening line appears still stops cleanly (5 times)', async () => {
    // Regression: the handlers used to be installed after the line, so an eager supervisor's
    // SIGTERM killed the process with the default action about half the time.
    for (let i = 0; i < 5; i++) {
      const dir = tempDir('buffdb-shutdown-eager-');
      try {
        const proc = await spawnServer(ARGS, dir);
        proc.child.kill('SIGTERM');
        assert.deepEqual(await exitWithin(proc, 20_000), { code: 0, signal: null }, proc.stderr());
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('a second signal forces the exit (130); what was acknowledged is still committed', async () => {
    const dir = tempDir('buffdb-shutdown2-');
    try {
      const proc = await spawnServer(ARGS, dir);
      const clients = connect(proc.addr);
      const acked = new Map<string, string>();
      // An open stream holds the graceful shutdown back.
      const call = clients.kv.set();
      call.on('error', () => {});
      await new Promise<void>((resolve) => {
        call.on('data', (r: { key: string }) => {
          acked.set(r.key, 'held');
          resolve();
        });
        call.write({ key: 'held-open', value: 'held' });
      });
      proc.child.kill('SIGTERM');
      await waitForLog(proc, /SIGTERM: finishing/);
      proc.child.kill('SIGINT');
      const exit = await exitWithin(proc, 10_000);
      clients.close();
      assert.deepEqual(exit, { code: 130, signal: null }, proc.stderr());
      assert.match(proc.stderr(), /SIGINT again: exiting now/);
      assert.doesNotMatch(proc.stderr(), /\n\s+at /);
      await assertAllPresent(dir, acked);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
