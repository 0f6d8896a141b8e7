/**
 * RocksDB on `@nxtedition/rocksdb`. Writes go through one WriteBatch per buffdb batch (atomic, one
 * WAL append); reads are synchronous (MultiGet, and `querySync` pages for ranges). Layout, id
 * counter and batch overlay: ../byte-kv/. Errors: ./errors.ts.
 *
 * RocksDB keeps a directory, while buffdb (and its CLI) deals in store files. So the store path is
 * a small marker file naming the engine, and the data lives in the directory `<path>-rocksdb`
 * beside it — the way SQLite keeps `<path>-wal` and LMDB `<path>-lock`.
 */
import { closeSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dataLoss, failedPrecondition, invalidArgument } from '../../errors.js';
import type { OpenOptions } from '../backend.js';
import { type ByteEngine, type ByteWrite, byteBackend, type Entries } from '../byte-kv/engine.js';
import { asBuffer } from '../byte-kv/layout.js';
import type { BackendImpl } from '../index.js';
import { checkFilePath, writable } from '../store-path.js';
import { mapRocksError } from './errors.js';
import { rocksdbSnapshot, type SnapshotSource } from './snapshot.js';
import { reusedBatchWriter } from './write-batch.js';

/** The part of RocksLevel used here (the package ships no type declarations). */
interface RocksChainedBatch {
  put(key: Buffer, value: Buffer): void;
  del(key: Buffer): void;
  write(options: { sync: boolean }): Promise<void>;
}
interface RocksQuery {
  gte?: Buffer;
  gt?: Buffer;
  lt: Buffer;
  reverse: boolean;
  limit: number;
  values: boolean;
  keyEncoding: 'buffer';
  valueEncoding: 'buffer';
}
interface RocksLevel {
  open(options: { createIfMissing: boolean }): Promise<void>;
  close(): Promise<void>;
  batch(): RocksChainedBatch;
  _getManySync(keys: Buffer[], options: object): (Buffer | undefined | null)[];
  /** One iterator run: keys and values alternate in `rows`; `finished` also when `limit` stopped it. */
  querySync(options: RocksQuery): { rows: (Buffer | undefined)[]; finished: boolean };
}
type RocksLevelClass = new (location: string, options: typeof ENGINE_OPTIONS) => RocksLevel;

const MARKER = 'buffdb rocksdb store: the data is in the directory beside this file whose name ends in -rocksdb\n';

// Loaded with this module, so a missing or unloadable native package fails at backend selection
// (an optional dependency: prebuilt only for some platforms).
const RocksLevelCtor = (createRequire(import.meta.url)('@nxtedition/rocksdb') as { RocksLevel: RocksLevelClass })
  .RocksLevel;

const MiB = 1024 * 1024;

/**
 * RocksDB's memory, bounded by choice rather than left at the binding's defaults — under which a
 * 1 GiB upload grew the server by over 400 MiB: 64 MiB memtables, and ZSTD dictionary compression,
 * which buffers every data block of an SST file (up to the file size) until the file is done.
 * `level` compaction with a 16 MiB budget: 4 MiB memtables, at most 6 (24 MiB) before writes wait
 * for a flush; 2 MiB SST files. No dictionary compression (the levels RocksDB then compresses use
 * plain ZSTD, which buffers one block). A 4 MiB block cache. Measured, 1 GiB written in 4 MiB
 * batches by the engine alone: RSS +98 MiB with a 32 MiB budget, +77 with 16, +70 with 8 (1 MiB
 * SST files: not taken). The server's growth over test/blob-gib.test.ts (limit 128 MiB) was
 * 128–133 MiB with 32 MiB and an 8 MiB cache once wide HTTP/2 windows made uploads faster (a faster
 * writer leaves more memtables waiting for a flush); with these settings 116–120, and 121–131 by
 * 2026-12-07 — then 85–90 once commits reused one WriteBatch (./write-batch.ts). Kv Set and Get on
 * one stream ran at the same ratios (`--only=backends`).
 */
const ENGINE_OPTIONS = {
  keyEncoding: 'buffer',
  valueEncoding: 'buffer',
  compaction: 'level',
  memtableMemoryBudget: 16 * MiB,
  compression: false,
  cacheSize: 4 * MiB,
};

/** Entries read per `querySync` call at most; the first page is sized by the caller's hint. */
const MAX_PAGE = 4096;

class RocksEngine implements ByteEngine<void> {
  // RocksDB has no practical key limit: keys are always stored whole.
  readonly longKeyPrefix = Number.POSITIVE_INFINITY;

  /** One WriteBatch reused for every commit (./write-batch.ts), when the binding allows it. */
  private readonly writeReused: ReturnType<typeof reusedBatchWriter>;

  constructor(
    readonly db: RocksLevel,
    readonly readOnly: boolean,
    private readonly sync: boolean,
  ) {
    this.writeReused = reusedBatchWriter(db);
  }

  get(key: Buffer): Buffer | undefined {
    return this.db._getManySync([key], {})[0] ?? undefined;
  }

  /** Pages of one range, each a fresh iterator starting after the last key read. */
  private *pages(lo: Buffer, hi: Buffer, reverse: boolean, hint: number, values: boolean): Generator<Buffer[]> {
    let page = Math.min(Math.max(hint, 16), MAX_PAGE);
    let last: Buffer | undefined;
    for (;;) {
      const bounds = reverse ? { gte: lo, lt: last ?? hi } : last ? { gt: last, lt: hi } : { gte: lo, lt: hi };
      const { rows, finished } = this.db.querySync({
        ...bounds,
        reverse,
        limit: page,
        values,
        keyEncoding: 'buffer',
        valueEncoding: 'buffer',
      });
      if (rows.length === 0) return;
      yield rows as Buffer[];
      if (finished && rows.length < 2 * page) return;
      last = rows[rows.length - 2];
      page = Math.min(page * 4, MAX_PAGE);
    }
  }

  *scan(lo: Buffer, hi: Buffer, reverse: boolean, hint: number): Entries {
    for (const rows of this.pages(lo, hi, reverse, hint, true)) {
      for (let i = 0; i < rows.length; i += 2) yield [rows[i]!, rows[i + 1]!];
    }
  }

  count(lo: Buffer, hi: Buffer): number {
    let n = 0;
    for (const rows of this.pages(lo, hi, false, MAX_PAGE, false)) n += rows.length / 2;
    return n;
  }

  begin(): void {}

  async commit(writes: Iterable<ByteWrite>): Promise<void> {
    if (this.writeReused) return this.writeReused(writes, this.sync);
    const batch = this.db.batch();
    for (const w of writes) {
      if (w.value === null) batch.del(w.key);
      else batch.put(w.key, asBuffer(w.value));
    }
    // sync: the WAL is fsynced before the write returns (power loss). Without it the WAL is still
    // written to the OS before returning, so a killed process loses nothing.
    await batch.write({ sync: this.sync });
  }

  async close(): Promise<void> {
    try {
      await this.db.close();
    } catch (err) {
      // RocksDB releases the store even when its close reports an error, but abstract-level then
      // still says "open": a second close settles that (and finds nothing left to close).
      await this.db.close().catch(() => {});
      // After a failed write (a full disk) RocksDB keeps a background error that its close
      // reports again; that write was already answered with its error, and what was
      // acknowledged is in the synced WAL. Anything else is news.
      const cause = (err as { cause?: { message?: unknown } }).cause?.message;
      if (!/Seen error/.test(String(cause))) throw err;
    }
  }
}

/** Checks the marker file (or that there is none yet); answers the data directory. */
function checkMarker(path: string, readOnly: boolean): string {
  const dir = `${path}-rocksdb`;
  const st = statSync(path, { throwIfNoEntry: false });
  if (st) {
    if (!st.isFile()) throw invalidArgument(`${path} is not a regular file`);
    const head = readFileSync(path).subarray(0, MARKER.length).toString('utf8');
    if (st.size > 0 && head !== MARKER) {
      throw failedPrecondition(
        'file is not a rocksdb store (made by another backend, or damaged); choose the backend it was made with',
      );
    }
    const dst = statSync(dir, { throwIfNoEntry: false });
    if (st.size > 0 && !dst) throw dataLoss(`the RocksDB data directory ${dir} of ${path} is missing`);
    if (dst && !dst.isDirectory()) throw failedPrecondition(`${dir}, where RocksDB keeps the data, is not a directory`);
  } else if (readOnly) {
    throw failedPrecondition(`${path} does not exist`);
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

async function openEngine(path: string, options: OpenOptions): Promise<RocksEngine> {
  if (path === ':memory:') throw invalidArgument('the rocksdb backend has no in-memory mode; give a file path');
  const readOnly = options.readOnly ?? false;
  const dir = checkMarker(path, readOnly);
  const db = new RocksLevelCtor(dir, ENGINE_OPTIONS);
  await db.open({ createIfMissing: !readOnly });
  if (!readOnly) writeMarker(path);
  return new RocksEngine(db, readOnly, options.durability !== 'normal');
}

/** A new RocksDB at `location`, for backup copies. */
const openCopy = (location: string) => new RocksLevelCtor(location, ENGINE_OPTIONS);

export const rocksdbBackend: BackendImpl = {
  ...byteBackend(openEngine, mapRocksError, (engine, path) =>
    rocksdbSnapshot(engine.db as unknown as SnapshotSource, path, openCopy),
  ),
  checkPath(path, label, readOnly) {
    checkFilePath(path, label, readOnly);
    if (path === ':memory:') throw invalidArgument('the rocksdb backend has no in-memory mode; give a file path');
    checkMarker(path, readOnly);
    // RocksDB has no read-only mode here: it takes its LOCK file and may write logs in the data
    // directory even when buffdb only reads.
    const dir = `${path}-rocksdb`;
    if (statSync(dir, { throwIfNoEntry: false }) && !writable(dir)) {
      throw failedPrecondition(
        `${label} store ${path}: RocksDB writes in its data directory ${dir} even to read, and it is not writable`,
      );
    }
  },
};
