/** Puts buffdb's three services on a grpc-js Server — yours, or one we create. */
import { Server, ServerCredentials, type ServerOptions, type ServiceDefinition } from '@grpc/grpc-js';
import { DEFAULT_ADDR, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MEMORY_BUDGET } from '../defaults.js';
import type { BuffDb } from '../store/buffdb.js';
import { blobService } from './blob-service.js';
import { BlobDefinition, KvDefinition, QueryDefinition } from './definitions.js';
import { kvService } from './kv-service.js';
import { MemoryBudget } from './memory-budget.js';
import { queryService } from './query-service.js';
import { type TransactionService, transactionService } from './transaction-service.js';

export { DEFAULT_ADDR, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MEMORY_BUDGET, MemoryBudget };

export interface ServeOptions {
  /** Defaults to real transactions over `db.transactions` (docs/transactions.md). */
  transactions?: TransactionService;
  /**
   * Request and response data held across all calls, in bytes (default 256 MiB), or a
   * MemoryBudget to share with other services. Past it the server stops reading from clients.
   */
  memoryBudget?: number | MemoryBudget;
}

/**
 * Adds the Kv, Blob and Query services (backed by `db`) to an existing grpc-js server; returns the
 * memory budget they share.
 */
export function addBuffDbServices(server: Server, db: BuffDb, options: ServeOptions = {}): MemoryBudget {
  const budget =
    options.memoryBudget instanceof MemoryBudget ? options.memoryBudget : new MemoryBudget(options.memoryBudget);
  server.addService(
    KvDefinition as unknown as ServiceDefinition,
    kvService(db.kv, options.transactions ?? transactionService(db.transactions), budget),
  );
  server.addService(BlobDefinition as unknown as ServiceDefinition, blobService(db.blob, budget));
  server.addService(QueryDefinition as unknown as ServiceDefinition, queryService(db.query, budget));
  return budget;
}

export interface StartOptions extends ServeOptions {
  addr?: string;
  maxMessageSize?: number;
  grpcOptions?: ServerOptions;
}

export interface RunningServer {
  server: Server;
  /** The address actually bound (with the real port when 0 was asked for). */
  addr: string;
  port: number;
  /** What the calls hold now (`used`), at most (`limit`), and the most so far (`peak`). */
  memoryBudget: MemoryBudget;
  /**
   * Stops accepting calls, lets in-flight streams finish (at most `graceMs`), commits everything
   * queued, then closes the stores.
   */
  shutdown(graceMs?: number): Promise<void>;
}

function withPort(addr: string, port: number): string {
  const i = addr.lastIndexOf(':');
  return `${addr.slice(0, i)}:${port}`;
}

export async function startServer(db: BuffDb, options: StartOptions = {}): Promise<RunningServer> {
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  const server = new Server({
    'grpc.max_receive_message_length': maxMessageSize,
    'grpc.max_send_message_length': maxMessageSize,
    ...options.grpcOptions,
  });
  const memoryBudget = addBuffDbServices(server, db, options);
  const addr = options.addr ?? DEFAULT_ADDR;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(addr, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs = 10_000): Promise<void> => {
    stopping ??= (async () => {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await db.close();
    })();
    return stopping;
  };
  return { server, addr: withPort(addr, port), port, memoryBudget, shutdown };
}
