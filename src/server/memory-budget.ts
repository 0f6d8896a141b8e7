/**
 * The server's memory budget (issue #12; spec blob-streams.md, "Memory"): the bytes of request and
 * response data held by all calls together stay within `limit`, and one call holds at most
 * `streamCap` of them. Handlers count what they hold through a `CallBudget` (one per call):
 * `charge`/`release` for data already in memory (a request that arrived, an answer not yet written
 * to the transport), `acquire` before bringing more in (reading the next request, reading the next
 * row or chunk from storage). A call that must wait stops reading; HTTP/2 flow control then holds
 * its client back. Nothing is refused for being fast: it just waits its turn.
 *
 * Fairness: calls waiting for room are served first come, first served; a waiter whose own call is
 * at its cap does not hold up the calls behind it. A request larger than the cap (or the whole
 * budget) waits until its call (or the server) holds nothing, then goes alone, so a large message
 * is never refused and the overshoot is at most one message.
 *
 * Reading a request is granted against a `Reservation` (room for a message of about the size of
 * the call's last one) until the message arrives. A client that stops sending would keep its
 * reservation forever, so while others wait, reservations older than RESERVATION_TTL_MS are given
 * back (the read stays granted; its message is counted when it arrives): idle streams cannot
 * starve busy ones.
 */
import { DEFAULT_MEMORY_BUDGET } from '../defaults.js';

/** A call never holds more than this by default (or a quarter of the budget, if that is smaller). */
export const DEFAULT_STREAM_CAP = 16 * 1024 * 1024;

/** How long room reserved for a message that has not come may be kept while others wait. */
export const RESERVATION_TTL_MS = 1000;

/** Room held for a message on its way (granted, not yet arrived). */
export class Reservation {
  /**
   * Links in the budget's list of unsettled reservations (oldest first) and in its call's: lists,
   * not Sets, so that tracking one costs no hash table per message.
   */
  prev: Reservation | undefined;
  next: Reservation | undefined;
  prevOfCall: Reservation | undefined;
  nextOfCall: Reservation | undefined;
  tracked = false;

  constructor(
    readonly call: CallBudget,
    public bytes: number,
    readonly since: number,
  ) {}
}

interface Waiter {
  call: CallBudget;
  bytes: number;
  granted: () => void;
}

export interface MemoryBudgetOptions {
  /** The most one call may hold (default: 16 MiB, or a quarter of the budget if smaller). */
  streamCap?: number;
}

export class MemoryBudget {
  readonly limit: number;
  readonly streamCap: number;
  private usedBytes = 0;
  private peakBytes = 0;
  private readonly waiters: Waiter[] = [];
  /** Reservations not yet settled, oldest first (for the sweep): a doubly linked list. */
  private oldest: Reservation | undefined;
  private newest: Reservation | undefined;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(limit: number = DEFAULT_MEMORY_BUDGET, options: MemoryBudgetOptions = {}) {
    if (!Number.isSafeInteger(limit) || limit <= 0)
      throw new RangeError('a memory budget is a positive number of bytes');
    this.limit = limit;
    this.streamCap = options.streamCap ?? Math.max(1, Math.min(DEFAULT_STREAM_CAP, Math.floor(limit / 4)));
    if (!Number.isSafeInteger(this.streamCap) || this.streamCap <= 0)
      throw new RangeError('streamCap must be positive');
  }

  /** Bytes held by all calls now. */
  get used(): number {
    return this.usedBytes;
  }

  /** The most ever held at once (it exceeds `limit` by at most one message per call admitted). */
  get peak(): number {
    return this.peakBytes;
  }

  /** Calls waiting for room. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** The share of one call; close it when the call ends. */
  open(): CallBudget {
    return new CallBudget(this);
  }

  /** @internal */
  fits(call: CallBudget, bytes: number): boolean {
    return (
      call.held + Math.min(bytes, this.streamCap) <= this.streamCap &&
      this.usedBytes + Math.min(bytes, this.limit) <= this.limit
    );
  }

  /** @internal */
  add(delta: number): void {
    this.usedBytes += delta;
    if (this.usedBytes > this.peakBytes) this.peakBytes = this.usedBytes;
  }

  /** @internal */
  enqueue(waiter: Waiter): void {
    this.waiters.push(waiter);
    this.grant();
    if (this.waiters.length > 0 && !this.sweeper) {
      this.sweeper = setInterval(this.sweep, RESERVATION_TTL_MS / 4);
      this.sweeper.unref();
    }
  }

  /** @internal */
  track(r: Reservation, expected: boolean): void {
    if (expected === r.tracked) return;
    r.tracked = expected;
    r.call.track(r, expected);
    if (expected) {
      r.prev = this.newest;
      r.next = undefined;
      if (this.newest) this.newest.next = r;
      else this.oldest = r;
      this.newest = r;
      return;
    }
    if (r.prev) r.prev.next = r.next;
    else this.oldest = r.next;
    if (r.next) r.next.prev = r.prev;
    else this.newest = r.prev;
    r.prev = r.next = undefined;
  }

  /** While calls wait: gives back reservations kept longer than RESERVATION_TTL_MS. */
  private readonly sweep = (): void => {
    if (this.waiters.length === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      return;
    }
    const old = performance.now() - RESERVATION_TTL_MS;
    for (let r = this.oldest; r && r.since <= old; r = this.oldest) {
      // Oldest first: the loop stops at the first younger one.
      this.track(r, false);
      const bytes = r.bytes;
      r.bytes = 0;
      r.call.release(bytes);
    }
  };

  /** @internal Takes a closed call's waiters out of the queue and returns them. */
  forget(call: CallBudget): Waiter[] {
    const mine: Waiter[] = [];
    for (let i = 0; i < this.waiters.length; ) {
      if (this.waiters[i]!.call === call) mine.push(...this.waiters.splice(i, 1));
      else i++;
    }
    return mine;
  }

  /** @internal Grants waiters in order while the budget has room. */
  grant(): void {
    for (let i = 0; i < this.waiters.length; ) {
      const w = this.waiters[i]!;
      if (this.usedBytes + Math.min(w.bytes, this.limit) > this.limit) return; // first come, first served
      if (!this.fits(w.call, w.bytes)) {
        i++; // its own call is full: it waits for its own releases, others go on
        continue;
      }
      this.waiters.splice(i, 1);
      w.call.charge(w.bytes);
      w.granted();
    }
  }

  /** Whether nothing waits (so a new request may be granted at once). */
  get idle(): boolean {
    return this.waiters.length === 0;
  }
}

/** What one call holds of a MemoryBudget. Every method is a no-op once the call is closed. */
export class CallBudget {
  held = 0;
  private closed = false;
  /** This call's unsettled reservations (so closing the call forgets them). */
  private reservations: Reservation | undefined;

  constructor(readonly budget: MemoryBudget) {}

  /** Counts `bytes` that are already in memory (it may go over the limits: later acquires wait). */
  charge(bytes: number): void {
    if (this.closed || bytes === 0) return;
    this.held += bytes;
    this.budget.add(bytes);
  }

  /** Stops counting `bytes` (written to the transport, stored, or dropped). */
  release(bytes: number): void {
    if (this.closed || bytes === 0) return;
    this.held -= bytes;
    this.budget.add(-bytes);
    if (!this.budget.idle) this.budget.grant();
  }

  /** Changes what is held by `delta` bytes (an estimate replaced by the real size). */
  adjust(delta: number): void {
    if (delta > 0) this.charge(delta);
    else if (delta < 0) this.release(-delta);
  }

  /** Holds `bytes` now if they fit and nobody is waiting; false otherwise (nothing held). */
  tryAcquire(bytes: number): boolean {
    if (this.closed) return true;
    if (!this.budget.idle || !this.budget.fits(this, bytes)) return false;
    this.charge(bytes);
    return true;
  }

  /**
   * Holds `bytes` as soon as they fit, in turn with other calls, then calls `granted` (at once, if
   * they fit now). On a closed call, or when the call is closed while waiting, `granted` is called
   * at once and nothing is held, so an awaiting handler goes on and sees that its call is over.
   */
  acquireThen(bytes: number, granted: () => void): void {
    if (this.tryAcquire(bytes)) granted();
    else this.budget.enqueue({ call: this, bytes, granted });
  }

  /**
   * Like `acquireThen`, for room for something that is on its way (a request being read): `granted`
   * gets a Reservation to `settle` with the real size when it arrives. While other calls wait, a
   * reservation older than RESERVATION_TTL_MS is given back (then the arrival is simply counted).
   */
  reserveThen(bytes: number, granted: (reservation: Reservation) => void): void {
    this.acquireThen(bytes, () => {
      const r = new Reservation(this, this.closed ? 0 : bytes, performance.now());
      if (!this.closed) this.budget.track(r, true);
      granted(r);
    });
  }

  /** @internal Links or unlinks `r` in this call's list (MemoryBudget.track does both lists). */
  track(r: Reservation, expected: boolean): void {
    if (expected) {
      r.prevOfCall = undefined;
      r.nextOfCall = this.reservations;
      if (this.reservations) this.reservations.prevOfCall = r;
      this.reservations = r;
      return;
    }
    if (r.prevOfCall) r.prevOfCall.nextOfCall = r.nextOfCall;
    else this.reservations = r.nextOfCall;
    if (r.nextOfCall) r.nextOfCall.prevOfCall = r.prevOfCall;
    r.prevOfCall = r.nextOfCall = undefined;
  }

  /** Replaces a reservation by the `bytes` that actually arrived (0: nothing came). */
  settle(reservation: Reservation, bytes: number): void {
    this.budget.track(reservation, false);
    const reserved = reservation.bytes;
    reservation.bytes = 0;
    this.adjust(bytes - reserved);
  }

  /** Promise form of `acquireThen`, for handlers that await (Query rows, Download chunks). */
  acquire(bytes: number): Promise<void> {
    if (this.tryAcquire(bytes)) return Promise.resolve();
    return new Promise((resolve) => this.budget.enqueue({ call: this, bytes, granted: resolve }));
  }

  /** Releases everything the call holds; its waiters are granted at once, holding nothing. */
  close(): void {
    if (this.closed) return;
    while (this.reservations) this.budget.track(this.reservations, false);
    const waiting = this.budget.forget(this);
    this.budget.add(-this.held);
    this.held = 0;
    this.closed = true;
    for (const w of waiting) w.granted();
    this.budget.grant();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
