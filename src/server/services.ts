/** buffdb's services, listed once: the gRPC server and the in-process client both take them from here. */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { BuffDb } from '../store/buffdb.js';
import { blobService } from './blob-service.js';
import { BlobDefinition, KvDefinition, QueryDefinition } from './definitions.js';
import { type EtcdOptions, etcdServices } from './etcd/services.js';
import { kvService } from './kv-service.js';
import { queryService } from './query-service.js';
import { type TransactionService, transactionService } from './transaction-service.js';

export interface ServeOptions {
  /** Defaults to real transactions over `db.transactions` (docs/transactions.md). */
  transactions?: TransactionService;
  /** The etcd v3 services served beside buffdb's own (docs/etcd.md). */
  etcd?: EtcdOptions;
}

export interface ServiceEntry {
  /** The client name (`kv`, `blob`, `query`, `etcdKv`, …). */
  name: string;
  definition: Record<string, { path: string; requestStream: boolean; responseStream: boolean }>;
  implementation: UntypedServiceImplementation;
}

export function buffDbServices(db: BuffDb, options: ServeOptions = {}): ServiceEntry[] {
  return [
    {
      name: 'kv',
      definition: KvDefinition,
      implementation: kvService(db, options.transactions ?? transactionService(db.transactions)),
    },
    { name: 'blob', definition: BlobDefinition, implementation: blobService(db) },
    { name: 'query', definition: QueryDefinition, implementation: queryService(db.query) },
    ...etcdServices(db, options.etcd),
  ];
}
