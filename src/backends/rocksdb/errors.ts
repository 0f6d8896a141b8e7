/** RocksDB's (and @nxtedition/rocksdb's) errors as the status a client can act on. */
import {
  asStoreError,
  dataLoss,
  failedPrecondition,
  readOnlyStore,
  resourceExhausted,
  StoreError,
  unavailable,
} from '../../errors.js';
import { ReadOnlyWriteError } from '../byte-kv/engine.js';

/**
 * The binding names RocksDB's status in `code` (LEVEL_LOCKED, LEVEL_IO_ERROR, LEVEL_CORRUPTION, …)
 * and its text in the message ("IO error: No space left on device …"); abstract-level wraps
 * open failures in an error whose `cause` is the binding's.
 */
export function mapRocksError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  if (err instanceof ReadOnlyWriteError) return readOnlyStore();
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } };
  const cause = e?.cause && typeof e.cause.message === 'string' ? e.cause : undefined;
  const message = cause ? String(cause.message) : typeof e?.message === 'string' ? e.message : String(err);
  const code = String(cause?.code ?? e?.code ?? '');
  if (code === 'LEVEL_LOCKED' || /IO error: lock |LockFile|While lock file/i.test(message)) {
    return unavailable(`the store is in use by another process (RocksDB allows one): ${message}`);
  }
  if (/No space left|ENOSPC|quota exceeded/i.test(message)) return resourceExhausted(`storage is full: ${message}`);
  if (/out of memory|MemoryLimit|Result incomplete: Write stall/i.test(message)) {
    return resourceExhausted(`the store is out of memory or stalled: ${message}`);
  }
  if (code === 'LEVEL_TRYAGAIN' || /Busy|TryAgain/i.test(message))
    return unavailable(`store is busy, retry: ${message}`);
  if (/read.?only|Read-only file system|Permission denied/i.test(message)) {
    return failedPrecondition(
      `the store is read-only or not writable (RocksDB writes its directory even to read): ${message}`,
    );
  }
  if (/No such file or directory|does not exist/i.test(message)) {
    return failedPrecondition(`the store's files are missing (deleted or moved): ${message}`);
  }
  if (code === 'LEVEL_CORRUPTION' || /Corruption:/i.test(message)) {
    return dataLoss(`store is damaged: ${message}`);
  }
  if (code === 'LEVEL_IO_ERROR' || /IO error/i.test(message))
    return dataLoss(`store cannot be read or written: ${message}`);
  if (code === 'LEVEL_DATABASE_NOT_OPEN') return unavailable('the store is closed');
  return asStoreError(err);
}
