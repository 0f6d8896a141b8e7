/**
 * The transitive client: the same methods and message types as the gRPC clients, served by the
 * same handlers, with no network in between — for apps that embed buffdb in-process.
 */

import { Metadata, type ServiceError, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { BlobClient } from '../generated/blob.js';
import type { KvClient } from '../generated/kv.js';
import type { QueryClient } from '../generated/query.js';
import { buffDbServices } from '../server/services.js';
import { type TransactionService, transactionService } from '../server/transaction-service.js';
import { BuffDb, type BuffDbOptions } from '../store/buffdb.js';
import { type BlobTransfer, blobTransfer } from './blob-transfer.js';
import { ClientCall, serviceError } from './in-process-call.js';

type Impl = UntypedServiceImplementation;
type Definition = Record<string, { requestStream: boolean; responseStream: boolean }>;
type Callback = (err: ServiceError | null, value?: unknown) => void;

function makeClient<T>(definition: Definition, impl: Impl): T {
  const client: Record<string, unknown> = {};
  for (const [name, m] of Object.entries(definition)) {
    const handler = impl[name] as (...args: unknown[]) => void;
    if (m.requestStream && m.responseStream) {
      client[name] = () => {
        const call = new ClientCall();
        handler(call.server);
        return call;
      };
    } else if (m.responseStream) {
      // Server streaming (Download): one request, a stream of answers.
      client[name] = (request: unknown) => {
        const call = new ClientCall();
        Object.assign(call.server, { request });
        queueMicrotask(() => handler(call.server));
        return call;
      };
    } else if (m.requestStream) {
      client[name] = (...args: unknown[]) => {
        const call = new ClientCall(args[args.length - 1] as Callback);
        handler(call.server, (err: Partial<ServiceError> | null, value: unknown) =>
          call.answer(err ? serviceError(err) : null, value),
        );
        return call;
      };
    } else {
      client[name] = (request: unknown, ...args: unknown[]) => {
        const callback = args[args.length - 1] as Callback;
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

/** The clients, plus `upload` / `download` of large blobs over the Blob client. */
export interface TransitiveClients extends BlobTransfer {
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
  const clients: Record<string, unknown> = {};
  for (const s of buffDbServices(db, { transactions })) clients[s.name] = makeClient(s.definition, s.implementation);
  return { ...clients, ...blobTransfer(clients.blob as BlobClient) } as unknown as Omit<
    TransitiveClients,
    'close' | 'db'
  >;
}

/** Opens the stores in-process and returns clients for them: `const { kv } = await openTransitive()`. */
export async function openTransitive(options: BuffDbOptions = {}): Promise<TransitiveClients> {
  const db = await BuffDb.open(options);
  return { ...transitiveClients(db), db, close: () => db.close() };
}
