/**
 * KvOps and BlobOps over a plain byte-keyed engine (RocksDB, LMDB): the key layout, the id counter
 * and the per-batch write overlay, written once for both.
 *
 * A batch collects its writes in an overlay (its own reads see them first) and hands them to the
 * engine in one atomic commit at the end — RocksDB's WriteBatch and LMDB's write transaction both
 * want the whole set at once, and a failed batch then leaves nothing behind.
 */
import { createHash } from 'node:crypto';
import { StoreError, status } from '../store/errors.js';
import type { BlobOps, BlobRecord, KvOps, StoreEngine } from './backend.js';

/** One pending write: `null` deletes. */
export interface ByteWrite {
  key: Buffer;
  value: Uint8Array | null;
}

/** What a byte engine must offer. Reads are synchronous: both engines answer from memory maps or caches. */
export interface ByteEngine<Token = unknown> {
  /** Longest key the engine accepts (longer KV keys are stored under their SHA-256). */
  readonly maxKeyBytes: number;
  readonly readOnly: boolean;
  /** The committed value, or undefined. */
  get(key: Buffer): Uint8Array | undefined;
  /** Called before a batch's first operation; its result is handed back to `commit`. */
  begin(): Token;
  /** Applies every write atomically; resolves once durable per the store's durability setting. */
  commit(writes: Iterable<ByteWrite>, token: Token): Promise<void> | void;
  close(): Promise<void> | void;
}

// Key layout. Every key starts with a tag byte, so no key is empty (neither engine allows that)
// and internal keys can never collide with user keys.
const TAG_KV = 0x6b; // 'k' + UTF-8 key
const TAG_KV_HASHED = 0x68; // 'h' + SHA-256 of the UTF-8 key, for keys longer than the engine allows
const TAG_BLOB_DATA = 0x64; // 'd' + 8-byte big-endian id → data
const TAG_BLOB_META = 0x6d; // 'm' + 8-byte big-endian id → metadata record (its presence = the blob exists)
/** The last blob id handed out, 8 bytes big-endian: a persisted counter, never a scan. */
export const LAST_ID_KEY = Buffer.from('#last-blob-id');

// Metadata record: one flag byte keeps null and "" apart.
const META_NULL = 0;
const META_TEXT = 1;

function kvKey(key: string, maxKeyBytes: number): Buffer {
  const utf8 = Buffer.from(key, 'utf8');
  if (utf8.length + 1 <= maxKeyBytes) {
    const out = Buffer.allocUnsafe(utf8.length + 1);
    out[0] = TAG_KV;
    utf8.copy(out, 1);
    return out;
  }
  return Buffer.concat([Buffer.of(TAG_KV_HASHED), createHash('sha256').update(utf8).digest()]);
}

function blobKey(tag: number, id: number): Buffer {
  const out = Buffer.allocUnsafe(9);
  out[0] = tag;
  out.writeBigUInt64BE(BigInt(id), 1);
  return out;
}

function encodeMeta(metadata: string | null): Buffer {
  if (metadata === null) return Buffer.of(META_NULL);
  return Buffer.concat([Buffer.of(META_TEXT), Buffer.from(metadata, 'utf8')]);
}

function decodeMeta(raw: Uint8Array): string | null {
  if (raw[0] === META_NULL) return null;
  return Buffer.from(raw.buffer, raw.byteOffset + 1, raw.byteLength - 1).toString('utf8');
}

function toBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** The writes of one batch, keyed by the key's bytes. */
class Overlay {
  readonly writes = new Map<string, ByteWrite>();

  constructor(private readonly engine: ByteEngine) {}

  get(key: Buffer): Uint8Array | undefined {
    const w = this.writes.get(key.toString('latin1'));
    if (w) return w.value ?? undefined;
    return this.engine.get(key);
  }

  put(key: Buffer, value: Uint8Array | null): void {
    if (this.engine.readOnly) {
      throw new StoreError(status.FAILED_PRECONDITION, 'the store is open read-only; writes are refused');
    }
    this.writes.set(key.toString('latin1'), { key, value });
  }
}

class ByteKvOps implements KvOps {
  constructor(
    private readonly o: Overlay,
    private readonly maxKeyBytes: number,
  ) {}

  get(key: string): string | undefined {
    const v = this.o.get(kvKey(key, this.maxKeyBytes));
    return v === undefined ? undefined : toBuffer(v).toString('utf8');
  }

  put(key: string, value: string): void {
    this.o.put(kvKey(key, this.maxKeyBytes), Buffer.from(value, 'utf8'));
  }

  delete(key: string): boolean {
    const k = kvKey(key, this.maxKeyBytes);
    if (this.o.get(k) === undefined) return false;
    this.o.put(k, null);
    return true;
  }
}

class ByteBlobOps implements BlobOps {
  constructor(private readonly o: Overlay) {}

  private exists(id: number): boolean {
    return this.o.get(blobKey(TAG_BLOB_META, id)) !== undefined;
  }

  get(id: number): BlobRecord | undefined {
    const meta = this.o.get(blobKey(TAG_BLOB_META, id));
    if (meta === undefined) return undefined;
    const data = this.o.get(blobKey(TAG_BLOB_DATA, id)) ?? new Uint8Array(0);
    return { data, metadata: decodeMeta(meta) };
  }

  reserveId(): number {
    const raw = this.o.get(LAST_ID_KEY);
    const last = raw === undefined ? 0 : Number(toBuffer(raw).readBigUInt64BE(0));
    const id = last + 1;
    const next = Buffer.allocUnsafe(8);
    next.writeBigUInt64BE(BigInt(id));
    this.o.put(LAST_ID_KEY, next);
    return id;
  }

  insertWithId(id: number, data: Uint8Array, metadata: string | null): void {
    // The data is referenced, not copied: the engine copies it once, into the store.
    this.o.put(blobKey(TAG_BLOB_DATA, id), data);
    this.o.put(blobKey(TAG_BLOB_META, id), encodeMeta(metadata));
  }

  insert(data: Uint8Array, metadata: string | null): number {
    const id = this.reserveId();
    this.insertWithId(id, data, metadata);
    return id;
  }

  update(id: number, data: Uint8Array | undefined, metadata: string | null | undefined): boolean {
    if (!this.exists(id)) return false;
    if (data !== undefined) this.o.put(blobKey(TAG_BLOB_DATA, id), data);
    if (metadata !== undefined) this.o.put(blobKey(TAG_BLOB_META, id), encodeMeta(metadata));
    return true;
  }

  delete(id: number): boolean {
    if (!this.exists(id)) return false;
    this.o.put(blobKey(TAG_BLOB_DATA, id), null);
    this.o.put(blobKey(TAG_BLOB_META, id), null);
    return true;
  }
}

class ByteStoreEngine<Ops> implements StoreEngine<Ops> {
  private busy = false;

  constructor(
    private readonly engine: ByteEngine,
    private readonly makeOps: (o: Overlay) => Ops,
  ) {}

  async batch<T>(work: (ops: Ops) => Promise<T>): Promise<T> {
    // The store never overlaps batches of one engine; a second one here would lose writes.
    if (this.busy) throw new Error('internal error: overlapping batches on one store');
    this.busy = true;
    try {
      const token = this.engine.begin();
      const overlay = new Overlay(this.engine);
      const result = await work(this.makeOps(overlay));
      if (overlay.writes.size > 0) await this.engine.commit(overlay.writes.values(), token);
      return result;
    } finally {
      this.busy = false;
    }
  }

  close(): Promise<void> | void {
    return this.engine.close();
  }
}

export function kvEngine(engine: ByteEngine): StoreEngine<KvOps> {
  return new ByteStoreEngine(engine, (o) => new ByteKvOps(o, engine.maxKeyBytes));
}

export function blobEngine(engine: ByteEngine): StoreEngine<BlobOps> {
  return new ByteStoreEngine(engine, (o) => new ByteBlobOps(o));
}
