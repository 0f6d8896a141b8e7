/**
 * Graceful shutdown of `buffdb run`: SIGTERM under heavy write load loses no acknowledged write and
 * exits 0 within a bounded time; a second signal forces the exit (status 130).
 */

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type ClientDuplexStream, type StatusObject, status } from '@grpc/grpc-js';
import { type BuffDbClients, connect } from '../src/client/network.js';
import type { SetRequest, SetResponse } from '../src/generated/kv.js';
import { BuffDb } from '../src/store/buffdb.js';
import { type ServerProcess, spawnServer, tempDir } from './helpers/server.js';

const ARGS = ['127.0.0.1:0', '--kv-store', 'kv.db', '--blob-store', 'blob.db'];
/** How a server that is shutting down may refuse a write: new calls refused, or the grace period over. */
const REFUSALS: number[] = [status.UNAVAILABLE, status.CANCELLED];

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

/** Reads every acknowledged key back from the store files, in-process. */
async function assertAllPresent(dir: string, acked: Map<string, string>): Promise<void> {
  const db = await BuffDb.open({ kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') });
  try {
    for (const [key, value] of acked) assert.equal(await db.kv.getValue(key), value, `acknowledged ${key} lost`);
  } finally {
    await db.close();
  }
}

/**
 * The fate of every write sent: acknowledged (answered), refused (its stream ended with a status
 * before answering it), or unanswered on a stream that ended OK — which must never happen.
 */
class Ledger {
  readonly values = new Map<string, string>();
  readonly acked = new Map<string, string>();
  readonly refused = new Map<string, number>();
  readonly unanswered: string[] = [];
  /** Keys written after the signal was sent. */
  readonly afterSignal = new Set<string>();
  signalled = false;
  private readonly waiters: { n: number; resolve: () => void }[] = [];

  /** Tracks one Set stream; `ended` resolves with its final status (undefined: OK). */
  track(call: ClientDuplexStream<SetRequest, SetResponse>): {
    write(key: string, value: string): void;
    end(): void;
    ended: Promise<StatusObject | undefined>;
  } {
    const pending = new Set<string>();
    call.on('data', (r: SetResponse) => {
      pending.delete(r.key);
      this.acked.set(r.key, this.values.get(r.key)!);
      for (const w of this.waiters.filter((x) => this.acked.size >= x.n)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
    });
    // 'status' comes once per call, after 'error' or 'end' (which may both come): the final word.
    call.on('error', () => {});
    const ended = new Promise<StatusObject | undefined>((resolve) => {
      call.on('status', (s: StatusObject) => {
        if (s.code === status.OK) this.unanswered.push(...pending);
        else for (const key of pending) this.refused.set(key, s.code);
        resolve(s.code === status.OK ? undefined : s);
      });
    });
    const write = (key: string, value: string): void => {
      this.values.set(key, value);
      if (this.signalled) this.afterSignal.add(key);
      pending.add(key);
      call.write({ key, value });
    };
    return { write, end: () => call.end(), ended };
  }

  /** Resolves once `n` writes have been acknowledged. */
  ackedAtLeast(n: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.acked.size >= n) resolve();
      else this.waiters.push({ n, resolve });
    });
  }
}

/** Writes short Set streams until one fails. */
async function writer(clients: BuffDbClients, who: number, ledger: Ledger): Promise<void> {
  for (let batch = 0; ; batch++) {
    const stream = ledger.track(clients.kv.set());
    for (let i = 0; i < 50; i++) {
      const key = `w${who}-b${batch}-${i}`;
      stream.write(key, `value of ${key}`);
    }
    stream.end();
    if (await stream.ended) return;
  }
}

describe('graceful shutdown', () => {
  it('SIGTERM during heavy write load: exit 0; every write is acknowledged and committed, or refused with a status', async () => {
    const dir = tempDir('buffdb-shutdown-');
    try {
      // The long-lived stream below is cut when the grace period ends: keep that short here.
      const proc = await spawnServer(ARGS, dir, { BUFFDB_SHUTDOWN_GRACE_MS: '2000' });
      const clients = connect(proc.addr);
      const ledger = new Ledger();
      // One long-lived stream that never ends by itself: each answer sends one more write.
      const longCall = clients.kv.set();
      const long = ledger.track(longCall);
      let next = 0;
      const feed = (): void => {
        if (longCall.destroyed) return;
        const key = `long-${next++}`;
        long.write(key, `long ${key}`);
      };
      longCall.on('data', feed);
      for (let i = 0; i < 20; i++) feed();
      const writers = Array.from({ length: 8 }, (_, who) => writer(clients, who, ledger));
      await ledger.ackedAtLeast(2000);
      ledger.signalled = true;
      proc.child.kill('SIGTERM');
      const exit = await exitWithin(proc, 30_000);
      const longStatus = await long.ended;
      await Promise.all(writers);
      clients.close();

      assert.deepEqual(exit, { code: 0, signal: null }, proc.stderr());
      assert.match(proc.stderr(), /SIGTERM: finishing in-flight streams \(at most 2 s\)/);
      assert.match(proc.stderr(), /stopped; every acknowledged write is committed/);
      assert.ok(ledger.afterSignal.size > 0, 'no write was sent after the signal');
      assert.ok(longStatus, 'the long-lived stream was cut at the end of the grace period');
      // Every write has a definite fate: answered, or refused with a status.
      assert.deepEqual(ledger.unanswered, [], 'a stream ended OK without answering these writes');
      const undecided = [...ledger.values.keys()].filter((k) => !ledger.acked.has(k) && !ledger.refused.has(k));
      assert.deepEqual(undecided, [], 'writes neither acknowledged nor refused');
      const codes = new Set(ledger.refused.values());
      for (const code of codes) {
        assert.ok(
          REFUSALS.includes(code),
          `a write was refused with ${status[code]}; expected one of UNAVAILABLE, CANCELLED`,
        );
      }
      // Acknowledged before or after the signal: all of it is in the store.
      await assertAllPresent(dir, ledger.acked);
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
      await proc.waitForStderr(/SIGTERM: finishing/);
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
