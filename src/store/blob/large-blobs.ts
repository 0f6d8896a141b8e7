/**
 * Large blobs' bytes in chunks (layout: large-layout.ts): finding a blob's chunks, reading them,
 * and deleting the chunks no blob uses any more — but only once no download still reads them.
 */
import type { BlobEngineOps, MaybePromise } from '../../backends/backend.js';
import type { GroupCommitter } from '../group-commit.js';
import { then } from '../maybe-promise.js';
import {
  CHUNK_SIZE,
  chunkKey,
  DATA_ID_COUNTER,
  decodeLargeRef,
  encodeLargeRef,
  GARBAGE_PREFIX,
  garbageKey,
  type LargeRef,
  readU64,
  u64,
} from './large-layout.js';

/** Chunks deleted per batch when collecting garbage, so writers never wait long behind it. */
const COLLECT_CHUNKS_PER_BATCH = 64;

export const chunkCount = (bytes: number): number => Math.ceil(bytes / CHUNK_SIZE);

export function largeRefOf(ops: BlobEngineOps, id: number): MaybePromise<LargeRef | undefined> {
  return then(ops.maps.get('large', u64(id)), (raw) => (raw === undefined ? undefined : decodeLargeRef(raw)));
}

export function setLargeRef(ops: BlobEngineOps, id: number, ref: LargeRef | undefined): MaybePromise<void> {
  return ref === undefined ? ops.maps.delete('large', u64(id)) : ops.maps.put('large', u64(id), encodeLargeRef(ref));
}

/** A fresh data id: never handed out before, not even after a crash. */
export function newDataId(ops: BlobEngineOps): MaybePromise<number> {
  return then(ops.maps.get('meta', DATA_ID_COUNTER), (raw) => {
    const id = (raw === undefined ? 0 : readU64(raw)) + 1;
    return then(ops.maps.put('meta', DATA_ID_COUNTER, u64(id)), () => id);
  });
}

/** Marks `bytes` of data `dataId` as unused: its chunks are deleted by the next collection. */
export function discardData(ops: BlobEngineOps, dataId: number, bytes: number): MaybePromise<void> {
  return ops.maps.put('upload', garbageKey(dataId), u64(chunkCount(bytes)));
}

/** Reads every chunk of `ref` into one buffer (for Get, which answers a blob in one message). */
export async function assemble(ops: BlobEngineOps, ref: LargeRef): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < chunkCount(ref.size); i++) {
    const chunk = await ops.maps.get('chunk', chunkKey(ref.dataId, i));
    if (chunk === undefined) throw new Error(`chunk ${i} of data ${ref.dataId} is missing`);
    parts.push(chunk);
  }
  return Buffer.concat(parts, ref.size);
}

export class LargeBlobs {
  /** Data ids downloads are reading: their chunks stay until the last reader is done. */
  private readonly pins = new Map<number, number>();
  private collecting: Promise<void> | undefined;
  private again = false;

  constructor(private readonly committer: GroupCommitter<BlobEngineOps>) {}

  pin(dataId: number): void {
    this.pins.set(dataId, (this.pins.get(dataId) ?? 0) + 1);
  }

  unpin(dataId: number): void {
    const n = (this.pins.get(dataId) ?? 1) - 1;
    if (n > 0) this.pins.set(dataId, n);
    else {
      this.pins.delete(dataId);
      this.collect();
    }
  }

  /** Bytes `[offset, offset + length)` of data `dataId` (chunks are read as needed, one batch each). */
  async read(dataId: number, offset: number, length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let at = offset;
    const end = offset + length;
    while (at < end) {
      const index = Math.floor(at / CHUNK_SIZE);
      const chunk = await this.committer.run((ops) => ops.maps.get('chunk', chunkKey(dataId, index)));
      if (chunk === undefined) throw new Error(`chunk ${index} of data ${dataId} is missing`);
      const from = at - index * CHUNK_SIZE;
      const to = Math.min(chunk.length, end - index * CHUNK_SIZE);
      parts.push(chunk.subarray(from, to));
      at = index * CHUNK_SIZE + to;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Deletes the chunks of unused data, a few per batch, in the background. */
  collect(): Promise<void> {
    if (this.collecting) {
      this.again = true;
      return this.collecting;
    }
    this.collecting = (async () => {
      do {
        this.again = false;
        while (await this.collectSome()) {}
      } while (this.again);
    })()
      .catch(() => {
        // The store is closing, or an engine error: what is left is collected at the next open.
      })
      .finally(() => {
        this.collecting = undefined;
      });
    return this.collecting;
  }

  /** One batch of collection; answers whether there may be more. */
  private collectSome(): Promise<boolean> {
    return this.committer.run(async (ops) => {
      const marks = await ops.maps.range('upload', { ...GARBAGE_PREFIX, limit: 16, reverse: false });
      let budget = COLLECT_CHUNKS_PER_BATCH;
      let progressed = false;
      for (const [key, raw] of marks) {
        const dataId = readU64(key, 1);
        if (this.pins.has(dataId)) continue;
        let left = readU64(raw);
        while (left > 0 && budget > 0) {
          await ops.maps.delete('chunk', chunkKey(dataId, --left));
          budget--;
        }
        progressed = true;
        if (left === 0) await ops.maps.delete('upload', key);
        else await ops.maps.put('upload', key, u64(left));
        if (budget === 0) return true;
      }
      return progressed && marks.length === 16;
    });
  }
}
