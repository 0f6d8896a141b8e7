/** LMDB's (and lmdb-js's) errors as the status a client can act on. */
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  asStoreError,
  dataLoss,
  failedPrecondition,
  invalidArgument,
  readOnlyStore,
  resourceExhausted,
  StoreError,
  unavailable,
} from '../../errors.js';
import { ReadOnlyWriteError } from '../byte-kv/engine.js';

/** LMDB's own return codes (lmdb.h); lmdb-js puts them, or an errno, in `code`. */
const MDB = {
  CORRUPTED: -30796,
  PANIC: -30795,
  VERSION_MISMATCH: -30794,
  INVALID: -30793,
  MAP_FULL: -30792,
  READERS_FULL: -30790,
  TXN_FULL: -30788,
  BAD_VALSIZE: -30781,
} as const;

const ERRNO = { EIO: 5, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EBUSY: 16, ENOSPC: 28, EROFS: 30, EDQUOT: 122 } as const;

/**
 * Whether the filesystem holding `path` is (nearly) full. LMDB reports a page write cut short by
 * a full disk as EIO, the code of a failing disk too; the free space tells them apart.
 */
function nearlyFull(path: string | undefined): boolean {
  if (path === undefined) return false;
  try {
    const fs = statfsSync(dirname(path));
    return fs.bavail * fs.bsize < 256 * 1024 * 1024;
  } catch {
    return false;
  }
}

/** `path`: the store the error came from, when known. */
export function mapLmdbError(err: unknown, path?: string): StoreError {
  if (err instanceof StoreError) return err;
  if (err instanceof ReadOnlyWriteError) return readOnlyStore();
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'number' ? e.code : typeof e?.code === 'string' ? e.code : undefined;
  if (
    code === MDB.MAP_FULL ||
    code === ERRNO.ENOSPC ||
    code === ERRNO.EDQUOT ||
    code === 'ENOSPC' ||
    /MDB_MAP_FULL|No space left|ENOSPC|quota/i.test(message) ||
    ((code === ERRNO.EIO || /Input\/output error/.test(message)) && nearlyFull(path))
  ) {
    return resourceExhausted(`storage is full: ${message}`);
  }
  if (code === MDB.TXN_FULL || code === ERRNO.ENOMEM || /MDB_TXN_FULL|out of memory/i.test(message)) {
    return resourceExhausted(`the batch is too large for the store: ${message}`);
  }
  if (code === MDB.READERS_FULL || code === ERRNO.EAGAIN || code === ERRNO.EBUSY || /MDB_READERS_FULL/.test(message)) {
    return unavailable(`store is busy (too many readers or locked), retry: ${message}`);
  }
  if (code === ERRNO.EROFS || code === ERRNO.EACCES || code === 'EACCES' || code === 'EROFS') {
    return failedPrecondition(
      `the store is read-only (server started with --read-only, or the file is not writable); writes are refused: ${message}`,
    );
  }
  if (code === MDB.VERSION_MISMATCH || /MDB_VERSION_MISMATCH/.test(message)) {
    return failedPrecondition(`the store was made by an incompatible LMDB version: ${message}`);
  }
  if (code === MDB.BAD_VALSIZE || /MDB_BAD_VALSIZE|Key .*too large/i.test(message)) return invalidArgument(message);
  if (
    code === MDB.CORRUPTED ||
    code === MDB.PANIC ||
    code === MDB.INVALID ||
    code === ERRNO.EIO ||
    /MDB_CORRUPTED|MDB_PANIC|MDB_INVALID/.test(message)
  ) {
    return dataLoss(`store file is damaged or unreadable: ${message}`);
  }
  return asStoreError(err);
}
