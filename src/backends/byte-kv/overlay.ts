/**
 * What a byte engine (RocksDB, LMDB) offers, and the per-batch write overlay over it.
 *
 * A batch collects its writes in an overlay (its own reads see them first) and hands them to the
 * engine in one atomic commit at the end — RocksDB's WriteBatch and LMDB's write transaction both
 * want the whole set at once, and a failed batch then leaves nothing behind. Scans and counts
 * merge the overlay's pending writes in, in key order, honouring its deletes.
 */
import type { MaybePromise } from '../backend.js';

/** One pending write: `null` deletes. */
export interface ByteWrite {
  key: Buffer;
  value: Uint8Array | null;
}

/** Stored entries in key byte order. */
export type Entries = Iterable<[key: Buffer, value: Uint8Array]>;

/** What a byte engine must offer. Reads are synchronous: both engines answer from memory maps or caches. */
export interface ByteEngine<Token = unknown> {
  /**
   * Keys longer than this many bytes are stored as prefix + hash (./layout.ts); Infinity: never.
   * Part of the file format: an engine never changes it.
   */
  readonly longKeyPrefix: number;
  readonly readOnly: boolean;
  /** The committed value, or undefined. */
  get(key: Buffer): Uint8Array | undefined;
  /**
   * Committed entries with `lo <= key < hi`, ascending (or descending), read lazily: the consumer
   * may stop early. `hint`: how many the consumer probably wants (a page size, not a limit).
   */
  scan(lo: Buffer, hi: Buffer, reverse: boolean, hint: number): Entries;
  /** Number of committed keys with `lo <= key < hi` (reads keys only). */
  count(lo: Buffer, hi: Buffer): number;
  /** Called before a batch's first read; its result is handed back to `commit`. */
  begin(): Token;
  /** Applies every write atomically; resolves once durable per the store's durability setting. */
  commit(writes: Iterable<ByteWrite>, token: Token): MaybePromise<void>;
  close(): MaybePromise<void>;
}

/**
 * Thrown for a write to a store opened read-only. Not a StoreError on purpose: it may come after
 * other writes of the same request, so it must abandon the batch; each engine's mapError turns it
 * into FAILED_PRECONDITION.
 */
export class ReadOnlyWriteError extends Error {
  constructor() {
    super('the store is open read-only; writes are refused');
    this.name = 'ReadOnlyWriteError';
  }
}

/** First index in sorted `list` whose item is >= `item`. */
function lowerBound(list: string[], item: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]! < item) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Merges two sorted lists. */
function merge(a: string[], b: string[]): string[] {
  const out = new Array<string>(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = a[i]! < b[j]! ? a[i++]! : b[j++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}

/**
 * The writes of one batch, keyed by the key's bytes as a latin1 string: one code unit per byte,
 * so JavaScript's string order is the bytes' memcmp order.
 */
export class Overlay {
  private readonly writes = new Map<string, ByteWrite>();
  /** Keys of `writes` in order, kept only for scans: new keys wait in `unsorted` until one runs. */
  private sorted: string[] = [];
  private unsorted: string[] = [];

  constructor(readonly engine: ByteEngine) {}

  get size(): number {
    return this.writes.size;
  }

  values(): Iterable<ByteWrite> {
    return this.writes.values();
  }

  get(key: Buffer): Uint8Array | undefined {
    // A batch of reads has no writes: skip making the key a string.
    const w = this.writes.size === 0 ? undefined : this.writes.get(key.toString('latin1'));
    if (w) return w.value ?? undefined;
    return this.engine.get(key);
  }

  put(key: Buffer, value: Uint8Array | null): void {
    if (this.engine.readOnly) throw new ReadOnlyWriteError();
    const id = key.toString('latin1');
    if (!this.writes.has(id)) this.unsorted.push(id);
    this.writes.set(id, { key, value });
  }

  /** The pending writes with `lo <= key < hi`, ascending. */
  private pending(lo: Buffer, hi: Buffer): ByteWrite[] {
    if (this.unsorted.length > 0) {
      this.sorted = merge(this.sorted, this.unsorted.sort());
      this.unsorted = [];
    }
    const from = lowerBound(this.sorted, lo.toString('latin1'));
    const to = lowerBound(this.sorted, hi.toString('latin1'));
    const out: ByteWrite[] = [];
    for (let i = from; i < to; i++) out.push(this.writes.get(this.sorted[i]!)!);
    return out;
  }

  /** Entries with `lo <= key < hi` as this batch sees them: committed ones merged with its writes. */
  *scan(lo: Buffer, hi: Buffer, reverse: boolean, hint: number): Generator<[Buffer, Uint8Array]> {
    const mine = this.pending(lo, hi);
    if (mine.length === 0) {
      yield* this.engine.scan(lo, hi, reverse, hint);
      return;
    }
    if (reverse) mine.reverse();
    const direction = reverse ? -1 : 1;
    let i = 0;
    for (const entry of this.engine.scan(lo, hi, reverse, hint)) {
      let replaced = false;
      // Pending writes up to this committed key come first; one on the same key replaces it.
      while (i < mine.length) {
        const w = mine[i]!;
        const order = Buffer.compare(w.key, entry[0]) * direction;
        if (order > 0) break;
        i++;
        if (order === 0) replaced = true;
        if (w.value !== null) yield [w.key, w.value];
      }
      if (!replaced) yield entry;
    }
    for (; i < mine.length; i++) {
      const w = mine[i]!;
      if (w.value !== null) yield [w.key, w.value];
    }
  }

  /** Number of keys with `lo <= key < hi` as this batch sees them. */
  count(lo: Buffer, hi: Buffer): number {
    let n = this.engine.count(lo, hi);
    for (const w of this.pending(lo, hi)) {
      const committed = this.engine.get(w.key) !== undefined;
      if (w.value === null && committed) n--;
      else if (w.value !== null && !committed) n++;
    }
    return n;
  }
}
