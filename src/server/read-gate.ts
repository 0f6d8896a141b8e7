/**
 * Reads a server stream's requests only while the call's memory budget has room.
 *
 * How grpc-js (1.14) takes messages in, and why `pause()` is not enough: the server call object is
 * an object-mode Duplex whose `_read()` calls `startRead()` on the call underneath
 * (server-call.js); `startRead()` hands over one queued message, or resumes the HTTP/2 stream until
 * the next whole message has arrived, then pauses it again (server-interceptors.js,
 * `handleDataFrame`). Node's Readable calls `_read()` whenever its buffer holds fewer objects than
 * its highWaterMark (16 in object mode) — paused or not. So a paused call still pulls 16 more
 * messages off the connection: measured with 1 MiB messages, 1 delivered + 16 buffered = 17 MiB
 * taken in per stream (bench/paused-stream.ts; docs/performance.md, "Memory budget").
 *
 * The gate wraps the stream's own `_read` so `startRead()` is called only once the budget grants
 * room for the next message. Until then grpc-js leaves the HTTP/2 stream paused; Node's Http2Stream
 * stops reading from nghttp2 when its buffer is full and does not acknowledge the bytes, so the
 * client's stream flow-control window (64 KiB; 1 MiB on a connection carrying large messages, whose
 * extra room the budget holds: flow-window.ts) runs out and the client waits: what is held per
 * waiting stream is the message being served plus at most that window. (A grpc-js server
 * interceptor could defer `startRead()` too, but interceptors are set per Server at construction,
 * which `addBuffDbServices` on someone else's server cannot do; the instance `_read` works for any
 * server and for the in-process client's streams alike.)
 *
 * The size of a message is not known before it is read, so a read is granted against a
 * reservation (`holdFor` of the last request's size); when the message is pushed, the reservation
 * is settled with `holdFor(its size)`, before the next `_read` can be asked for.
 */
import type { Readable } from 'node:stream';
import { Queue } from '../queue.js';
import type { CallBudget, Reservation } from './memory-budget.js';
import { MESSAGE_OVERHEAD, requestBytes } from './message-size.js';

type ReadFn = (size: number) => void;

/** The in-process call's server end: hands each request to `arrival` before its 'data' listeners. */
interface ArrivalHook {
  arrival: ((message: unknown) => void) | undefined;
}

function isArrivalHook(stream: object): stream is ArrivalHook {
  return 'arrival' in stream;
}
type PushFn = (chunk: unknown, encoding?: BufferEncoding) => boolean;

export class ReadGate {
  /** Bytes held for each message pushed and not yet taken by the handler, in order. */
  private readonly held = new Queue<number>();
  private lastBytes = MESSAGE_OVERHEAD;
  /** Room granted for the next message, not yet replaced by its real size. */
  private reservation: Reservation | undefined;
  private paused = false;
  private wanted = false;
  private waiting = false;
  private stopped = false;
  private readonly read: ReadFn;
  private readonly push: PushFn;

  /**
   * `holdFor(bytes)`: what to hold for a request of `bytes` until the handler is done with it
   * (its size, or more when its answer is expected to be larger).
   */
  constructor(
    private readonly stream: Readable,
    private readonly budget: CallBudget,
    private readonly holdFor: (bytes: number) => number,
  ) {
    const s = stream as unknown as { _read: ReadFn; push: PushFn };
    this.read = s._read;
    this.push = s.push;
    if (typeof this.read !== 'function') {
      // The in-process client's calls hand each request over as it is written: count it as it
      // comes, and pause the call (its write() then answers false) while the budget is full.
      this.direct = true;
      if (isArrivalHook(stream)) stream.arrival = this.countedArrival;
      else stream.prependListener('data', this.countedArrival);
      return;
    }
    s._read = this.gatedRead;
    s.push = this.countedPush;
  }

  private direct = false;
  private overBudget = false;

  private readonly countedArrival = (chunk: unknown): void => {
    this.lastBytes = requestBytes(chunk);
    const hold = this.holdFor(this.lastBytes);
    this.held.push(hold);
    this.budget.charge(hold);
    // Room for a next message like this one.
    const next = hold;
    if (this.overBudget || this.budget.budget.fits(this.budget, next)) return;
    this.overBudget = true;
    this.stream.pause();
    // Resume once there is room for a message like this one (the room itself is not kept).
    this.budget.acquireThen(next, () => {
      this.budget.release(next);
      this.overBudget = false;
      if (!this.paused && !this.stopped) this.stream.resume();
    });
  };

  /** The bytes held for the next message the stream emits; the caller now releases them. */
  take(): number {
    return this.held.shift() ?? 0;
  }

  /** Stop (or start again) taking messages in, whatever the budget says. */
  setPaused(paused: boolean): void {
    this.paused = paused;
    if (this.direct) {
      if (paused) this.stream.pause();
      else if (!this.overBudget && !this.stopped) this.stream.resume();
      return;
    }
    if (!paused) this.maybeRead();
  }

  /** Restores the stream's own reading: the rest is read without counting (the handler drops it). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.direct) {
      if (isArrivalHook(this.stream)) this.stream.arrival = undefined;
      else this.stream.off('data', this.countedArrival);
      return;
    }
    const s = this.stream as unknown as { _read: ReadFn; push: PushFn };
    s._read = this.read;
    s.push = this.push;
    if (this.wanted && !this.waiting) {
      this.wanted = false;
      this.read.call(this.stream, 0);
    }
  }

  private readonly gatedRead = (): void => {
    this.wanted = true;
    this.maybeRead();
  };

  private maybeRead(): void {
    if (!this.wanted || this.waiting || this.paused || this.stopped) return;
    this.waiting = true;
    this.budget.reserveThen(this.holdFor(this.lastBytes), this.granted);
  }

  private readonly granted = (reservation: Reservation): void => {
    this.waiting = false;
    if (this.stopped) this.budget.settle(reservation, 0);
    else this.reservation = reservation;
    if (!this.wanted) return;
    this.wanted = false;
    this.read.call(this.stream, 0);
  };

  private readonly countedPush = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    let hold = 0;
    if (chunk !== null) {
      this.lastBytes = requestBytes(chunk);
      hold = this.holdFor(this.lastBytes);
      this.held.push(hold);
    }
    // A message the gate did not ask for (the in-process client pushes on write) is just counted.
    if (this.reservation) this.budget.settle(this.reservation, hold);
    else this.budget.charge(hold);
    this.reservation = undefined;
    return this.push.call(this.stream, chunk, encoding);
  };
}
