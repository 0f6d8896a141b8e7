/** buffdb as a library. See the README's "Library" section. */

export { Authenticator, type AuthFile, AuthFileSource, hashToken, newToken } from './auth/auth-file.js';
export { type Grant, type Principal, SERVICES as PERMISSION_SERVICES } from './auth/permissions.js';
export type {
  Backend,
  BackendCapabilities,
  BlobEngineOps,
  BlobOps,
  BlobRecord,
  Durability,
  KvEngineOps,
  KvOps,
  KvRecord,
  MapName,
  MapOps,
  OpenOptions,
  RangeQuery,
  SqlOps,
  SqlValue,
  StoreEngine,
} from './backends/backend.js';
export { BLOB_MAPS, KV_MAPS } from './backends/backend.js';
export { BACKEND_NAMES, type BackendImpl, type BackendName, DEFAULT_BACKEND, loadBackend } from './backends/index.js';
export {
  type BlobTransfer,
  blobTransfer,
  type DownloadOptions,
  type DownloadStream,
  downloadBlob,
  type UploadOptions,
  type UploadResult,
  type UploadSource,
  uploadBlob,
} from './client/blob-transfer.js';
export { connectEtcd, type EtcdClients } from './client/etcd.js';
export {
  BlobClientCtor,
  type BuffDbClients,
  type ConnectOptions,
  connect,
  KvClientCtor,
  QueryClientCtor,
} from './client/network.js';
export { openTransitive, type TransitiveClients, transitiveClients } from './client/transitive.js';
export { DEFAULT_TRANSACTION_TIMEOUT_MS } from './defaults.js';
export { NotFoundError, StoreError, status } from './errors.js';
export * as blob from './generated/blob.js';
/** The etcd v3 API messages and clients (etcdserverpb); key-values and events are in `etcdKv`. */
export * as etcd from './generated/etcd/etcdserverpb/rpc.js';
export * as etcdKv from './generated/etcd/mvccpb/kv.js';
export * as kv from './generated/kv.js';
export * as query from './generated/query.js';
export { packValue, unpackValue } from './server/any-values.js';
export { type AuthSource, authInterceptor } from './server/auth-interceptor.js';
export { BlobDefinition, KvDefinition, QueryDefinition } from './server/definitions.js';
export type { EtcdOptions } from './server/etcd/services.js';
export type { HealthStatus } from './server/health.js';
export type { Logger } from './server/logger.js';
export { CallBudget, MemoryBudget, type MemoryBudgetOptions } from './server/memory-budget.js';
export type { Metrics, MetricsServer } from './server/metrics.js';
export { type ObserveOptions, observeCalls } from './server/observe.js';
export {
  addBuffDbServices,
  DEFAULT_ADDR,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_MEMORY_BUDGET,
  type RunningServer,
  SERVICE_NAMES,
  type ServeOptions,
  type StartOptions,
  startServer,
  WindowShare,
  widenWindows,
} from './server/server.js';
export { ReloadableTls, type TlsFiles } from './server/tls.js';
export {
  type TransactionService,
  transactionService,
  unimplementedTransactions,
} from './server/transaction-service.js';
export { type BlobId, BlobStore, type BlobUpdate } from './store/blob/blob-store.js';
export { BuffDb, type BuffDbOptions, DEFAULT_BLOB_STORE, DEFAULT_KV_STORE } from './store/buffdb.js';
export type { KvEvent } from './store/kv/history.js';
export { etcdSpan, type KeySpan, prefixSpan, singleKey } from './store/kv/key-span.js';
export type * from './store/kv/kv-api.js';
export { type AutoCompact, KvStore } from './store/kv/kv-store.js';
export type { WatchSink, WatchSpec } from './store/kv/watch-hub.js';
export { QueryStore, type Target } from './store/query-store.js';
export { type BeginOptions, TransactionManager } from './store/transactions/manager.js';
export { Transaction } from './store/transactions/transaction.js';
