/**
 * LMDB on `lmdb` (lmdb-js): one memory-mapped file per store (plus `<file>-lock`), binary keys and
 * values, reads straight from the map, synchronous. Layout, id counter and batch overlay:
 * ../byte-kv/. Errors: ./errors.ts.
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { open, type RootDatabase, TransactionFlags } from 'lmdb';
import { aborted, failedPrecondition, invalidArgument } from '../../errors.js';
import type { OpenOptions } from '../backend.js';
import { type ByteEngine, type ByteWrite, byteBackend, type Entries } from '../byte-kv/engine.js';
import { COUNTER, readU64, u64 } from '../byte-kv/layout.js';
import { readFileHead } from '../file-head.js';
import type { BackendImpl } from '../index.js';
import { checkFilePath } from '../store-path.js';
import { mapLmdbError } from './errors.js';
import { lmdbSnapshot } from './snapshot.js';

type Db = RootDatabase<Buffer, Buffer>;

/**
 * Keys longer than this are stored as prefix + hash (../byte-kv/layout.ts). Part of the file
 * format, so a constant rather than lmdb-js's maxKeySize (1978 today), which it must stay below.
 */
const LONG_KEY_PREFIX = 1024;

/**
 * Bumped by every commit. LMDB lets several processes write one file (`buffdb kv set` beside a
 * running server); a batch whose reads predate another process's commit is refused, not merged.
 */
function readGeneration(db: Db): bigint {
  return readU64(db.getBinary(COUNTER.generation));
}

function* entries(range: Iterable<{ key: Buffer; value: Buffer }>): Entries {
  for (const { key, value } of range) yield [key, value];
}

class LmdbEngine implements ByteEngine<bigint> {
  readonly longKeyPrefix = LONG_KEY_PREFIX;
  private readonly commitFlags: number;

  constructor(
    readonly db: Db,
    readonly readOnly: boolean,
    durability: OpenOptions['durability'],
  ) {
    // full: the commit returns after fdatasync (survives power loss). normal: the flush runs after
    // the commit returns; with lmdb-js's overlapping sync a process crash still keeps the commit.
    this.commitFlags =
      TransactionFlags.ABORTABLE |
      TransactionFlags.SYNCHRONOUS_COMMIT |
      (durability === 'normal' ? TransactionFlags.NO_SYNC_FLUSH : 0);
  }

  get(key: Buffer): Buffer | undefined {
    // getBinary copies out of the map: the value stays valid after the next read.
    return this.db.getBinary(key);
  }

  scan(lo: Buffer, hi: Buffer, reverse: boolean): Entries {
    // getRange is lazy and synchronous; reversed, it starts at `start` and stops at `end`.
    return entries(
      reverse
        ? this.db.getRange({ start: hi, end: lo, reverse: true, exclusiveStart: true, inclusiveEnd: true })
        : this.db.getRange({ start: lo, end: hi }),
    );
  }

  count(lo: Buffer, hi: Buffer): number {
    return this.db.getKeysCount({ start: lo, end: hi });
  }

  begin(): bigint {
    // lmdb-js keeps a read snapshot until the next timer tick; a batch starts from the latest
    // commit, also another process's.
    this.db.resetReadTxn();
    return readGeneration(this.db);
  }

  commit(writes: Iterable<ByteWrite>, generation: bigint): void {
    // Synchronous and abortable: a throw anywhere inside leaves the file untouched.
    this.db.transactionSync(() => {
      const current = readGeneration(this.db);
      if (current !== generation) throw aborted('another process wrote to this LMDB store at the same time; retry');
      for (const w of writes) {
        if (w.value === null) this.db.removeSync(w.key);
        else this.db.putSync(w.key, w.value as Buffer);
      }
      this.db.putSync(COUNTER.generation, u64(current + 1n));
    }, this.commitFlags);
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/** LMDB's meta-page magic (0xBEEFC0DE, little-endian) at byte 24 of the data file. */
const LMDB_MAGIC = Buffer.from([0xde, 0xc0, 0xef, 0xbe]);

/**
 * LMDB maps whatever file it is given and can crash the process on a foreign one (a SQLite file
 * segfaults it), so a non-empty file must show LMDB's magic before it is opened.
 */
function assertLmdbFile(path: string): void {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st || st.size === 0) return;
  if (!readFileHead(path, 28).subarray(24, 28).equals(LMDB_MAGIC)) {
    throw failedPrecondition(
      'file is not an lmdb store (made by another backend, or damaged); choose the backend it was made with',
    );
  }
}

function openEngine(path: string, options: OpenOptions): LmdbEngine {
  const readOnly = options.readOnly ?? false;
  if (path === ':memory:') throw invalidArgument('the lmdb backend has no in-memory mode; give a file path');
  if (readOnly && !existsSync(path)) throw failedPrecondition(`${path} does not exist`);
  assertLmdbFile(path);
  const db = open<Buffer, Buffer>({
    path,
    // The path is the data file itself (LMDB adds `<path>-lock`), whatever its name looks like.
    noSubdir: true,
    keyEncoding: 'binary',
    encoding: 'binary',
    readOnly,
  });
  const maxKeySize = (db as unknown as { maxKeySize: number }).maxKeySize;
  if (maxKeySize < 1 + LONG_KEY_PREFIX + 32) {
    void db.close();
    throw failedPrecondition(
      `this lmdb build allows keys of ${maxKeySize} bytes; buffdb needs ${LONG_KEY_PREFIX + 33}`,
    );
  }
  return new LmdbEngine(db, readOnly, options.durability);
}

/** Why `path` cannot be opened for writing, as an errno code (EROFS, EACCES), or undefined. */
function writeRefusal(path: string): string | undefined {
  try {
    accessSync(path, constants.W_OK);
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'EACCES';
  }
}

export const lmdbBackend: BackendImpl = {
  ...byteBackend(openEngine, mapLmdbError, (engine) => lmdbSnapshot(engine.db)),
  checkPath(path, label, readOnly) {
    checkFilePath(path, label, readOnly);
    if (path === ':memory:') throw invalidArgument('the lmdb backend has no in-memory mode; give a file path');
    // LMDB keeps its reader table in PATH-lock and opens it for writing even to read; only on a
    // read-only filesystem does a read-only open go without it.
    const abs = resolve(path);
    const lock = `${abs}-lock`;
    const st = statSync(lock, { throwIfNoEntry: false });
    if (st && !st.isFile()) throw failedPrecondition(`${label} store ${path}: ${path}-lock is not a regular file`);
    const refusal = writeRefusal(st ? lock : dirname(abs));
    if (refusal !== undefined && refusal !== 'EROFS') {
      throw failedPrecondition(
        st
          ? `${label} store ${path}: LMDB needs to write its lock file ${path}-lock, which is not writable`
          : `cannot serve the ${label} store ${path}: LMDB needs ${path}-lock beside it and the directory is not writable`,
      );
    }
  },
};
