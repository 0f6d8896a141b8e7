/** DuckDB's errors as the status a client can act on. DuckDB says what went wrong in a message prefix. */
import {
  asStoreError,
  dataLoss,
  failedPrecondition,
  invalidArgument,
  permissionDenied,
  readOnlyStore,
  resourceExhausted,
  StoreError,
  unavailable,
} from '../../errors.js';
import { mapGuardError } from '../sql-guard.js';

/**
 * A write to a store opened read-only, refused before DuckDB sees it (writes wait in memory until
 * commit). Not a StoreError on purpose: a write refused halfway through a revision must abandon
 * the batch, as an engine error does.
 */
export class ReadOnlyWriteError extends Error {
  override readonly name = 'ReadOnlyWriteError';
  constructor() {
    super('the store is open read-only; writes are refused');
  }
}

export function mapDuckDbError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  if (err instanceof ReadOnlyWriteError) return readOnlyStore();
  const guarded = mapGuardError(err);
  if (guarded) return guarded;
  const message = err instanceof Error ? err.message : String(err);
  if (/No space left|ENOSPC|disk is full|not enough space/i.test(message)) {
    return resourceExhausted(`storage is full: ${message}`);
  }
  if (/^Out of Memory Error|out of memory|could not allocate/i.test(message)) {
    return resourceExhausted(`value too large for the store: ${message}`);
  }
  if (/Could not set lock on file|Conflicting lock is held/i.test(message)) {
    return unavailable(`the store is in use by another process (DuckDB allows one per store): ${message}`);
  }
  if (/read-?only/i.test(message)) {
    return failedPrecondition(
      `the store is read-only (server started with --read-only, or the file is not writable); writes are refused: ${message}`,
    );
  }
  // enable_external_access=false and the locked configuration refuse what the SQL guard let through.
  if (/^Permission Error|disabled (by|through) configuration|configuration has been locked/i.test(message)) {
    return permissionDenied(`refused: raw SQL cannot reach outside its store (${message})`);
  }
  if (
    /^(Parser|Binder|Catalog|Invalid Input|Conversion|Out of Range|Constraint|Not implemented) Error|syntax error/i.test(
      message,
    )
  ) {
    return invalidArgument(message);
  }
  if (/^(TransactionContext|Transaction|Interrupt) Error|write-write conflict/i.test(message)) {
    return unavailable(`store is busy, retry: ${message}`);
  }
  if (/Cannot open (database|file)|Permission denied|No such file/i.test(message)) {
    return failedPrecondition(`the store file cannot be opened (deleted, moved or not permitted): ${message}`);
  }
  if (/not a valid DuckDB database|Corrupt|checksum|Could not read|^IO Error|^Serialization Error/i.test(message)) {
    return dataLoss(`store file is damaged or unreadable: ${message}`);
  }
  if (/^FATAL Error|database has been invalidated/i.test(message)) {
    return unavailable(`the store stopped after an engine failure; restart the server: ${message}`);
  }
  return asStoreError(err);
}
