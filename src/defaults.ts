/**
 * Defaults from the wire contract and the CLI spec, in a module with no imports so the CLI and the
 * network client can use them without loading the server or the store.
 */
export const DEFAULT_ADDR = '[::1]:50051';
export const DEFAULT_KV_STORE = 'kv_store.db';
export const DEFAULT_BLOB_STORE = 'blob_store.db';
/** 64 MiB: big enough for large blobs in one message; configurable with --max-message-size. */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;
/** Lifetime of a transaction begun without timeout_ms (--transaction-timeout). */
export const DEFAULT_TRANSACTION_TIMEOUT_MS = 30_000;
/**
 * After the connection that began a transaction closes, the transaction is rolled back unless its
 * id is used again within this many ms (clients that open a connection per call keep working).
 */
export const DEFAULT_DISCONNECT_GRACE_MS = 2_000;
/** How long in-flight streams get to finish after SIGINT/SIGTERM (BUFFDB_SHUTDOWN_GRACE_MS). */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** History kept by default: the last this many revisions (--auto-compact). */
export const DEFAULT_AUTO_COMPACT_REVISIONS = 100_000;
/** Largest etcd write request (etcd's --max-request-bytes, 1.5 MiB; --etcd-max-request-bytes). */
export const DEFAULT_ETCD_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
/** gRPC framing allowed on top of an etcd request (etcd's grpcOverheadBytes). */
export const ETCD_GRPC_OVERHEAD_BYTES = 512 * 1024;
/** How often idle etcd watchers that asked get a progress notification (etcd: 10 minutes). */
export const DEFAULT_ETCD_PROGRESS_NOTIFY_MS = 10 * 60 * 1000;
/**
 * 256 MiB: request and response data the server holds across all calls before it stops reading
 * (`--memory-budget`; spec blob-streams.md, "Memory").
 */
export const DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024;
/**
 * 50%: how far `buffdb run`'s JS heap may grow past what a full collection left live before the next
 * one (`--heap-growth`; V8's own rule allows up to 300%). Measured in docs/performance.md.
 */
export const DEFAULT_HEAP_GROWTH_PERCENT = 50;
/**
 * 16 MiB: the most `buffdb run` lets V8's young generation (new space) grow to (`--young-heap`;
 * V8's own maximum is 32 MiB). Measured in docs/performance.md ("Young generation").
 */
export const DEFAULT_YOUNG_HEAP_MIB = 16;

/** 30 days: history a sync peer has not received is kept this long after it was last seen (`--sync-max-offline`). */
export const DEFAULT_SYNC_MAX_OFFLINE_MS = 30 * 24 * 3600 * 1000;
