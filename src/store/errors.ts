/**
 * Errors the store raises. Each carries the gRPC status code it maps to, so the server, the
 * transitive client and the CLI all report the same thing the same way.
 */

/**
 * gRPC status codes (the numbers are fixed by gRPC). Defined here rather than imported from
 * grpc-js so the CLI can use the store without loading the gRPC stack.
 */
export const status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type StatusCode = (typeof status)[keyof typeof status];

export class StoreError extends Error {
  constructor(
    readonly code: StatusCode,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

export class NotFoundError extends StoreError {
  constructor(message: string) {
    super(status.NOT_FOUND, message);
    this.name = 'NotFoundError';
  }
}

export const keyNotFound = (key: string): NotFoundError => new NotFoundError(`key not found: ${JSON.stringify(key)}`);
export const idNotFound = (id: bigint | number): NotFoundError => new NotFoundError(`blob id not found: ${id}`);

export const invalidArgument = (message: string): StoreError => new StoreError(status.INVALID_ARGUMENT, message);
export const failedPrecondition = (message: string): StoreError => new StoreError(status.FAILED_PRECONDITION, message);
export const unimplemented = (message: string): StoreError => new StoreError(status.UNIMPLEMENTED, message);
export const aborted = (message: string): StoreError => new StoreError(status.ABORTED, message);

/** Engine error codes (SQLite, LMDB, RocksDB, DuckDB) mapped to the status a client can act on. */
export function toStoreError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const e = err as { code?: unknown; message?: unknown; name?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'string' ? e.code : '';
  if (e?.name === 'SqlRefusedError') return new StoreError(status.PERMISSION_DENIED, message);
  if (e?.name === 'SqlInvalidError') return new StoreError(status.INVALID_ARGUMENT, message);
  // better-sqlite3 checks the SQL text itself before SQLite sees it.
  if (/supplied SQL string contains/i.test(message)) return new StoreError(status.INVALID_ARGUMENT, message);
  if (/named parameter|parameter values|bind parameter/i.test(message)) {
    return new StoreError(
      status.INVALID_ARGUMENT,
      `raw SQL takes no parameters; write the values into the SQL text (${message})`,
    );
  }
  if (code === 'SQLITE_FULL' || /disk is full|No space left|ENOSPC|MDB_MAP_FULL/i.test(message)) {
    return new StoreError(status.RESOURCE_EXHAUSTED, `storage is full: ${message}`);
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new StoreError(status.UNAVAILABLE, `store is busy, retry: ${message}`);
  }
  if (code === 'SQLITE_TOOBIG' || code === 'SQLITE_NOMEM' || /string or blob too big|out of memory/i.test(message)) {
    return new StoreError(status.RESOURCE_EXHAUSTED, `value too large for the store: ${message}`);
  }
  if (code.startsWith('SQLITE_READONLY') || /read-?only/i.test(message)) {
    return new StoreError(
      status.FAILED_PRECONDITION,
      `the store is read-only (server started with --read-only, or the file is not writable); writes are refused: ${message}`,
    );
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    return new StoreError(
      status.FAILED_PRECONDITION,
      `the store file cannot be opened (deleted, moved or not permitted): ${message}`,
    );
  }
  if (
    code === 'SQLITE_ERROR' ||
    code === 'SQLITE_RANGE' ||
    code === 'SQLITE_MISMATCH' ||
    code.startsWith('SQLITE_CONSTRAINT') ||
    /syntax error|Parser Error|Binder Error|Catalog Error|Invalid Input Error|Conversion Error|Out of Range Error|Constraint Error/i.test(
      message,
    )
  ) {
    return new StoreError(status.INVALID_ARGUMENT, message);
  }
  if (
    code === 'SQLITE_CORRUPT' ||
    code === 'SQLITE_NOTADB' ||
    code === 'SQLITE_IOERR' ||
    code.startsWith('SQLITE_IOERR')
  ) {
    return new StoreError(status.DATA_LOSS, `store file is damaged or unreadable: ${message}`);
  }
  return new StoreError(status.INTERNAL, message);
}
