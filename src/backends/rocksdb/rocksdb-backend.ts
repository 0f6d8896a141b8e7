/**
 * RocksDB on `@nxtedition/rocksdb`. Writes go through one WriteBatch per buffdb batch (atomic, one
 * WAL append), reads are synchronous MultiGets. Layout, id counter and batch overlay:
 * ../byte-kv-engine.ts.
 *
 * RocksDB keeps a directory, while buffdb (and its CLI) deals in store files. So the store path is
 * a small marker file naming the engine, and the data lives in the directory `<path>-rocksdb`
 * beside it — the way SQLite keeps `<path>-wal` and LMDB `<path>-lock`.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { StoreError, status } from '../../store/errors.js';
import type { Backend, OpenOptions } from '../backend.js';
import { type ByteEngine, type ByteWrite, blobEngine, kvEngine } from '../byte-kv-engine.js';
import { withSnapshots } from '../snapshot.js';
import { rocksdbSnapshot, type SnapshotSource } from './snapshot.js';

/** The part of RocksLevel used here (the package ships no type declarations). */
interface RocksChainedBatch {
  put(key: Buffer, value: Buffer): void;
  del(key: Buffer): void;
  write(options: { sync: boolean }): Promise<void>;
}
interface RocksLevel {
  open(options: { createIfMissing: boolean }): Promise<void>;
  close(): Promise<void>;
  batch(): RocksChainedBatch;
  _getManySync(keys: Buffer[], options: object): (Buffer | undefined | null)[];
}
type RocksLevelClass = new (location: string, options: { keyEncoding: string; valueEncoding: string }) => RocksLevel;

const MARKER = 'buffdb rocksdb store: the data is in the directory beside this file whose name ends in -rocksdb\n';

// Loaded with this module, so a missing or unloadable native package fails at backend selection
// (an optional dependency: prebuilt only for some platforms).
const RocksLevelCtor = (createRequire(import.meta.url)('@nxtedition/rocksdb') as { RocksLevel: RocksLevelClass })
  .RocksLevel;

function toBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

class RocksEngine implements ByteEngine<void> {
  // RocksDB has no practical key limit; the layout never needs to hash.
  readonly maxKeyBytes = Number.MAX_SAFE_INTEGER;

  constructor(
    readonly db: RocksLevel,
    readonly readOnly: boolean,
    private readonly sync: boolean,
  ) {}

  get(key: Buffer): Buffer | undefined {
    return this.db._getManySync([key], {})[0] ?? undefined;
  }

  begin(): void {}

  async commit(writes: Iterable<ByteWrite>): Promise<void> {
    const batch = this.db.batch();
    for (const w of writes) {
      if (w.value === null) batch.del(w.key);
      else batch.put(w.key, toBuffer(w.value));
    }
    // sync: the WAL is fsynced before the write returns (power loss). Without it the WAL is still
    // written to the OS before returning, so a killed process loses nothing.
    await batch.write({ sync: this.sync });
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/** Checks or creates the marker file; answers the data directory. */
function prepareMarker(path: string, readOnly: boolean): string {
  const dir = `${path}-rocksdb`;
  const st = statSync(path, { throwIfNoEntry: false });
  if (st) {
    if (!st.isFile()) throw new StoreError(status.INVALID_ARGUMENT, `${path} is not a regular file`);
    const head = readFileSync(path).subarray(0, MARKER.length).toString('utf8');
    if (st.size > 0 && head !== MARKER) {
      throw new StoreError(
        status.FAILED_PRECONDITION,
        'file is not a rocksdb store (made by another backend, or damaged); choose the backend it was made with',
      );
    }
    if (st.size > 0 && !existsSync(dir)) {
      throw new StoreError(status.DATA_LOSS, `the RocksDB data directory ${dir} of ${path} is missing`);
    }
  } else if (readOnly) {
    throw new StoreError(status.FAILED_PRECONDITION, `${path} does not exist`);
  }
  return dir;
}

function writeMarker(path: string): void {
  const st = statSync(path, { throwIfNoEntry: false });
  if (st && st.size > 0) return;
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, MARKER);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

async function openRocks(path: string, options: OpenOptions): Promise<RocksEngine> {
  if (path === ':memory:')
    throw new StoreError(status.INVALID_ARGUMENT, 'the rocksdb backend has no in-memory mode; give a file path');
  const readOnly = options.readOnly ?? false;
  const dir = prepareMarker(path, readOnly);
  const db = new RocksLevelCtor(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  try {
    await db.open({ createIfMissing: !readOnly });
  } catch (err) {
    // abstract-level wraps the engine's reason ("lock hold by …", "does not exist") in `cause`.
    const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
    if (/lock/i.test(cause)) {
      throw new StoreError(status.UNAVAILABLE, `the store is in use by another process (RocksDB allows one): ${cause}`);
    }
    throw new Error(cause);
  }
  if (!readOnly) writeMarker(path);
  return new RocksEngine(db, readOnly, options.durability !== 'normal');
}

/** A new RocksDB at `location`, for backup copies. */
const openCopy = (location: string) => new RocksLevelCtor(location, { keyEncoding: 'buffer', valueEncoding: 'buffer' });

export const rocksdbBackend: Backend = {
  name: 'rocksdb',
  capabilities: { rawSql: false, nativeTransactions: false, snapshot: 'online' },
  async openKv(path, options = {}) {
    const rocks = await openRocks(path, options);
    return withSnapshots(kvEngine(rocks), rocksdbSnapshot(rocks.db as unknown as SnapshotSource, path, openCopy));
  },
  async openBlob(path, options = {}) {
    const rocks = await openRocks(path, options);
    return withSnapshots(blobEngine(rocks), rocksdbSnapshot(rocks.db as unknown as SnapshotSource, path, openCopy));
  },
};
