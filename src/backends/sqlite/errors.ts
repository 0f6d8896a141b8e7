/** SQLite's (and better-sqlite3's) errors as the status a client can act on. */
import {
  asStoreError,
  dataLoss,
  failedPrecondition,
  invalidArgument,
  resourceExhausted,
  StoreError,
  unavailable,
} from '../../errors.js';
import { mapGuardError } from '../sql-guard.js';

export function mapSqliteError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const guarded = mapGuardError(err);
  if (guarded) return guarded;
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'string' ? e.code : '';
  // better-sqlite3 checks the SQL text itself before SQLite sees it.
  if (/supplied SQL string contains/i.test(message)) return invalidArgument(message);
  if (/named parameter|parameter values|bind parameter/i.test(message)) {
    return invalidArgument(`raw SQL takes no parameters; write the values into the SQL text (${message})`);
  }
  if (code === 'SQLITE_FULL' || /disk is full|No space left|ENOSPC/i.test(message)) {
    return resourceExhausted(`storage is full: ${message}`);
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') return unavailable(`store is busy, retry: ${message}`);
  if (code === 'SQLITE_TOOBIG' || code === 'SQLITE_NOMEM' || /string or blob too big|out of memory/i.test(message)) {
    return resourceExhausted(`value too large for the store: ${message}`);
  }
  if (code.startsWith('SQLITE_READONLY') || /read-?only/i.test(message)) {
    return failedPrecondition(
      `the store is read-only (server started with --read-only, or the file is not writable); writes are refused: ${message}`,
    );
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    return failedPrecondition(`the store file cannot be opened (deleted, moved or not permitted): ${message}`);
  }
  if (
    code === 'SQLITE_ERROR' ||
    code === 'SQLITE_RANGE' ||
    code === 'SQLITE_MISMATCH' ||
    code.startsWith('SQLITE_CONSTRAINT')
  ) {
    return invalidArgument(message);
  }
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_IOERR')) {
    return dataLoss(`store file is damaged or unreadable: ${message}`);
  }
  return asStoreError(err);
}
