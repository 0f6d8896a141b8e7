/** Query gRPC handlers: raw SQL, rows streamed as they are read (with backpressure). */
import type { EventEmitter } from 'node:events';
import type { ServerDuplexStream, ServiceError, UntypedServiceImplementation } from '@grpc/grpc-js';
import { type QueryResult, type RawQuery, type RowsChanged, TargetStore } from '../generated/query.js';
import { invalidArgument } from '../store/errors.js';
import type { QueryStore, Target } from '../store/query-store.js';
import { packValue } from './any-values.js';
import { DecodeFailure } from './codec.js';
import { decodeError, toServiceError } from './stream-handler.js';

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

/**
 * Handles one RawQuery at a time: reading pauses while a query's rows are being written.
 * (The readable side is driven by events: grpc-js server streams do not end an async iterator.)
 */
function serveSequential<Res>(
  call: ServerDuplexStream<RawQuery | DecodeFailure, Res>,
  each: (req: RawQuery, write: (res: Res) => Promise<void>) => Promise<void>,
): void {
  const queue: (RawQuery | DecodeFailure)[] = [];
  let busy = false;
  let inputEnded = false;
  let finished = false;
  const write = async (res: Res): Promise<void> => {
    if (!call.write(res)) await writable(call);
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
        const req = queue.shift()!;
        if (req instanceof DecodeFailure) return fail(decodeError(req));
        call.pause();
        await each(req, write);
        if (!finished) call.resume();
      }
      if (inputEnded && queue.length === 0 && !finished && !call.cancelled) {
        finished = true;
        call.end();
      }
    } catch (err) {
      if (!call.cancelled) fail(toServiceError(err));
    } finally {
      busy = false;
    }
  };
  call.on('data', (req: RawQuery | DecodeFailure) => {
    queue.push(req);
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

export function queryService(store: QueryStore): UntypedServiceImplementation {
  return {
    query: (call: ServerDuplexStream<RawQuery | DecodeFailure, QueryResult>) =>
      serveSequential(call, async (req, write) => {
        for await (const row of store.query(req.query, targetOf(req))) {
          if (call.cancelled) return;
          await write({ fields: row.map(packValue) });
        }
      }),

    execute: (call: ServerDuplexStream<RawQuery | DecodeFailure, RowsChanged>) =>
      serveSequential(call, async (req, write) => {
        const changed = await store.execute(req.query, targetOf(req));
        await write({ rowsChanged: BigInt(changed) });
      }),
  };
}
