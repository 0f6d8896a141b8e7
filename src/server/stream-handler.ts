/**
 * The two shapes every buffdb RPC has, written once: a bidi stream answered 1:1 in order, and a
 * client stream folded into one answer (Eq/NotEq). Requests are handed to the store as they arrive
 * (so a stream is pipelined and group-committed); answers go out in request order; the first
 * error ends the stream after the answers before it.
 */
import type { ServerDuplexStream, ServerReadableStream, ServiceError, sendUnaryData } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { toStoreError } from '../store/errors.js';
import { type Done, Sequence } from '../store/group-commit.js';
import { DecodeFailure } from './codec.js';

/** Requests in flight per stream before we stop reading from the client (backpressure). */
const HIGH_WATER = 4096;

export function toServiceError(err: unknown): Partial<ServiceError> {
  const e = toStoreError(err);
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

interface Slot<Res> {
  done: boolean;
  err: unknown;
  res: Res | undefined;
}

/**
 * Serves a bidi stream: `handle` is called for each request, in order, and must call `reply`
 * exactly once (possibly later, after commit). Replies are written in request order.
 */
export function serveBidi<Req, Res>(
  call: ServerDuplexStream<Req | DecodeFailure, Res>,
  handle: (req: Req, reply: Done<Res>, seq: Sequence) => void,
): void {
  const seq = new Sequence();
  const slots: Slot<Res>[] = [];
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
        finish(slot.err);
        return;
      }
      if (!call.write(slot.res as Res)) waitingDrain = true;
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
    if (shouldPause && !readPaused) {
      readPaused = true;
      call.pause();
    } else if (!shouldPause && readPaused) {
      readPaused = false;
      call.resume();
    }
  };

  call.on('drain', () => {
    waitingDrain = false;
    flush();
  });
  call.on('data', (req: Req | DecodeFailure) => {
    if (finished || inputEnded) return;
    const slot: Slot<Res> = { done: false, err: null, res: undefined };
    slots.push(slot);
    if (req instanceof DecodeFailure) {
      // Nothing after a malformed message is applied.
      inputEnded = true;
      slot.done = true;
      slot.err = req;
      flush();
      return;
    }
    handle(
      req,
      (err, res) => {
        slot.done = true;
        slot.err = err;
        slot.res = res;
        if (slot === slots[head]) flush();
      },
      seq,
    );
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
  callback: sendUnaryData<boolean>,
  lookup: (req: Req, reply: Done<V>, seq: Sequence) => void,
  decide: (value: V) => boolean | undefined,
  fallback: () => boolean,
): void {
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
    // Stop reading: the rest of the stream cannot change the answer.
    call.removeAllListeners('data');
    call.resume();
  };
  call.on('data', (req: Req | DecodeFailure) => {
    if (answered) return;
    if (req instanceof DecodeFailure) {
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
