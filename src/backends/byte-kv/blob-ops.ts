/** BlobOps over the overlay of one batch (layout: ./layout.ts; unchanged since buffdb 0.1). */
import type { BlobEngineOps, BlobRecord, MapOps } from '../backend.js';
import { blobKey, COUNTER, decodeMeta, encodeMeta, readU64, TAG, u64 } from './layout.js';
import type { Overlay } from './overlay.js';

export class ByteBlobOps implements BlobEngineOps {
  constructor(
    private readonly o: Overlay,
    readonly maps: MapOps,
  ) {}

  private exists(id: number): boolean {
    return this.o.get(blobKey(TAG.blobMeta, id)) !== undefined;
  }

  get(id: number): BlobRecord | undefined {
    const meta = this.o.get(blobKey(TAG.blobMeta, id));
    if (meta === undefined) return undefined;
    const data = this.o.get(blobKey(TAG.blobData, id)) ?? new Uint8Array(0);
    return { data, metadata: decodeMeta(meta) };
  }

  reserveId(): number {
    const id = Number(readU64(this.o.get(COUNTER.lastBlobId))) + 1;
    this.o.put(COUNTER.lastBlobId, u64(BigInt(id)));
    return id;
  }

  insertWithId(id: number, data: Uint8Array, metadata: string | null): void {
    // The data is referenced, not copied: the engine copies it once, into the store.
    this.o.put(blobKey(TAG.blobData, id), data);
    this.o.put(blobKey(TAG.blobMeta, id), encodeMeta(metadata));
  }

  insert(data: Uint8Array, metadata: string | null): number {
    const id = this.reserveId();
    this.insertWithId(id, data, metadata);
    return id;
  }

  update(id: number, data: Uint8Array | undefined, metadata: string | null | undefined): boolean {
    if (!this.exists(id)) return false;
    if (data !== undefined) this.o.put(blobKey(TAG.blobData, id), data);
    if (metadata !== undefined) this.o.put(blobKey(TAG.blobMeta, id), encodeMeta(metadata));
    return true;
  }

  ids(after: number, limit: number): number[] {
    const out: number[] = [];
    if (limit <= 0) return out;
    const hi = Buffer.of(TAG.blobMeta + 1);
    for (const [key] of this.o.scan(blobKey(TAG.blobMeta, after + 1), hi, false, limit)) {
      out.push(Number(key.readBigUInt64BE(1)));
      if (out.length >= limit) break;
    }
    return out;
  }

  delete(id: number): boolean {
    if (!this.exists(id)) return false;
    this.o.put(blobKey(TAG.blobData, id), null);
    this.o.put(blobKey(TAG.blobMeta, id), null);
    return true;
  }
}
