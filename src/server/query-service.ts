/** Query gRPC handlers: raw SQL, rows streamed as they are read (with backpressure). */
import type { EventEmitter } from 'node:events';
import type { ServerDuplexStream, ServiceError, UntypedServiceImplementation } from '@grpc/grpc-js';
import { invalidArgument } from '../errors.js';
import { type QueryResult, type RawQuery, type RowsChanged, TargetStore } from '../generated/query.js';
import type { QueryStore, Target } from '../store/query-store.js';
import { packValue } from './any-values.js';
import { DecodeFailure } from './codec.js';
import { type CallBudget, MemoryBudget } from './memory-budget.js';
import { answerBytes, MESSAGE_OVERHEAD } from './message-size.js';
import { ReadGate } from './read-gate.js';
import { decodeError, openCallBudget, toServiceError } from './stream-handler.js';

function targetOf(req: RawQuery): Target {
  if (req.target === TargetStore.KV) return 'kv';
  if (req.target === TargetStore.BLOB) return 'blob';
  throw invalidArgument(`unknown target store ${req.target}; use KV (0) or BLOB (1)`);
}

/** Resolves when the client has read what we wrote, or the call is gone. */
export function writable(call: EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      call.off('close', done);
      call.off('cancelled', done);
      resolve();
    };
    call.on('drain', done);
    call.on('close', done);
    call.on('cancelled', done);
  });
}

/** Writes one answer that holds `held` bytes of the budget until it is written to the transport. */
type Write<Res> = (res: Res, held: number) => Promise<void>;

/**
 * Handles one RawQuery at a time: the next request is read only when the previous one is done
 * (ReadGate paused meanwhile), and each answer counts in the memory budget until written.
 * (The readable side is driven by events: grpc-js server streams do not end an async iterator.)
 */
function serveSequential<Res>(
  call: ServerDuplexStream<RawQuery | DecodeFailure, Res>,
  budget: MemoryBudget,
  each: (req: RawQuery, write: Write<Res>, mem: CallBudget) => Promise<void>,
): void {
  const mem = openCallBudget(call, budget);
  // A request holds its own size until its turn comes.
  const gate = new ReadGate(call, mem, (bytes) => bytes);
  const queue: { req: RawQuery | DecodeFailure; held: number }[] = [];
  let busy = false;
  let inputEnded = false;
  let finished = false;
  const write: Write<Res> = async (res, held) => {
    if (!call.write(res, () => mem.release(held))) await writable(call);
  };
  const fail = (err: Partial<ServiceError>): void => {
    finished = true;
    call.emit('error', err);
  };
  const pump = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      while (queue.length > 0 && !finished && !call.cancelled) {
        const { req, held } = queue.shift()!;
        mem.release(held);
        if (req instanceof DecodeFailure) return fail(decodeError(req));
        await each(req, write, mem);
      }
      if (inputEnded && queue.length === 0 && !finished && !call.cancelled) {
        finished = true;
        call.end();
      }
    } catch (err) {
      if (!call.cancelled) fail(toServiceError(err));
    } finally {
      busy = false;
      if (!finished) gate.setPaused(false);
    }
  };
  call.on('data', (req: RawQuery | DecodeFailure) => {
    queue.push({ req, held: gate.take() });
    gate.setPaused(true);
    void pump();
  });
  call.on('end', () => {
    inputEnded = true;
    void pump();
  });
  call.on('cancelled', () => {
    finished = true;
  });
}

/**
 * Streams `rows` as answers, reading the next row only once the budget has room for it (about the
 * size of the row before), so a slow reader holds at most the per-stream cap of rows.
 */
async function streamRows<Row, Res>(
  call: ServerDuplexStream<unknown, unknown>,
  rows: AsyncIterable<Row>,
  toAnswer: (row: Row) => Res,
  write: Write<Res>,
  mem: CallBudget,
): Promise<void> {
  const it = rows[Symbol.asyncIterator]();
  let guess = MESSAGE_OVERHEAD;
  let complete = false;
  try {
    for (;;) {
      if (!mem.tryAcquire(guess)) await mem.acquire(guess);
      if (call.cancelled) break;
      // Until the row is read, `guess` stands for it; then its real size does.
      let next: IteratorResult<Row>;
      try {
        next = await it.next();
      } catch (err) {
        mem.release(guess);
        complete = true; // a generator that threw is already finished
        throw err;
      }
      if (next.done) {
        mem.release(guess);
        complete = true;
        break;
      }
      const res = toAnswer(next.value);
      const bytes = answerBytes(res);
      mem.adjust(bytes - guess);
      guess = bytes;
      await write(res, guess);
    }
  } finally {
    if (!complete) await it.return?.();
  }
}

export function queryService(
  store: QueryStore,
  budget: MemoryBudget = new MemoryBudget(),
): UntypedServiceImplementation {
  return {
    query: (call: ServerDuplexStream<RawQuery | DecodeFailure, QueryResult>) =>
      serveSequential(call, budget, (req, write, mem) =>
        streamRows(call, store.query(req.query, targetOf(req)), (row) => ({ fields: row.map(packValue) }), write, mem),
      ),

    execute: (call: ServerDuplexStream<RawQuery | DecodeFailure, RowsChanged>) =>
      serveSequential(call, budget, async (req, write, mem) => {
        const changed = await store.execute(req.query, targetOf(req));
        const res = { rowsChanged: BigInt(changed) };
        const held = answerBytes(res);
        mem.charge(held);
        await write(res, held);
      }),
  };
}
