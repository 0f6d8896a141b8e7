/** buffdb as a library. See the README's "Library" section. */

export { Authenticator, type AuthFile, AuthFileSource, hashToken, newToken } from './auth/auth-file.js';
export { type Grant, type Principal, SERVICES as PERMISSION_SERVICES } from './auth/permissions.js';
export type {
  Backend,
  BackendCapabilities,
  BlobOps,
  BlobRecord,
  Durability,
  KvOps,
  OpenOptions,
  SqlOps,
  SqlValue,
  StoreEngine,
} from './backends/backend.js';
export { BACKEND_NAMES, type BackendName, DEFAULT_BACKEND, loadBackend } from './backends/index.js';
export {
  BlobClientCtor,
  type BuffDbClients,
  type ConnectOptions,
  connect,
  KvClientCtor,
  QueryClientCtor,
} from './client/network.js';
export { openTransitive, type TransitiveClients, transitiveClients } from './client/transitive.js';
export * as blob from './generated/blob.js';
export * as kv from './generated/kv.js';
export * as query from './generated/query.js';
export { packValue, unpackValue } from './server/any-values.js';
export { type AuthSource, authInterceptor } from './server/auth-interceptor.js';
export { BlobDefinition, KvDefinition, QueryDefinition } from './server/definitions.js';
export type { HealthStatus } from './server/health.js';
export type { Logger } from './server/logger.js';
export type { Metrics, MetricsServer } from './server/metrics.js';
export { type ObserveOptions, observeCalls } from './server/observe.js';
export {
  addBuffDbServices,
  DEFAULT_ADDR,
  DEFAULT_MAX_MESSAGE_SIZE,
  type RunningServer,
  SERVICE_NAMES,
  type StartOptions,
  startServer,
} from './server/server.js';
export { ReloadableTls, type TlsFiles } from './server/tls.js';
export {
  type TransactionService,
  transactionService,
  unimplementedTransactions,
} from './server/transaction-service.js';
export { type BlobId, BlobStore, type BlobUpdate } from './store/blob-store.js';
export { BuffDb, type BuffDbOptions, DEFAULT_BLOB_STORE, DEFAULT_KV_STORE } from './store/buffdb.js';
export { NotFoundError, StoreError } from './store/errors.js';
export { KvStore } from './store/kv-store.js';
export { QueryStore, type Target } from './store/query-store.js';
export {
  type BeginOptions,
  DEFAULT_TRANSACTION_TIMEOUT_MS,
  Transaction,
  TransactionManager,
} from './store/transactions.js';
