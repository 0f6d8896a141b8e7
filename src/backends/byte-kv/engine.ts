/**
 * The StoreEngine of RocksDB and LMDB: KvOps, MapOps and BlobOps over a plain byte-keyed engine,
 * written once for both. Layout: ./layout.ts; batch overlay: ./overlay.ts.
 */

import { failedPrecondition, type StoreError } from '../../errors.js';
import {
  BLOB_MAPS,
  type BlobEngineOps,
  KV_MAPS,
  type KvEngineOps,
  type MaybePromise,
  type OpenOptions,
  type StoreEngine,
} from '../backend.js';
import type { BackendImpl } from '../index.js';
import { type SnapshotCopy, withSnapshots } from '../snapshot.js';
import { ByteBlobOps } from './blob-ops.js';
import { ByteKvOps, ByteMapOps } from './kv-ops.js';
import { COUNTER, FORMAT, readU64, TAG, u64 } from './layout.js';
import { type ByteEngine, Overlay } from './overlay.js';
import { upgradeLegacyKv } from './upgrade.js';

export type { ByteEngine, ByteWrite, Entries } from './overlay.js';
export { ReadOnlyWriteError } from './overlay.js';

class ByteStoreEngine<Ops> implements StoreEngine<Ops> {
  private busy = false;

  constructor(
    private readonly engine: ByteEngine,
    private readonly makeOps: (o: Overlay) => Ops,
    readonly mapError: (err: unknown) => StoreError,
  ) {}

  async batch<T>(work: (ops: Ops) => Promise<T>): Promise<T> {
    // The store never overlaps batches of one engine; a second one here would lose writes.
    if (this.busy) throw new Error('internal error: overlapping batches on one store');
    this.busy = true;
    try {
      const token = this.engine.begin();
      const overlay = new Overlay(this.engine);
      const result = await work(this.makeOps(overlay));
      if (overlay.size > 0) await this.engine.commit(overlay.values(), token);
      return result;
    } finally {
      this.busy = false;
    }
  }

  close() {
    return this.engine.close();
  }
}

/** Whether any stored key starts with `tag`. */
function hasTag(engine: ByteEngine, tag: number): boolean {
  for (const _ of engine.scan(Buffer.of(tag), Buffer.of(tag + 1), false, 1)) return true;
  return false;
}

/**
 * Checks the layout version at open and records it in a store that has none yet (new, or written
 * by buffdb 0.1); `upgrade` adds the writes that bring an older layout up to date, in the same commit.
 */
async function prepare(engine: ByteEngine, upgrade?: (o: Overlay) => void): Promise<void> {
  const token = engine.begin();
  const format = Number(readU64(engine.get(COUNTER.format)));
  if (format > FORMAT) {
    throw failedPrecondition(`the store was written by a newer buffdb (layout ${format}); upgrade buffdb to open it`);
  }
  if (format === FORMAT || engine.readOnly) return;
  const o = new Overlay(engine);
  upgrade?.(o);
  o.put(COUNTER.format, u64(BigInt(FORMAT)));
  await engine.commit(o.values(), token);
}

export async function kvEngine(
  engine: ByteEngine,
  mapError: (err: unknown) => StoreError,
): Promise<StoreEngine<KvEngineOps>> {
  const legacy = hasTag(engine, TAG.legacyRecord);
  if (legacy && engine.readOnly) {
    throw failedPrecondition('the store was written by buffdb 0.1; open it once without --read-only to upgrade it');
  }
  const legacyHashed = hasTag(engine, TAG.legacyHashed);
  const makeOps = (o: Overlay) => new ByteKvOps(o, new ByteMapOps(o, KV_MAPS), legacyHashed);
  await prepare(engine, legacy ? (o) => upgradeLegacyKv(o, makeOps(o)) : undefined);
  return new ByteStoreEngine(engine, makeOps, mapError);
}

export async function blobEngine(
  engine: ByteEngine,
  mapError: (err: unknown) => StoreError,
): Promise<StoreEngine<BlobEngineOps>> {
  await prepare(engine);
  return new ByteStoreEngine(engine, (o) => new ByteBlobOps(o, new ByteMapOps(o, BLOB_MAPS)), mapError);
}

/**
 * openKv and openBlob of a byte engine: `open` opens the engine, `mapError` is its error mapping
 * for the store at `path` (also for errors at open: the engine is closed again).
 */
export function byteBackend<E extends ByteEngine>(
  open: (path: string, options: OpenOptions) => MaybePromise<E>,
  mapError: (err: unknown, path: string) => StoreError,
  /** Online backup of one opened engine (../snapshot.ts). */
  snapshot: (engine: E, path: string) => (destPath: string) => Promise<SnapshotCopy>,
): Pick<BackendImpl, 'openKv' | 'openBlob'> {
  const opened = async <T>(
    path: string,
    options: OpenOptions,
    wrap: (engine: E, mapError: (err: unknown) => StoreError) => Promise<T>,
  ): Promise<T> => {
    const mapHere = (err: unknown): StoreError => mapError(err, path);
    let engine: E | undefined;
    try {
      engine = await open(path, options);
      return withSnapshots((await wrap(engine, mapHere)) as T & object, snapshot(engine, path));
    } catch (err) {
      await engine?.close();
      throw mapHere(err);
    }
  };
  return {
    openKv: (path, options = {}) => opened(path, options, kvEngine),
    openBlob: (path, options = {}) => opened(path, options, blobEngine),
  };
}
