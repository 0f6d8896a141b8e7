/** buffdb as a library. See the README's "Library" section. */
export { BuffDb, DEFAULT_BLOB_STORE, DEFAULT_KV_STORE, type BuffDbOptions } from './store/buffdb.js';
export { KvStore } from './store/kv-store.js';
export { BlobStore, type BlobUpdate, type BlobId } from './store/blob-store.js';
export { QueryStore, type Target } from './store/query-store.js';
export { StoreError, NotFoundError } from './store/errors.js';
export { Transaction, TransactionManager, DEFAULT_TRANSACTION_TIMEOUT_MS, type BeginOptions } from './store/transactions.js';
export { transactionService, unimplementedTransactions, type TransactionService } from './server/transaction-service.js';
export { addBuffDbServices, startServer, DEFAULT_ADDR, DEFAULT_MAX_MESSAGE_SIZE, type RunningServer, type StartOptions } from './server/server.js';
export { KvDefinition, BlobDefinition, QueryDefinition } from './server/definitions.js';
export { packValue, unpackValue } from './server/any-values.js';
export { connect, KvClientCtor, BlobClientCtor, QueryClientCtor, type BuffDbClients, type ConnectOptions } from './client/network.js';
export { openTransitive, transitiveClients, type TransitiveClients } from './client/transitive.js';
export { loadBackend, BACKEND_NAMES, DEFAULT_BACKEND, type BackendName } from './backends/index.js';
export type { Backend, BackendCapabilities, BlobOps, BlobRecord, KvOps, SqlOps, SqlValue, StoreEngine, OpenOptions, Durability } from './backends/backend.js';
export * as kv from './generated/kv.js';
export * as blob from './generated/blob.js';
export * as query from './generated/query.js';
