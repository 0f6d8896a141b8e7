/**
 * Defaults from the wire contract and the CLI spec, in a module with no imports so the CLI and the
 * network client can use them without loading the server or the store.
 */
export const DEFAULT_ADDR = '[::1]:50051';
export const DEFAULT_KV_STORE = 'kv_store.db';
export const DEFAULT_BLOB_STORE = 'blob_store.db';
/** 64 MiB: big enough for large blobs in one message; configurable with --max-message-size. */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;
/**
 * 256 MiB: request and response data the server holds across all calls before it stops reading
 * (`--memory-budget`; spec blob-streams.md, "Memory").
 */
export const DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024;
