/** buffdb's services, listed once: the gRPC server and the in-process client both take them from here. */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { BuffDb } from '../store/buffdb.js';
import { blobService } from './blob-service.js';
import { BlobDefinition, KvDefinition, QueryDefinition } from './definitions.js';
import { type EtcdOptions, etcdServices } from './etcd/services.js';
import { kvService } from './kv-service.js';
import { MemoryBudget } from './memory-budget.js';
import type { Metrics } from './metrics.js';
import { queryService } from './query-service.js';
import { type TransactionService, transactionService } from './transaction-service.js';

export interface ServeOptions {
  /** Defaults to real transactions over `db.transactions` (docs/transactions.md). */
  transactions?: TransactionService;
  /** The etcd v3 services served beside buffdb's own (docs/etcd.md). */
  etcd?: EtcdOptions;
  /**
   * Request and response data held across all calls, in bytes (default 256 MiB), or a
   * MemoryBudget to share with other services. Past it the server stops reading from clients.
   */
  memoryBudget?: number | MemoryBudget;
  /** Count the bytes of every message in these metrics. */
  metrics?: Metrics;
}

/** The budget `options` name, or a new one. */
export function memoryBudgetOf(options: ServeOptions): MemoryBudget {
  return options.memoryBudget instanceof MemoryBudget ? options.memoryBudget : new MemoryBudget(options.memoryBudget);
}

export interface ServiceEntry {
  /** The client name (`kv`, `blob`, `query`, `etcdKv`, …). */
  name: string;
  definition: Record<string, { path: string; requestStream: boolean; responseStream: boolean }>;
  implementation: UntypedServiceImplementation;
}

/** The services over `db`; `budget` is the memory budget their calls share. */
export function buffDbServices(
  db: BuffDb,
  options: ServeOptions = {},
  budget = memoryBudgetOf(options),
): ServiceEntry[] {
  return [
    {
      name: 'kv',
      definition: KvDefinition,
      implementation: kvService(db, options.transactions ?? transactionService(db.transactions), budget),
    },
    { name: 'blob', definition: BlobDefinition, implementation: blobService(db, budget) },
    { name: 'query', definition: QueryDefinition, implementation: queryService(db.query, budget) },
    ...etcdServices(db, options.etcd, budget),
  ];
}
