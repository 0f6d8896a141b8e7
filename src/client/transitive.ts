/**
 * The transitive client: the same methods and message types as the gRPC clients, served by the
 * same handlers, with no network in between — for apps that embed buffdb in-process.
 */

import { Duplex, type Writable } from 'node:stream';
import { Metadata, type ServiceError, status as Status, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { BlobClient } from '../generated/blob.js';
import type { KvClient } from '../generated/kv.js';
import type { QueryClient } from '../generated/query.js';
import { blobService } from '../server/blob-service.js';
import { BlobDefinition, KvDefinition, QueryDefinition } from '../server/definitions.js';
import { kvService } from '../server/kv-service.js';
import { MemoryBudget } from '../server/memory-budget.js';
import { queryService } from '../server/query-service.js';
import { type TransactionService, transactionService } from '../server/transaction-service.js';
import { BuffDb, type BuffDbOptions } from '../store/buffdb.js';

function serviceError(err: Partial<ServiceError>): ServiceError {
  const code = err.code ?? Status.UNKNOWN;
  const details = err.details ?? err.message ?? '';
  return Object.assign(new Error(`${code} ${Status[code]}: ${details}`), {
    code,
    details,
    metadata: err.metadata ?? new Metadata(),
  });
}

/** A linked pair: what one side writes, the other reads. */
function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  // Backpressure as over the network: a write completes only while the reader's buffer has room.
  const blocked: ((() => void) | null)[] = [null, null];
  const make = (self: number, other: number): Duplex =>
    new Duplex({
      objectMode: true,
      read() {
        const cb = blocked[self];
        if (cb) {
          blocked[self] = null;
          cb();
        }
      },
      write(chunk, _enc, cb) {
        if (sides[other]!.push(chunk)) cb();
        else blocked[other] = cb;
      },
      final(cb) {
        sides[other]!.push(null);
        cb();
      },
    });
  sides.push(make(0, 1), make(1, 0));
  return [sides[0]!, sides[1]!];
}

/** The server-side call object the handlers expect, linked to a client-side stream. */
function link(client: Duplex | Writable, server: Duplex, onError: (e: ServiceError) => void): void {
  const call = server as Duplex & { cancelled: boolean; metadata: Metadata; getPeer(): string };
  call.cancelled = false;
  call.metadata = new Metadata();
  call.getPeer = () => 'in-process';
  server.on('error', (e: Partial<ServiceError>) => {
    if (!call.cancelled) onError(serviceError(e));
  });
  client.on('close', () => {
    if (!server.writableFinished && !server.writableEnded) {
      call.cancelled = true;
      server.emit('cancelled');
    }
  });
}

type Impl = UntypedServiceImplementation;
type Definition = Record<string, { requestStream: boolean; responseStream: boolean }>;

function makeClient<T>(definition: Definition, impl: Impl): T {
  const client: Record<string, unknown> = {};
  for (const [name, m] of Object.entries(definition)) {
    const handler = impl[name] as (...args: unknown[]) => void;
    if (m.requestStream && m.responseStream) {
      client[name] = () => {
        const [clientSide, serverSide] = duplexPair();
        link(clientSide, serverSide, (e) => clientSide.destroy(e));
        setImmediate(() => handler(serverSide));
        return Object.assign(clientSide, { cancel: () => clientSide.destroy(), getPeer: () => 'in-process' });
      };
    } else if (m.requestStream) {
      client[name] = (...args: unknown[]) => {
        const callback = args[args.length - 1] as (err: ServiceError | null, value?: unknown) => void;
        const [clientSide, serverSide] = duplexPair();
        let answered = false;
        const answer = (err: ServiceError | null, value?: unknown): void => {
          if (answered) return;
          answered = true;
          callback(err, value);
        };
        link(clientSide, serverSide, (e) => answer(e));
        setImmediate(() =>
          handler(serverSide, (err: Partial<ServiceError> | null, value: unknown) =>
            answer(err ? serviceError(err) : null, value),
          ),
        );
        return Object.assign(clientSide, { cancel: () => clientSide.destroy(), getPeer: () => 'in-process' });
      };
    } else {
      client[name] = (request: unknown, ...args: unknown[]) => {
        const callback = args[args.length - 1] as (err: ServiceError | null, value?: unknown) => void;
        const call = { request, metadata: new Metadata(), cancelled: false, getPeer: () => 'in-process' };
        setImmediate(() =>
          handler(call, (err: Partial<ServiceError> | null, value: unknown) =>
            callback(err ? serviceError(err) : null, value),
          ),
        );
        return { cancel() {} };
      };
    }
  }
  client.close = () => {};
  return client as T;
}

export interface TransitiveClients {
  kv: KvClient;
  blob: BlobClient;
  query: QueryClient;
  db: BuffDb;
  /** Commits what is queued and closes the stores. */
  close(): Promise<void>;
}

/** Clients over an already open BuffDb. */
export function transitiveClients(
  db: BuffDb,
  transactions: TransactionService = transactionService(db.transactions),
): Omit<TransitiveClients, 'close' | 'db'> {
  const budget = new MemoryBudget();
  return {
    kv: makeClient<KvClient>(KvDefinition, kvService(db.kv, transactions, budget)),
    blob: makeClient<BlobClient>(BlobDefinition, blobService(db.blob, budget)),
    query: makeClient<QueryClient>(QueryDefinition, queryService(db.query, budget)),
  };
}

/** Opens the stores in-process and returns clients for them: `const { kv } = await openTransitive()`. */
export async function openTransitive(options: BuffDbOptions = {}): Promise<TransitiveClients> {
  const db = await BuffDb.open(options);
  return { ...transitiveClients(db), db, close: () => db.close() };
}
