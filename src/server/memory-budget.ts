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
 */
import { DEFAULT_MEMORY_BUDGET } from '../defaults.js';

/** A call never holds more than this by default (or a quarter of the budget, if that is smaller). */
export const DEFAULT_STREAM_CAP = 16 * 1024 * 1024;

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
  }

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

  /** Promise form of `acquireThen`, for handlers that await (Query rows, Download chunks). */
  acquire(bytes: number): Promise<void> {
    if (this.tryAcquire(bytes)) return Promise.resolve();
    return new Promise((resolve) => this.budget.enqueue({ call: this, bytes, granted: resolve }));
  }

  /** Releases everything the call holds; its waiters are granted at once, holding nothing. */
  close(): void {
    if (this.closed) return;
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
