/**
 * Committing a transaction: validate what it saw, then apply its writes — across the two stores
 * when it touched both (BLOB batch first, inside the KV batch, with the commit log in between).
 * Every commit runs inside one KV engine batch, and the KV engine never runs two batches at once,
 * so commits are totally ordered: serialisable, never a lost update.
 */
import type { BlobEngineOps } from '../../backends/backend.js';
import { asStoreError, internal, type StoreError } from '../../errors.js';
import { type BlobStore, dropLarge, loadBlob } from '../blob/blob-store.js';
import type { BlobSyncLog } from '../blob/blob-sync-log.js';
import { discardData, largeRefOf, setLargeRef } from '../blob/large-blobs.js';
import type { KvStore } from '../kv/kv-store.js';
import type { MvccBatch } from '../kv/mvcc-batch.js';
import type { CommitLog, WriteSet } from './commit-log.js';
import { conflict, sameBlob, type Tx } from './tx-state.js';

/** Test hook: die exactly between the two stores' commits. */
const crashBetweenStores = (): boolean => process.env.BUFFDB_FAULT === 'crash-between-stores';

async function validateKv(b: MvccBatch, tx: Tx): Promise<void> {
  for (const [key, seen] of tx.kvSeen) {
    const now = await b.ops.get(Buffer.from(key, 'utf8'));
    if (now?.modRev !== seen?.modRev) throw conflict(tx.id, `key ${JSON.stringify(key)}`);
  }
}

async function validateBlob(ops: BlobEngineOps, tx: Tx): Promise<void> {
  for (const [id, seen] of tx.blobSeen) {
    if (!sameBlob(await loadBlob(ops, id), seen)) throw conflict(tx.id, `blob ${id}`);
  }
}

/** The KV writes as one revision; `logName` marks the commit log whose KV part this is. */
async function applyKv(b: MvccBatch, writes: WriteSet['kv'], marker: [Buffer, string] | undefined): Promise<void> {
  await b.mutate(async () => {
    for (const [key, value] of writes) {
      const k = Buffer.from(key, 'utf8');
      const prev = await b.ops.get(k);
      if (value !== null) await b.put(k, Buffer.from(value, 'utf8'), 0n, prev);
      else if (prev) await b.delete(prev);
    }
    if (marker !== undefined) await b.ops.maps.put('meta', marker[0], Buffer.from(marker[1]));
  });
}

const EMPTY = Buffer.alloc(0);

/**
 * Applies a transaction's blob writes; every form is idempotent, so a replayed commit log is safe.
 * Answers whether chunks were discarded (the store collects them after the commit).
 */
async function applyBlob(ops: BlobEngineOps, writes: WriteSet['blob'], log: BlobSyncLog): Promise<boolean> {
  let discarded = false;
  for (const [id, blob, isNew, uploadState] of writes) {
    if (blob === null) {
      if (await ops.delete(id)) await log.recordLocal(ops, id, 'delete');
      discarded = (await dropLarge(ops, id)) || discarded;
      continue;
    }
    const data = blob.data ?? EMPTY;
    if (isNew) await ops.insertWithId(id, data, blob.metadata);
    else if (!(await ops.update(id, data, blob.metadata))) await ops.insertWithId(id, data, blob.metadata);
    const old = await largeRefOf(ops, id);
    if (old && old.dataId !== blob.large?.dataId) {
      await discardData(ops, old.dataId, old.size);
      discarded = true;
    }
    if (blob.large) await setLargeRef(ops, id, blob.large);
    else if (old) await setLargeRef(ops, id, undefined);
    if (uploadState) await ops.maps.delete('upload', uploadState);
    await log.recordLocal(ops, id, 'put');
  }
  return discarded;
}

export class Committer {
  constructor(
    private readonly kv: KvStore,
    private readonly blob: BlobStore,
    /** Undefined for in-memory stores: nothing survives a crash there anyway. */
    private readonly log: CommitLog | undefined,
  ) {}

  /** Validates and applies `tx`; ABORTED (nothing applied) when something it saw has changed. */
  async apply(tx: Tx): Promise<void> {
    if (!tx.touchesKv && !tx.touchesBlob) return;
    const writes: WriteSet = {
      kv: [...tx.kvWrites],
      // A blob stored and deleted inside the transaction never reaches the store.
      blob: [...tx.blobWrites]
        .filter(([, w]) => !(w.isNew && w.record === null))
        .map(([id, w]) => [id, w.record, w.isNew, w.uploadState]),
    };
    const logName = writes.kv.length > 0 && writes.blob.length > 0 ? this.log?.nameFor(tx.id) : undefined;
    let blobCommitted = false;
    let logWritten = false;
    let discarded = false;
    try {
      // The KV batch is the commit lock: one commit at a time, validated and applied atomically.
      await this.kv.committer.run(async (b) => {
        if (!blobCommitted) {
          await validateKv(b, tx);
          if (tx.touchesBlob) {
            try {
              await this.blob.committer.run(async (ops) => {
                await validateBlob(ops, tx);
                if (logName) {
                  await this.log!.write(ops, logName, tx.id, writes);
                  logWritten = true;
                }
                discarded = await applyBlob(ops, writes.blob, this.blob.syncLog);
              });
            } catch (err) {
              if (logWritten) await this.log!.remove(logName!);
              logWritten = false;
              // Nothing is written to KV yet: fail only this job, not the batch it shares.
              throw asStoreError(err);
            }
            blobCommitted = true;
            if (logName && crashBetweenStores()) {
              process.kill(process.pid, 'SIGKILL');
              await new Promise(() => {});
            }
          }
        }
        if (writes.kv.length > 0) {
          await applyKv(b, writes.kv, logName ? [this.log!.marker(logName), logName] : undefined);
        }
      });
    } catch (err) {
      if (!blobCommitted || writes.blob.length === 0) throw err;
      throw await this.keptInLog(tx, writes, logName, logWritten, this.kv.committer.engine.mapError(err));
    }
    if (logWritten) await this.log!.remove(logName!);
    if (discarded) void this.blob.large.collect();
  }

  /** The BLOB part is committed but the KV part could not be: it stays in the log for the next open. */
  private async keptInLog(
    tx: Tx,
    writes: WriteSet,
    logName: string | undefined,
    logWritten: boolean,
    err: StoreError,
  ): Promise<StoreError> {
    const where = logWritten ? this.log!.describe(logName!) : 'nowhere (in-memory store)';
    if (logWritten) await this.log!.keepKvPart(logName!, tx.id, writes);
    return internal(
      `transaction ${JSON.stringify(tx.id)}: its BLOB writes are committed but its KV writes could not be ` +
        `(${err.message}); they are kept in the commit log ${where} and applied when the stores are next opened`,
    );
  }

  /**
   * Completes commits a crash interrupted between the two stores: replays every commit log (its
   * KV part only if the KV store has not recorded it), then removes it. Called when the stores open.
   */
  async recover(): Promise<number> {
    if (!this.log) return 0;
    let replayed = 0;
    for (const { name, writes } of await this.log.pending()) {
      if (writes.blob.length > 0)
        await this.blob.committer.run((ops) => applyBlob(ops, writes.blob, this.blob.syncLog));
      if (writes.kv.length > 0) {
        await this.kv.committer.run(async (b) => {
          const marker = this.log!.marker(name);
          const applied = await b.ops.maps.get('meta', marker);
          if (applied?.toString() !== name) await applyKv(b, writes.kv, [marker, name]);
        });
      }
      await this.log.remove(name);
      replayed++;
    }
    return replayed;
  }
}
