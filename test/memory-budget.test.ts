/** MemoryBudget: the accounting every handler shares (limits, caps, order of grants, close). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBudget, type Reservation } from '../src/server/memory-budget.js';
import { eventually } from './helpers/server.js';

const KiB = 1024;

describe('MemoryBudget', () => {
  it('grants at once while there is room, and counts what is held', () => {
    const budget = new MemoryBudget(100 * KiB, { streamCap: 60 * KiB });
    const a = budget.open();
    assert.equal(a.tryAcquire(40 * KiB), true);
    a.charge(10 * KiB);
    assert.equal(a.held, 50 * KiB);
    assert.equal(budget.used, 50 * KiB);
    a.release(50 * KiB);
    assert.equal(budget.used, 0);
    assert.equal(budget.peak, 50 * KiB);
  });

  it('a call waits at its own cap; others are not held up by it', () => {
    const budget = new MemoryBudget(100 * KiB, { streamCap: 30 * KiB });
    const a = budget.open();
    const b = budget.open();
    a.charge(30 * KiB);
    let aGranted = false;
    a.acquireThen(10 * KiB, () => {
      aGranted = true;
    });
    assert.equal(aGranted, false);
    // b queues behind a's waiter, but a only waits for its own cap: b goes first.
    let bGranted = false;
    b.acquireThen(10 * KiB, () => {
      bGranted = true;
    });
    assert.equal(bGranted, true);
    a.release(10 * KiB);
    assert.equal(aGranted, true);
    assert.equal(a.held, 30 * KiB);
  });

  it('when the total is full, waiters are served first come, first served', () => {
    const budget = new MemoryBudget(100 * KiB, { streamCap: 100 * KiB });
    const calls = [budget.open(), budget.open(), budget.open()];
    calls[0]!.charge(100 * KiB);
    const order: number[] = [];
    calls[1]!.acquireThen(60 * KiB, () => order.push(1));
    calls[2]!.acquireThen(10 * KiB, () => order.push(2));
    // 50 KiB free: call 2's 10 KiB would fit, but call 1 came first and needs 60.
    calls[0]!.release(50 * KiB);
    assert.deepEqual(order, []);
    calls[0]!.release(20 * KiB);
    assert.deepEqual(order, [1, 2]);
    assert.equal(budget.used, 30 * KiB + 70 * KiB);
  });

  it('a request larger than the cap or the budget goes alone, never refused', async () => {
    const budget = new MemoryBudget(100 * KiB, { streamCap: 50 * KiB });
    const a = budget.open();
    const b = budget.open();
    b.charge(KiB);
    assert.equal(a.tryAcquire(500 * KiB), false);
    const granted = a.acquire(500 * KiB);
    b.release(KiB);
    await granted;
    assert.equal(budget.used, 500 * KiB);
    // Over the limit: nobody else gets in until it is released.
    assert.equal(b.tryAcquire(1), false);
    a.release(500 * KiB);
    assert.equal(b.tryAcquire(1), true);
  });

  it('closing a call releases what it held and lets its waiters go holding nothing', async () => {
    const budget = new MemoryBudget(100 * KiB, { streamCap: 100 * KiB });
    const a = budget.open();
    const b = budget.open();
    a.charge(100 * KiB);
    const bWaits = b.acquire(KiB);
    const aWaits = a.acquire(KiB);
    a.close();
    await aWaits;
    await bWaits;
    assert.equal(budget.used, KiB);
    a.charge(KiB); // no-op once closed
    assert.equal(budget.used, KiB);
    assert.equal(budget.waiting, 0);
  });

  it('room reserved for a message that never comes is given back once others wait', async () => {
    const budget = new MemoryBudget(100 * KiB, { streamCap: 100 * KiB });
    const idle = budget.open();
    const busy = budget.open();
    let reservation: Reservation | undefined;
    idle.reserveThen(80 * KiB, (r) => {
      reservation = r;
    });
    assert.equal(budget.used, 80 * KiB);
    // Waits for the idle call's reservation to expire (RESERVATION_TTL_MS), not for a release.
    // (The budget's sweep timer does not keep a process alive; here nothing else would.)
    const keepAlive = setInterval(() => {}, 1000);
    await busy.acquire(50 * KiB);
    clearInterval(keepAlive);
    assert.equal(idle.held, 0);
    assert.equal(budget.used, 50 * KiB);
    // The idle call's message arrives after all: it is counted, not lost from the books.
    idle.settle(reservation!, 30 * KiB);
    assert.equal(budget.used, 80 * KiB);
  });

  it("the sweep gives back expired reservations and keeps fresh ones; a closed call's leave the books", async () => {
    const budget = new MemoryBudget(100 * KiB, { streamCap: 100 * KiB });
    const [closed, old, young, busy] = [budget.open(), budget.open(), budget.open(), budget.open()];
    closed.reserveThen(10 * KiB, () => {});
    old.reserveThen(20 * KiB, () => {});
    closed.close();
    assert.equal(budget.used, 20 * KiB);
    // `young` reserves once `old` has expired and others wait: the sweep must stop at `young`.
    const waiting = busy.acquire(85 * KiB);
    await eventually(() => old.held === 0, 'the sweep gives the expired reservation back');
    await waiting;
    assert.equal(old.held, 0, 'the expired reservation was given back');
    young.reserveThen(5 * KiB, () => {});
    assert.equal(young.held, 5 * KiB, 'a fresh reservation is kept');
    assert.equal(budget.used, 90 * KiB);
    for (const c of [old, young, busy]) c.close();
    assert.equal(budget.used, 0);
  });

  it('a reservation settled with the real size replaces it', () => {
    const budget = new MemoryBudget(100 * KiB);
    const call = budget.open();
    call.reserveThen(10 * KiB, (r) => call.settle(r, 4 * KiB));
    assert.equal(budget.used, 4 * KiB);
    call.close();
    assert.equal(budget.used, 0);
  });

  it('refuses a budget that is not a positive number of bytes', () => {
    assert.throws(() => new MemoryBudget(0), RangeError);
    assert.throws(() => new MemoryBudget(1.5), RangeError);
    assert.equal(new MemoryBudget(8 * 1024 * KiB).streamCap, 2 * 1024 * KiB);
    assert.equal(new MemoryBudget().streamCap, 16 * 1024 * KiB);
  });
});
