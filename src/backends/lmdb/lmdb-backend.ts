/**
 * LMDB on `lmdb` (lmdb-js): one memory-mapped file per store (plus `<file>-lock`), binary keys and
 * values, reads straight from the map. Layout, id counter and batch overlay: ../byte-kv-engine.ts.
 */
import { existsSync, statSync } from 'node:fs';
import { open, type RootDatabase, TransactionFlags } from 'lmdb';
import { StoreError, status } from '../../store/errors.js';
import type { Backend, OpenOptions } from '../backend.js';
import { type ByteEngine, type ByteWrite, blobEngine, kvEngine } from '../byte-kv-engine.js';
import { readFileHead } from '../file-head.js';
import { withSnapshots } from '../snapshot.js';
import { lmdbSnapshot } from './snapshot.js';

/**
 * Bumped by every commit. LMDB lets several processes write one file (`buffdb kv set` beside a
 * running server); a batch whose reads predate another process's commit is refused, not merged.
 */
const GENERATION_KEY = Buffer.from('#generation');

function readGeneration(db: RootDatabase<Buffer, Buffer>): bigint {
  const raw = db.getBinary(GENERATION_KEY);
  return raw === undefined ? 0n : raw.readBigUInt64BE(0);
}

class LmdbEngine implements ByteEngine<bigint> {
  readonly maxKeyBytes: number;
  private readonly commitFlags: number;

  constructor(
    readonly db: RootDatabase<Buffer, Buffer>,
    readonly readOnly: boolean,
    durability: OpenOptions['durability'],
  ) {
    this.maxKeyBytes = (db as unknown as { maxKeySize?: number }).maxKeySize ?? 511;
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
      if (current !== generation) {
        throw new StoreError(status.ABORTED, 'another process wrote to this LMDB store at the same time; retry');
      }
      for (const w of writes) {
        if (w.value === null) this.db.removeSync(w.key);
        else this.db.putSync(w.key, w.value as Buffer);
      }
      const next = Buffer.allocUnsafe(8);
      next.writeBigUInt64BE(current + 1n);
      this.db.putSync(GENERATION_KEY, next);
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
    throw new StoreError(
      status.FAILED_PRECONDITION,
      'file is not an lmdb store (made by another backend, or damaged); choose the backend it was made with',
    );
  }
}

function openEnv(path: string, options: OpenOptions): LmdbEngine {
  const readOnly = options.readOnly ?? false;
  if (path === ':memory:')
    throw new StoreError(status.INVALID_ARGUMENT, 'the lmdb backend has no in-memory mode; give a file path');
  if (readOnly && !existsSync(path)) throw new StoreError(status.FAILED_PRECONDITION, `${path} does not exist`);
  assertLmdbFile(path);
  const db = open<Buffer, Buffer>({
    path,
    // The path is the data file itself (LMDB adds `<path>-lock`), whatever its name looks like.
    noSubdir: true,
    keyEncoding: 'binary',
    encoding: 'binary',
    readOnly,
  });
  return new LmdbEngine(db, readOnly, options.durability);
}

export const lmdbBackend: Backend = {
  name: 'lmdb',
  capabilities: { rawSql: false, nativeTransactions: true, snapshot: 'held' },
  async openKv(path, options = {}) {
    const env = openEnv(path, options);
    return withSnapshots(kvEngine(env), lmdbSnapshot(env.db));
  },
  async openBlob(path, options = {}) {
    const env = openEnv(path, options);
    return withSnapshots(blobEngine(env), lmdbSnapshot(env.db));
  },
};
