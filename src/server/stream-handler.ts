/**
 * The two shapes every buffdb RPC has, written once: a bidi stream answered 1:1 in order, and a
 * client stream folded into one answer (Eq/NotEq). Requests are handed to the store as they arrive
 * (so a stream is pipelined and group-committed); answers go out in request order; the first
 * error ends the stream after the answers before it.
 *
 * Memory (issue #12): each call counts what it holds in the server's MemoryBudget — a request from
 * its arrival until the store has answered it, then the answer until it is written to the
 * transport — and reads the next request only when the budget has room (ReadGate). A read (Get,
 * Eq…) also holds room for its answer, estimated from the answers before (see budgetedReads), so
 * a stream of small Gets for large blobs cannot read the store faster than its client takes them.
 */

import type { Readable } from 'node:stream';
import type { ServerDuplexStream, ServerReadableStream, ServiceError, sendUnaryData } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { asStoreError, type StoreError } from '../errors.js';
import { Queue } from '../queue.js';
import { EqualityCheck, type EqualityMode } from '../store/equality.js';
import { type Done, type Reply, Sequence, type Settle } from '../store/group-commit.js';
import { DecodeFailure } from './codec.js';
import type { CallBudget, MemoryBudget } from './memory-budget.js';
import { answerBytes } from './message-size.js';
import { ReadGate } from './read-gate.js';

/** Requests in flight per stream before we stop reading from the client, whatever their size. */
const HIGH_WATER = 4096;

/** `budget`'s share for `call`, released whole when the call closes or is cancelled. */
export function openCallBudget(call: Readable, budget: MemoryBudget): CallBudget {
  const mem = budget.open();
  const close = (): void => mem.close();
  call.once('close', close);
  call.once('cancelled', close);
  return mem;
}

/**
 * What an answer is expected to be: `small` (an id or a key: writes) or `data` (a stored value or
 * blob: reads, whose answers can be far larger than their requests).
 */
export type Answers = 'small' | 'data';

/**
 * Opens `budget` for one call and reads it through a ReadGate. A request holds its own size; for
 * `data` answers, at least the largest answer (`answered`) seen so far on the stream — and the
 * whole per-stream cap before the first one, so only one such request is in flight until then.
 */
export function budgetedReads(
  call: Readable,
  budget: MemoryBudget,
  answers: Answers,
): { mem: CallBudget; gate: ReadGate; answered(bytes: number): void } {
  const mem = openCallBudget(call, budget);
  let largestAnswer = answers === 'small' ? 0 : -1;
  const gate = new ReadGate(call, mem, (bytes) =>
    Math.max(bytes, largestAnswer < 0 ? budget.streamCap : largestAnswer),
  );
  return {
    mem,
    gate,
    answered(bytes) {
      if (answers === 'data' && bytes > largestAnswer) largestAnswer = bytes;
    },
  };
}

export function toServiceError(err: unknown): Partial<ServiceError> {
  const e = asStoreError(err);
  return { code: e.code, details: e.message, message: e.message, metadata: new Metadata() };
}

export function decodeError(failure: DecodeFailure): Partial<ServiceError> {
  return {
    code: failure.code,
    details: failure.message,
    message: failure.message,
    metadata: new Metadata(),
  };
}

/**
 * One request of a bidi stream, from its arrival until its answer is written: also what the store
 * answers (`settle`), so a request costs one object here instead of a slot and a reply closure.
 */
class Slot<Req, Res, R> implements Settle<R> {
  done = false;
  err: unknown = null;
  res: Res | undefined = undefined;
  constructor(
    private readonly settled: (slot: Slot<Req, Res, R>, err: StoreError | null, result?: R) => void,
    /** The request, until it is answered (`toResponse` may read it). */
    public req: Req | undefined,
    /** Bytes held in the budget for this request, then for its answer. */
    public held: number,
  ) {}
  settle(err: StoreError | null, result?: R): void {
    this.settled(this, err, result);
  }
}

/**
 * Serves a bidi stream: `handle` is called for each request, in order, and must call `reply`
 * exactly once (possibly later, after commit). Replies are written in request order. `answers`:
 * `data` for reads (their answers carry stored values). With `toResponse`, `reply` takes the
 * store's result and the answer is `toResponse(result, request)` (no closure per request to map it).
 */
export function serveBidi<Req, Res>(
  call: ServerDuplexStream<Req | DecodeFailure, Res>,
  budget: MemoryBudget,
  handle: (req: Req, reply: Reply<Res>, seq: Sequence) => void,
  answers?: Answers,
): void;
export function serveBidi<Req, Res, R>(
  call: ServerDuplexStream<Req | DecodeFailure, Res>,
  budget: MemoryBudget,
  handle: (req: Req, reply: Reply<R>, seq: Sequence) => void,
  answers: Answers,
  toResponse: (result: R, req: Req) => Res,
): void;
export function serveBidi<Req, Res, R>(
  call: ServerDuplexStream<Req | DecodeFailure, Res>,
  budget: MemoryBudget,
  handle: (req: Req, reply: Reply<R>, seq: Sequence) => void,
  answers: Answers = 'small',
  toResponse?: (result: R, req: Req) => Res,
): void {
  const { mem, gate, answered } = budgetedReads(call, budget, answers);
  const seq = new Sequence();
  const slots: Slot<Req, Res, R>[] = [];
  // What each answer written and not yet handed over holds, in order: one callback releases them
  // all (writes complete in order), instead of a closure per answer.
  const writtenHeld = new Queue<number>();
  const releaseWritten = (): void => mem.release(writtenHeld.shift()!);
  let head = 0;
  let inputEnded = false;
  let finished = false;
  let readPaused = false;
  let waitingDrain = false;

  const finish = (err?: unknown): void => {
    if (finished) return;
    finished = true;
    seq.failed = true;
    if (err === undefined) call.end();
    else call.emit('error', err instanceof DecodeFailure ? decodeError(err) : toServiceError(err));
  };

  const flush = (): void => {
    while (head < slots.length && !finished) {
      const slot = slots[head]!;
      if (!slot.done) break;
      slots[head++] = undefined as never;
      if (slot.err !== null && slot.err !== undefined) {
        mem.release(slot.held);
        finish(slot.err);
        return;
      }
      writtenHeld.push(slot.held);
      if (!call.write(slot.res as Res, releaseWritten)) waitingDrain = true;
    }
    if (head === slots.length) {
      slots.length = 0;
      head = 0;
    }
    if (finished) return;
    if (inputEnded && slots.length === 0) {
      finish();
      return;
    }
    const shouldPause = waitingDrain || slots.length - head >= HIGH_WATER;
    if (shouldPause !== readPaused) {
      readPaused = shouldPause;
      gate.setPaused(shouldPause);
    }
  };

  call.on('drain', () => {
    waitingDrain = false;
    flush();
  });
  // The store's answer to one slot (shared by the stream's slots: no closure per request).
  const settled = (slot: Slot<Req, Res, R>, err: StoreError | null, result?: R): void => {
    slot.done = true;
    slot.err = err;
    const res = toResponse && (err === null || err === undefined) ? toResponse(result as R, slot.req!) : result;
    slot.res = res as Res | undefined;
    slot.req = undefined;
    if (err === null || err === undefined) {
      // The request is done with; from now on the answer is what this slot holds.
      const bytes = answerBytes(res);
      answered(bytes);
      mem.adjust(bytes - slot.held);
      slot.held = bytes;
    }
    if (slot === slots[head]) flush();
  };
  call.on('data', (req: Req | DecodeFailure) => {
    const held = gate.take();
    if (finished || inputEnded) {
      mem.release(held);
      return;
    }
    const slot = new Slot<Req, Res, R>(settled, req instanceof DecodeFailure ? undefined : req, held);
    slots.push(slot);
    if (req instanceof DecodeFailure) {
      // Nothing after a malformed message is applied.
      inputEnded = true;
      slot.done = true;
      slot.err = req;
      flush();
      return;
    }
    handle(req, slot, seq);
    if (slots.length - head >= HIGH_WATER && !readPaused) flush();
  });
  call.on('end', () => {
    inputEnded = true;
    flush();
  });
  call.on('cancelled', () => {
    finished = true;
    seq.failed = true;
  });
  call.on('error', () => {
    finished = true;
    seq.failed = true;
  });
}

/**
 * Serves a client stream whose answer is a fold over per-request values (Eq/NotEq). `decide`
 * returns the final answer as soon as it is known; `fallback` is the answer at end of stream.
 */
export function serveFold<Req, V>(
  call: ServerReadableStream<Req | DecodeFailure, boolean>,
  budget: MemoryBudget,
  callback: sendUnaryData<boolean>,
  lookup: (req: Req, reply: Done<V>, seq: Sequence) => void,
  decide: (value: V) => boolean | undefined,
  fallback: () => boolean,
): void {
  const { mem, gate, answered: looked } = budgetedReads(call, budget, 'data');
  const seq = new Sequence();
  let pending = 0;
  let inputEnded = false;
  let answered = false;
  const answer = (err: unknown, value?: boolean): void => {
    if (answered) return;
    answered = true;
    seq.failed = true;
    if (err !== null && err !== undefined) {
      callback((err instanceof DecodeFailure ? decodeError(err) : toServiceError(err)) as ServiceError);
    } else {
      callback(null, value);
    }
    // Stop reading: the rest of the stream cannot change the answer (and is not counted: it is
    // dropped as it arrives).
    gate.stop();
    mem.close();
    call.removeAllListeners('data');
    call.resume();
  };
  call.on('data', (req: Req | DecodeFailure) => {
    const held = gate.take();
    if (answered) return;
    if (req instanceof DecodeFailure) {
      mem.release(held);
      // Answer after the lookups already under way (they may still decide `false` first).
      inputEnded = true;
      pendingFailure = req;
      if (pending === 0) answer(req);
      return;
    }
    pending++;
    lookup(
      req,
      (err, value) => {
        pending--;
        if (!err) looked(answerBytes(value));
        mem.release(held);
        if (answered) return;
        if (err) return answer(err);
        const verdict = decide(value as V);
        if (verdict !== undefined) return answer(null, verdict);
        if (pending === 0 && inputEnded) answer(pendingFailure ?? null, pendingFailure ? undefined : fallback());
      },
      seq,
    );
  });
  let pendingFailure: DecodeFailure | undefined;
  call.on('end', () => {
    inputEnded = true;
    if (pending === 0) answer(pendingFailure ?? null, pendingFailure ? undefined : fallback());
  });
  call.on('cancelled', () => {
    answered = true;
    seq.failed = true;
  });
  call.on('error', () => {
    answered = true;
    seq.failed = true;
  });
}

/** Eq / NotEq over a stream of keys or ids: values compared by hash as they come. */
export function serveEquality<Req, V extends string | Uint8Array>(
  call: ServerReadableStream<Req | DecodeFailure, boolean>,
  budget: MemoryBudget,
  callback: sendUnaryData<boolean>,
  mode: EqualityMode,
  lookup: (req: Req, reply: Done<V>, seq: Sequence) => void,
): void {
  const check = new EqualityCheck(mode);
  serveFold(
    call,
    budget,
    callback,
    lookup,
    (value: V) => check.add(value),
    () => check.finish(),
  );
}
